//! Property-based fuzzing of the spec parser and validator (bounded, so it runs
//! in every `cargo test`, in a few seconds).
//!
//! Whatever the input, parsing never panics, and whatever it accepts is safe
//! to hand to Docker and to write into the nginx config: names and hosts use
//! only `[a-z0-9.-]`, images and env keys are ASCII of their grammars, numbers
//! are within limits, and the spec survives a JSON round trip unchanged.

use dubernetes_core::limits::MAX_REPLICAS;
use dubernetes_core::{PodSpec, SpecError, parse_json_spec, parse_specs};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What the validator promises about an accepted spec.
fn assert_safe(spec: &PodSpec) {
    let dns = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    assert!(
        dns(&spec.name) && !spec.name.contains('.') && spec.name.len() <= 63,
        "{spec:?}"
    );
    if let Some(host) = spec.host() {
        assert!(dns(host) && host.len() <= 253, "{host:?}");
    }
    assert!(spec.image.is_ascii() && !spec.image.is_empty(), "{:?}", spec.image);
    assert!(
        !spec
            .image
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b"\"';{}$\\`".contains(&b)),
        "{:?}",
        spec.image
    );
    assert!(spec.replicas <= MAX_REPLICAS);
    assert!(spec.port >= 1);
    for (key, value) in &spec.env {
        assert!(key.is_ascii() && !key.is_empty() && !key.contains('='), "{key:?}");
        assert!(!value.as_value().unwrap_or_default().contains('\0'));
    }
    if let Some(health) = spec
        .health
        .as_ref()
        .filter(|h| h.kind == dubernetes_core::CheckKind::Http)
    {
        assert!(health.path.starts_with('/'));
        assert!(
            !health
                .path
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        );
    }
    // What the store keeps and the API returns reads back the same.
    let json = serde_json::to_string(spec).expect("encode");
    assert_eq!(&parse_json_spec(&json).expect("JSON round trip"), spec);
}

/// Scalars that try to break out of a YAML value, an nginx directive, a shell or a path.
fn hostile_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{0,20}",
        "[ -~]{0,24}",
        "\\PC{0,12}",
        Just("a.com; include /etc/passwd".to_string()),
        Just("a.com\nreturn 200 pwned".to_string()),
        Just("$host".to_string()),
        Just("a{b}.com".to_string()),
        Just("аpple.com".to_string()),
        Just("../../etc".to_string()),
        Just("x:ｖ1".to_string()),
        Just("nginx:1.27".to_string()),
        Just("web.local".to_string()),
        Just("1e400".to_string()),
        Just("-1".to_string()),
        Just("99999999999".to_string()),
        Just("~".to_string()),
        Just("*a".to_string()),
        Just("&a [*a]".to_string()),
    ]
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

/// A YAML pod spec from known fields with hostile values, some plain, some quoted.
fn hostile_yaml() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("name"),
        Just("image"),
        Just("replicas"),
        Just("port"),
        Just("access"),
        Just("env"),
        Just("health"),
        Just("resources"),
        Just("command"),
        Just("replica"),
    ];
    proptest::collection::vec((field, hostile_scalar(), any::<bool>()), 0..8).prop_map(|fields| {
        let mut yaml = String::new();
        for (field, value, quote) in fields {
            let value = if quote { quoted(&value) } else { value };
            match field {
                "access" => yaml.push_str(&format!("access: {{host: {value}}}\n")),
                "env" => yaml.push_str(&format!("env: {{{value}: x}}\n")),
                "health" => yaml.push_str(&format!("health: {{path: {value}}}\n")),
                "resources" => yaml.push_str(&format!("resources: {{memory: {value}}}\n")),
                "command" => yaml.push_str(&format!("command: [{value}]\n")),
                f => yaml.push_str(&format!("{f}: {value}\n")),
            }
        }
        yaml
    })
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        if let Ok(specs) = parse_specs(&text) {
            specs.iter().for_each(assert_safe);
        }
        if let Ok(spec) = parse_json_spec(&text) {
            assert_safe(&spec);
        }
    }

    #[test]
    fn arbitrary_bytes_as_lossy_text_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_specs(&text);
        let _ = parse_json_spec(&text);
    }

    #[test]
    fn whatever_is_accepted_is_safe(yaml in hostile_yaml()) {
        match parse_specs(&yaml) {
            Ok(specs) => specs.iter().for_each(assert_safe),
            Err(e) => {
                // Every rejection explains itself.
                prop_assert!(!e.to_string().is_empty());
                if let SpecError::Invalid { source, .. } = &e {
                    prop_assert!(!source.problems.is_empty());
                }
            }
        }
    }

    #[test]
    fn valid_specs_with_hostile_values_never_panic_and_stay_safe(
        name in "[a-z0-9-]{1,70}",
        host in hostile_scalar(),
        image in hostile_scalar(),
        replicas in any::<u32>(),
        key in hostile_scalar(),
    ) {
        let spec = PodSpec::new(name, image).with_host(host).with_replicas(replicas).with_env(key, "v");
        if spec.validate().is_ok() {
            assert_safe(&spec);
        }
    }
}

#[test]
fn nesting_and_size_bombs_are_rejected_quickly() {
    let start = std::time::Instant::now();
    let deep_flow = format!(
        "name: a\nimage: b\nenv: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(parse_specs(&deep_flow), Err(SpecError::TooDeep { .. })));
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_json_spec(&deep_json).is_err());
    let deep_block: String = (0..300).map(|i| format!("{}k{i}:\n", " ".repeat(i * 2))).collect();
    assert!(matches!(parse_specs(&deep_block), Err(SpecError::TooDeep { .. })));
    let huge = format!("name: a\nimage: b\nargs: [{}]\n", "\"x\",".repeat(400_000));
    assert!(matches!(parse_specs(&huge), Err(SpecError::TooLarge { .. })));
    let laughs = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
        e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    assert!(parse_specs(laughs).is_err());
    // Quoted brackets are not nesting.
    let fine = format!("name: a\nimage: b\nenv: {{K: \"{}\"}}\n", "[".repeat(200));
    assert!(parse_specs(&fine).is_ok(), "{:?}", parse_specs(&fine));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn errors_name_the_field() {
    let field = |yaml: &str| parse_specs(yaml).expect_err(yaml).field();
    assert_eq!(field("name: a\nimage: b\nreplica: 3\n").as_deref(), Some("replica"));
    assert_eq!(field("name: a\nimage: b\nreplicas: -1\n").as_deref(), Some("replicas"));
    assert_eq!(
        field("name: a\nimage: b\naccess: {hots: x}\n").as_deref(),
        Some("access.hots")
    );
    assert_eq!(
        field("name: a\nimage: b\naccess: {host: \"a;b\"}\n").as_deref(),
        Some("access.host")
    );
    assert_eq!(field("name: a\n").as_deref(), Some("image"));
    let json = |text: &str| parse_json_spec(text).expect_err(text).field();
    assert_eq!(
        json(r#"{"name":"a","image":"b","replicas":"3"}"#).as_deref(),
        Some("replicas")
    );
    assert_eq!(json(r#"{"name":"a","image":"b","extra":1}"#).as_deref(), Some("extra"));
    assert_eq!(json(r#"{"name":"a","image":"b:ｖ1"}"#).as_deref(), Some("image"));
}

#[test]
fn nesting_hidden_from_the_depth_check_is_bounded_anyway() {
    let start = std::time::Instant::now();
    // An apostrophe inside a plain scalar does not open a quoted string.
    let apostrophe = format!(
        "name: it's\nimage: b\nargs: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(parse_specs(&apostrophe), Err(SpecError::TooDeep { .. })));
    // A quote inside a block scalar fools the quote tracking; the raw bracket count does not.
    let block = format!("args: |\n  \"\nenv: {}\n", "{a: ".repeat(50_000));
    assert!(matches!(parse_specs(&block), Err(SpecError::TooDeep { .. })));
    // What the backstop lets through is cheap for the parser.
    let most = format!("args: |\n  \"\nenv: {}\n", "[".repeat(256));
    assert!(parse_specs(&most).is_err());
    let most_maps = format!("args: |\n  \"\nenv: {}\n", "{a: ".repeat(256));
    assert!(parse_specs(&most_maps).is_err());
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

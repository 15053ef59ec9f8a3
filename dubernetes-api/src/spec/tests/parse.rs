//! Parsing: strictness, error positions, size and alias bounds.

use super::*;
use crate::spec::parse::check_expansion;

#[test]
fn seed_shape_parses_with_defaults() {
    let spec =
        parse_one("name: myapp\nimage: myapp-image:latest\nreplicas: 3\naccess: {host: myapp.local}\n").expect("valid");
    assert_eq!(spec.name, "myapp");
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.port, 80);
    assert_eq!(spec.host(), Some("myapp.local"));
    let minimal = parse_one("name: a\nimage: b\n").expect("valid");
    assert_eq!(minimal.replicas, 1);
    assert_eq!(minimal.access, None);
}

#[test]
fn unknown_field_names_the_field_and_the_allowed_ones() {
    let err = parse_specs("name: a\nimage: b\nreplica: 3\n").expect_err("typo");
    let text = err.to_string();
    assert!(text.contains("unknown field `replica`"), "{text}");
    assert!(text.contains("`replicas`"), "{text}");
    assert!(
        matches!(
            err,
            SpecError::Syntax {
                document: 1,
                location: Some((3, _)),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_field_in_access_is_an_error() {
    let err = parse_specs("name: a\nimage: b\naccess: {hots: x.local}\n").expect_err("typo");
    assert!(err.to_string().contains("unknown field `hots`"), "{err}");
}

#[test]
fn access_tls_is_auto_or_a_secret() {
    let auto = parse_one("name: a\nimage: b\naccess: {host: a.local, tls: auto}\n").expect("auto");
    assert_eq!(auto.tls(), Some(&crate::spec::Tls::Auto));
    let secret = parse_one("name: a\nimage: b\naccess:\n  host: a.local\n  tls: {secret: a-cert}\n").expect("secret");
    assert_eq!(secret.tls(), Some(&crate::spec::Tls::Secret("a-cert".into())));
    let json =
        parse_json_spec(r#"{"name":"a","image":"b","access":{"host":"a.local","tls":{"secret":"c"}}}"#).expect("json");
    assert_eq!(json.tls(), Some(&crate::spec::Tls::Secret("c".into())));
    assert_eq!(
        parse_one("name: a\nimage: b\naccess: {host: a.local}\n")
            .expect("none")
            .tls(),
        None
    );
    for bad in ["tls: yes", "tls: {secret: x, auto: y}", "tls: {key: x}", "tls: [auto]"] {
        let err = parse_specs(&format!("name: a\nimage: b\naccess: {{host: a.local, {bad}}}\n")).expect_err(bad);
        let field = err.field().unwrap_or_default();
        assert!(field.starts_with("access.tls"), "{bad}: {field}: {err}");
    }
    let err = parse_one("name: a\nimage: b\naccess: {host: a.local, tls: {secret: Bad_Name}}\n").expect_err("bad name");
    assert!(err.to_string().contains("access.tls.secret"), "{err}");
}

#[test]
fn multi_document_files_parse_in_order_and_skip_empty_documents() {
    let specs = parse_specs("name: a\nimage: b\n---\n---\nname: c\nimage: d\n").expect("valid");
    let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn broken_yaml_reports_document_line_and_column() {
    let err = parse_specs("name: a\nimage: b\n---\nname: c\nimage: [d\n").expect_err("broken");
    match err {
        SpecError::Syntax { document, location, .. } => {
            assert_eq!(document, 2);
            assert!(location.is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_types_are_syntax_errors() {
    assert!(matches!(
        parse_specs("name: a\nimage: b\nreplicas: many\n"),
        Err(SpecError::Syntax { .. })
    ));
    assert!(matches!(
        parse_specs("name: a\nimage: b\nreplicas: -1\n"),
        Err(SpecError::Syntax { .. })
    ));
    assert!(matches!(
        parse_specs("name: a\nimage: b\nport: 70000\n"),
        Err(SpecError::Syntax { .. })
    ));
    assert!(matches!(parse_specs("- a\n- b\n"), Err(SpecError::Syntax { .. })));
}

#[test]
fn missing_required_fields_are_named() {
    let err = parse_specs("name: a\n").expect_err("no image");
    assert!(err.to_string().contains("missing field `image`"), "{err}");
}

#[test]
fn billion_laughs_is_rejected() {
    let yaml = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    assert!(parse_specs(yaml).is_err());
}

/// The issue's input: 44 KB of YAML whose `env` repeats one 32 KiB value
/// through 1023 aliases (32 MiB once expanded).
pub(crate) fn alias_bomb() -> String {
    let mut yaml = format!("name: bomb\nimage: b\nenv:\n  V0: &big \"{}\"\n", "x".repeat(32 * 1024));
    for i in 1..1024 {
        yaml.push_str(&format!("  V{i}: *big\n"));
    }
    yaml
}

#[test]
fn aliases_count_their_expansion_against_the_stored_limit() {
    let yaml = alias_bomb();
    assert!(yaml.len() < 48 * 1024, "{}", yaml.len());
    let err = parse_specs(&yaml).expect_err("32 MiB expanded");
    match &err {
        SpecError::SpecTooLarge {
            document: 1,
            max,
            aliases: true,
            size,
            line: Some(line),
        } => {
            assert_eq!(*max, MAX_STORED_SPEC_BYTES);
            // Stopped at the first alias past the limit, not at the end.
            assert!(*size <= MAX_STORED_SPEC_BYTES + 33 * 1024, "{size}");
            assert!(*line < 20, "{line}");
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&MAX_STORED_SPEC_BYTES.to_string()) && text.contains("alias"),
        "{text}"
    );
    assert_eq!(err.field().as_deref(), Some("body"));
}

#[test]
fn nested_aliases_multiply_and_are_refused_in_later_documents_too() {
    let mut yaml = String::from("name: ok\nimage: b\n---\nname: n\nimage: b\nargs: &a [");
    yaml.push_str(&vec![format!("\"{}\"", "y".repeat(1000)); 10].join(","));
    yaml.push_str("]\ncommand: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nenv: {K: *b}\n");
    // 10 KB anchored, 100 KB through `b`, nested once more by the alias to `b`:
    // small enough. Ten more aliases to `b` pass the limit.
    assert!(
        matches!(parse_specs(&yaml), Err(SpecError::Syntax { .. })),
        "types differ, but not too large"
    );
    let bigger = yaml.replace("env: {K: *b}", "labels: [*b, *b, *b]");
    match parse_specs(&bigger) {
        Err(SpecError::SpecTooLarge { document: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn sensible_anchors_are_still_accepted() {
    let yaml = "name: a\nimage: b\nenv: &common {A: \"1\", B: \"2\"}\n---\nname: c\nimage: d\nargs: &args [x, y]\ncommand: [/bin/app]\n";
    let specs = parse_specs(yaml).expect("anchors are legitimate YAML");
    assert_eq!(specs[0].env.len(), 2);
    let reuse = "name: a\nimage: b\nargs: [&p \"--port\", *p]\n";
    assert_eq!(
        parse_one(reuse).expect("valid").args,
        Some(vec!["--port".into(), "--port".into()])
    );
}

#[test]
fn the_stored_size_is_bounded_without_aliases_too() {
    // 9 values of 31 KiB: each valid, together over the stored limit.
    let mut spec = PodSpec::new("p", "i");
    for i in 0..9 {
        spec = spec.with_env(format!("V{i}"), "z".repeat(31 * 1024));
    }
    spec.validate().expect("every field is valid");
    assert!(matches!(
        check_stored_size(&spec),
        Err(SpecError::SpecTooLarge { aliases: false, .. })
    ));
    let json = serde_json::to_string(&spec).expect("json");
    assert!(matches!(parse_json_spec(&json), Err(SpecError::SpecTooLarge { .. })));
    let yaml = serde_yaml_ng::to_string(&spec).expect("yaml");
    assert!(matches!(parse_specs(&yaml), Err(SpecError::SpecTooLarge { .. })));
    check_stored_size(&PodSpec::new("p", "i").with_env("V", "z".repeat(31 * 1024))).expect("one is fine");
}

#[test]
fn broken_yaml_keeps_the_deserializers_message() {
    let yaml = "name: a\nimage: b\n---\nname: c\nimage: [d\n";
    let pre = match check_expansion(yaml, MAX_STORED_SPEC_BYTES) {
        Err(SpecError::Syntax { document, message, .. }) => (document, message),
        other => panic!("{other:?}"),
    };
    let serde_message = serde_yaml_ng::Deserializer::from_str(yaml)
        .filter_map(|d| serde::de::IgnoredAny::deserialize(d).err())
        .map(|e| e.to_string())
        .next()
        .expect("serde refuses it too");
    assert_eq!(pre, (2, serde_message));
}

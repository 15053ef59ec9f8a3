//! The patterns of the document are the server's own validations, on samples.

use super::*;

fn matches(pattern: &str, text: &str) -> bool {
    // The regex crate has no look-ahead: the host pattern's `.invalid` rule is checked apart.
    let (pattern, reserved) = match pattern.strip_prefix(r"^(?!(.*\.)?invalid$)") {
        Some(rest) => (format!("^{rest}"), text == "invalid" || text.ends_with(".invalid")),
        None => (pattern.to_string(), false),
    };
    regex::Regex::new(&pattern).expect("pattern").is_match(text) && !reserved
}

/// The fields the validation finds wrong in a pod of this name, image, host and env key.
fn spec(name: &str, image: &str, host: Option<&str>, env: Option<&str>) -> Result<(), Vec<String>> {
    let mut s = dubernetes_core::PodSpec::new(name, image);
    if let Some(h) = host {
        s = s.with_host(h);
    }
    if let Some(k) = env {
        s = s.with_env(k, "v");
    }
    s.validate()
        .map_err(|e| e.problems.iter().map(|p| p.field.clone()).collect::<Vec<_>>())
}

#[test]
fn the_name_pattern_is_the_validation() {
    let names = [
        "a",
        "web",
        "a-b",
        "0",
        "-a",
        "a-",
        "A",
        "a_b",
        "a.b",
        "",
        &"a".repeat(63),
        &"a".repeat(64),
        "é",
    ];
    for n in names {
        let ok = !spec(n, "x", None, None).is_err_and(|f| f.contains(&"name".to_string()));
        assert_eq!(matches(DNS_LABEL, n) && n.len() <= 63, ok, "name {n:?}");
    }
}

#[test]
fn the_host_pattern_is_the_validation() {
    let hosts = [
        "a.local",
        "web",
        "a..b",
        ".a",
        "a.",
        "A.b",
        "x.invalid",
        "invalid",
        "invalidx",
        "a-.b",
        &"a".repeat(64),
    ];
    for h in hosts {
        let ok = !spec("p", "x", Some(h), None).is_err_and(|f| f.contains(&"access.host".to_string()));
        assert_eq!(matches(HOST, h) && !h.is_empty() && h.len() <= 253, ok, "host {h:?}");
    }
}

#[test]
fn the_wildcard_pattern_is_the_validation() {
    // Wildcards: the regex crate has no look-ahead either; the two-label rule is checked apart.
    let wildcard = HOST_OR_WILDCARD.replace(r"(?=[^.]+\.[^.])", "");
    assert_ne!(wildcard, HOST_OR_WILDCARD);
    for h in [
        "*.a.b",
        "*.example.com",
        "*.a",
        "*",
        "a.*.b",
        "**.a.b",
        "*a.b.c",
        "*.a.invalid",
        "x.a.b",
    ] {
        let ok = !spec("p", "x", Some(h), None).is_err_and(|f| f.contains(&"access.host".to_string()));
        let two_labels = h.strip_prefix("*.").is_none_or(|rest| rest.contains('.'));
        assert_eq!(matches(&wildcard, h) && two_labels, ok, "host {h:?}");
    }
}

#[test]
fn the_route_path_pattern_is_the_validation() {
    for p in [
        "/",
        "/api",
        "/api/",
        "/a/b.c/~d-e_f",
        "/.well",
        "api",
        "//",
        "/a//b",
        "/a/./b",
        "/a/..",
        "/a b",
        "/a;b",
        "/%41",
    ] {
        let s = dubernetes_core::PodSpec::new("p", "x").with_host("a.b").with_path(p);
        let ok = s.validate().is_ok();
        let no_dots = !p.split('/').any(|seg| seg == "." || seg == "..");
        let pattern = ROUTE_PATH.replace(r"(?!.*/\.\.?(/|$))", "");
        assert_eq!(matches(&pattern, p) && no_dots, ok, "path {p:?}");
    }
}

#[test]
fn the_image_pattern_is_the_validation() {
    let images = [
        "nginx",
        "nginx:1.27",
        "dubernetes/whoami:v1",
        "localhost:5000/a/b:c",
        "Nginx",
        "a@sha256:0123456789abcdef0123456789abcdef",
        "a:",
        ":a",
        "a b",
        "a//b",
        "a__b",
        "a___b",
        "Dubernetes/whoami:v1",
        "Reg.io/whoami",
        "reg:5000/a",
        "localhost/a",
        "localhost/A",
        &"a".repeat(237),
        &"a".repeat(238),
        &format!("a@sha256:{}", "0".repeat(64)),
        &format!("a@sha256:{}", "A".repeat(64)),
        &format!("a@sha512:{}", "0".repeat(128)),
        &format!("a@md5:{}", "0".repeat(32)),
    ];
    for i in images {
        let ok = !spec("p", i, None, None).is_err_and(|f| f.contains(&"image".to_string()));
        assert_eq!(
            matches(IMAGE, i) && !i.is_empty() && i.len() <= MAX_IMAGE_REFERENCE,
            ok,
            "image {i:?}"
        );
    }
}

#[test]
fn the_mount_path_pattern_is_the_validation() {
    for path in [
        "/data", "/a/b.c", "/", "/a/", "//a", "/a/./b", "/..", "/a b", "a", "/.x", "/a/..b", "/...", "/.",
    ] {
        let v = dubernetes_core::PodSpec::new("p", "x").with_volume(dubernetes_core::Volume::tmpfs(path, None));
        assert_eq!(matches(MOUNT_PATH, path), v.validate().is_ok(), "path {path:?}");
    }
}

#[test]
fn the_env_key_pattern_is_the_validation() {
    for k in ["A", "_a1", "1a", "a-b", "a b", "PATH"] {
        let ok = !spec("p", "x", None, Some(k)).is_err_and(|f| f.iter().any(|f| f.starts_with("env.")));
        assert_eq!(matches(ENV_KEY, k), ok, "env key {k:?}");
    }
}

#[test]
fn the_listen_pattern_is_the_servers_rule() {
    // The regex crate has no look-ahead: 80 and 443 are checked apart.
    let pattern = LISTEN.replace(r"(?!(?:80|443)$)", "");
    assert_ne!(pattern, LISTEN);
    for l in [
        "15432",
        "1",
        "65535",
        "65536",
        "0",
        "80",
        "443",
        "8080",
        "4430",
        "015432",
        "127.0.0.1:15432",
        "0.0.0.0:1",
        "255.255.255.255:65535",
        "256.0.0.1:1",
        "127.0.0.01:1",
        "127.0.0.1:080",
        "127.0.0.1:80",
        "127.0.0.1:",
        ":1",
        "[::1]:1",
        "[::]:15432",
        "[fd00::1:2]:65535",
        "[::ffff:127.0.0.1]:15432",
        "[00000000000000000000000000000000000000000000]:10000",
        "[1:2:3:4:5:6:7:8]:1",
        "[1:2:3:4:5:6:7:8:9]:1",
        "[1::2::3]:1",
        "[:::]:1",
        "[12345::1]:1",
        "[FD00:0:0:0:0:0:0:1]:2",
        "[1:2:3:4:5:6:7::]:3",
        "[::2:3:4:5:6:7:8]:4",
        "[::1]:80",
        "[::1]",
        "::1:15432",
        "[::1]:015432",
        "localhost:1",
        "1.2.3:4",
        " 1",
    ] {
        let port = l.rsplit(':').next().unwrap_or_default();
        let expected = matches(&pattern, l) && port != "80" && port != "443";
        assert_eq!(
            dubernetes_core::dubernetes_api::parse_listen(l).is_ok(),
            expected,
            "listen {l:?}"
        );
    }
}

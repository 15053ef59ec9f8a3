//! Validation: the rules of each field.

use super::*;

#[test]
fn zero_replicas_is_allowed() {
    assert_eq!(
        parse_one("name: a\nimage: b\nreplicas: 0\n").expect("valid").replicas,
        0
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let err = parse_specs("name: a\nimage: b\n---\nname: a\nimage: c\n").expect_err("dup");
    assert!(matches!(err, SpecError::Duplicate { document: 2, .. }), "{err:?}");
}

#[test]
fn bad_names_are_rejected() {
    for name in [
        "",
        "My-App",
        "-a",
        "a-",
        "a_b",
        "a.b",
        "../etc",
        &"a".repeat(64),
        "a b",
        "ä",
    ] {
        let spec = PodSpec::new(name, "img");
        let err = spec.validate().expect_err(name);
        assert_eq!(err.problems[0].field, "name", "{name}");
    }
    for name in ["a", "my-app", "a1", "1a", &"a".repeat(63)] {
        PodSpec::new(name, "img").validate().expect(name);
    }
}

#[test]
fn bad_hosts_are_rejected() {
    for host in [
        "",
        "a.com; include /etc/passwd",
        "a.com\nreturn 200",
        "$host",
        "a{b}.com",
        "a..com",
        ".a.com",
        "a.com.",
        "-a.com",
        "a-.com",
        "аpple.com", // Cyrillic a
        "a_b.com",
        "A.COM",
        "dubernetes-probe.invalid",
        &format!("{}.com", "a".repeat(64)),
        &vec!["a"; 130].join("."),
    ] {
        let err = PodSpec::new("p", "img").with_host(host).validate().expect_err(host);
        assert_eq!(err.problems[0].field, "access.host", "{host:?}");
    }
    for host in ["a", "myapp.local", "x-1.example.com", "1.2.3.4"] {
        PodSpec::new("p", "img").with_host(host).validate().expect(host);
    }
}

#[test]
fn bad_images_are_rejected() {
    for image in [
        "",
        "UPPER:latest",
        "a b",
        "a:",
        ":tag",
        "a@sha256:xyz",
        "a;rm -rf /",
        "a\nb",
        "a:-tag",
    ] {
        let err = PodSpec::new("p", image).validate().expect_err(image);
        assert_eq!(err.problems[0].field, "image", "{image:?}");
    }
    for image in [
        "nginx",
        "nginx:1.27-alpine",
        "myapp-image:latest",
        "library/nginx",
        "localhost:5000/team/app:v1.2",
        "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "dubernetes/whoami:v1",
    ] {
        PodSpec::new("p", image).validate().expect(image);
    }
}

#[test]
fn bad_replicas_ports_and_env_are_rejected() {
    let err = PodSpec::new("p", "i")
        .with_replicas(MAX_REPLICAS + 1)
        .validate()
        .expect_err("too many");
    assert_eq!(err.problems[0].field, "replicas");
    let err = PodSpec::new("p", "i").with_port(0).validate().expect_err("port 0");
    assert_eq!(err.problems[0].field, "port");
    assert_eq!(invalid_fields("name: p\nimage: i\nenv: {1A: x}\n"), ["env.1A"]);
    assert_eq!(invalid_fields("name: p\nimage: i\nenv: {\"A=B\": x}\n"), ["env.A=B"]);
}

#[test]
fn all_problems_are_reported_at_once() {
    assert_eq!(
        invalid_fields("name: Bad\nimage: Bad\naccess: {host: bad_host}\n"),
        ["name", "image", "access.host"]
    );
}

#[test]
fn bad_deploy_fields_are_rejected() {
    let cases = [
        ("command: []", "command"),
        ("resources: {memory: 1k}", "resources.memory"),
        ("resources: {memory: 12 parsecs}", "resources.memory"),
        ("resources: {cpus: 0}", "resources.cpus"),
        ("resources: {cpus: .nan}", "resources.cpus"),
        ("health: {path: healthz}", "health.path"),
        ("health: {path: \"/a b\"}", "health.path"),
        ("health: {path: \"/a\\r\\nX: y\"}", "health.path"),
        ("health: {path: /h, interval: 1ms}", "health.interval"),
        ("health: {path: /h, healthy_after: 0}", "health.healthy_after"),
        ("health: {path: /h, port: 0}", "health.port"),
        ("update: {max_surge: 0, max_unavailable: 0}", "update"),
        ("update: {progress_deadline: 0s}", "update.progress_deadline"),
        ("update: {min_ready: 2h}", "update.min_ready"),
        ("update: {max_failures: 0}", "update.max_failures"),
        ("stop_grace_period: 2h", "stop_grace_period"),
    ];
    for (yaml, field) in cases {
        assert_eq!(
            invalid_fields(&format!("name: p\nimage: i\n{yaml}\n")),
            [field],
            "{yaml}"
        );
    }
    for yaml in [
        "stop_grace_period: soon",
        "health: {path: /h, timeout: 5}",
        "update: {max_surge: -1}",
        "health: {}",
        "health: {type: http}",
        "health: {type: tcp, path: /h}",
        "health: {type: grpc}",
    ] {
        assert!(
            matches!(
                parse_specs(&format!("name: p\nimage: i\n{yaml}\n")),
                Err(SpecError::Syntax { .. })
            ),
            "{yaml}"
        );
    }
}

#[test]
fn memory_sizes_parse() {
    assert_eq!(parse_memory("1048576"), Ok(1 << 20));
    assert_eq!(parse_memory("512k"), Ok(512_000));
    assert_eq!(parse_memory("2Gi"), Ok(2 << 30));
    assert!(parse_memory("99999999999999999999g").is_err());
    assert!(parse_memory("1.5g").is_err());
}

#[test]
fn host_limits_default_on_and_can_be_overridden() {
    let spec = parse_one("name: a\nimage: b\n").expect("valid");
    let d = spec.container_limits();
    assert_eq!(
        (d.log_max_bytes, d.log_max_files, d.pids, d.no_new_privileges),
        (10 * 1024 * 1024, 3, Some(1024), true)
    );
    let spec = parse_one(
        "name: a\nimage: b\nlogging: {max_size: 1Mi, max_files: 5}\nresources: {pids: 0}\nsecurity: {no_new_privileges: false}\n",
    )
    .expect("valid");
    let o = spec.container_limits();
    assert_eq!(
        (o.log_max_bytes, o.log_max_files, o.pids, o.no_new_privileges),
        (1024 * 1024, 5, None, false)
    );
    assert_eq!(
        parse_one("name: a\nimage: b\nresources: {pids: 64}\n")
            .expect("valid")
            .container_limits()
            .pids,
        Some(64)
    );
    // What the container runs with is part of its revision...
    assert_ne!(spec.revision_hash(), PodSpec::new("a", "b").revision_hash());
    // ...but specs that do not set the new fields keep the hash they had before them.
    assert_eq!(PodSpec::new("p", "img:1").revision_hash(), "a7f00d741e54");
    for (yaml, field) in [
        ("logging: {max_size: 10}", "logging.max_size"),
        ("logging: {max_size: 2Ti}", "logging.max_size"),
        ("logging: {max_size: lots}", "logging.max_size"),
        ("logging: {max_files: 0}", "logging.max_files"),
        ("logging: {max_files: 101}", "logging.max_files"),
        ("resources: {pids: 4194305}", "resources.pids"),
    ] {
        assert_eq!(
            invalid_fields(&format!("name: p\nimage: i\n{yaml}\n")),
            [field],
            "{yaml}"
        );
    }
    assert!(matches!(
        parse_specs("name: p\nimage: i\nsecurity: {privileged: true}\n"),
        Err(SpecError::Syntax { .. })
    ));
}

#[test]
fn access_hosts_paths_and_limits_are_checked_by_field() {
    let cases = [
        ("access: {}", "access.host"),
        ("access: {host: \"a.*.com\"}", "access.host"),
        ("access: {host: \"*\"}", "access.host"),
        ("access: {host: \"*.com\"}", "access.host"),
        ("access: {hosts: [a.com, \"**.a.com\"]}", "access.hosts[1]"),
        ("access: {hosts: [a.com, \"a*.b.com\"]}", "access.hosts[1]"),
        ("access: {hosts: [\"a.com;\"]}", "access.hosts[0]"),
        (
            &format!("access: {{hosts: [\"*.{}.com\"]}}", "a".repeat(247)),
            "access.hosts[0]",
        ),
        ("access: {host: a.com, path: api}", "access.path"),
        ("access: {host: a.com, path: \"/a b\"}", "access.path"),
        ("access: {host: a.com, path: \"/a;b\"}", "access.path"),
        ("access: {host: a.com, path: \"/a//b\"}", "access.path"),
        ("access: {host: a.com, path: \"/a/../b\"}", "access.path"),
        ("access: {host: a.com, path: \"/a%2fb\"}", "access.path"),
        ("access: {host: a.com, path: \"/api*\"}", "access.path"),
        ("access: {host: a.com, path: \"/a{b}\"}", "access.path"),
        ("access: {host: a.com, max_body: 10}", "access.max_body"),
        ("access: {host: a.com, max_body: 1025Gi}", "access.max_body"),
        ("access: {host: a.com, max_body: 1023}", "access.max_body"),
        ("access: {host: a.com, max_body: lots}", "access.max_body"),
        ("access: {host: a.com, timeout: 0s}", "access.timeout"),
        ("access: {host: a.com, timeout: 2d}", "access.timeout"),
        ("access: {hosts: [\"*.a.com\"], tls: auto}", "access.tls"),
    ];
    for (access, field) in cases {
        assert_eq!(
            invalid_fields(&format!("name: p\nimage: i\n{access}\n")),
            [field],
            "{access}"
        );
    }
    // Durations are parsed before validation: the parser names the block.
    let err = parse_specs("name: p\nimage: i\naccess: {host: a.com, timeout: forever}\n").expect_err("timeout");
    assert_eq!(err.field().as_deref(), Some("access"), "{err}");
    assert!(err.to_string().contains("\"forever\" is not a duration"), "{err}");
    let spec = parse_one(
        "name: p\nimage: i\naccess:\n  host: a.example.com\n  hosts: [\"*.example.com\", b.example.com]\n  path: /api/v2/\n  max_body: 1Mi\n  timeout: 1h\n  tls: {secret: wild}\n",
    )
    .expect("valid");
    assert_eq!(spec.hosts(), ["a.example.com", "*.example.com", "b.example.com"]);
    assert_eq!(spec.host(), Some("a.example.com"));
    assert_eq!(spec.route_path(), "/api/v2");
    assert_eq!(spec.max_body_bytes(), 1024 * 1024);
    assert_eq!(spec.ingress_timeout(), Duration::from_secs(3600));
    let plain = parse_one("name: p\nimage: i\naccess: {host: a.com}\n").expect("valid");
    assert_eq!(plain.route_path(), "/");
    assert_eq!(plain.max_body_bytes(), DEFAULT_MAX_BODY);
    assert_eq!(plain.ingress_timeout(), DEFAULT_INGRESS_TIMEOUT);
    // A name given twice is served once.
    let twice = parse_one("name: p\nimage: i\naccess: {host: a.com, hosts: [b.com, a.com, b.com]}\n").expect("valid");
    assert_eq!(twice.hosts(), ["a.com", "b.com"]);
    // Only `hosts`, and the path `/`.
    let only = parse_one("name: p\nimage: i\naccess: {hosts: [x.com], path: /}\n").expect("valid");
    assert_eq!((only.host(), only.route_path()), (Some("x.com"), "/"));
    // A stored spec of the old shape (`host` only) reads the same.
    let old: PodSpec = serde_json::from_str(r#"{"name":"p","image":"i","access":{"host":"a.com"}}"#).expect("old");
    assert_eq!(old, plain);
    assert_eq!(
        serde_json::to_value(&old).expect("json")["access"],
        serde_json::json!({"host": "a.com"})
    );
}

#[test]
fn volumes_are_checked() {
    let spec = parse_one(
        "name: db\nimage: i\nvolumes: [{name: pgdata, path: /var/lib/postgresql/data}, {tmpfs: /tmp, size: 8Mi}, {tmpfs: /run}]\nupdate: {strategy: recreate}\n",
    )
    .expect("valid");
    assert_eq!(
        spec.volumes.iter().filter_map(Volume::mount).collect::<Vec<_>>(),
        [
            VolumeMount::Named {
                name: "pgdata".into(),
                path: "/var/lib/postgresql/data".into()
            },
            VolumeMount::Tmpfs {
                path: "/tmp".into(),
                bytes: 8 * 1024 * 1024
            },
            VolumeMount::Tmpfs {
                path: "/run".into(),
                bytes: DEFAULT_TMPFS_BYTES
            },
        ]
    );
    assert_eq!(spec.update_strategy().strategy, Strategy::Recreate);
    assert!(spec.warnings().is_empty(), "{:?}", spec.warnings());
    for (yaml, field) in [
        ("[{name: data, path: relative}]", "volumes[0].path"),
        ("[{name: data, path: /}]", "volumes[0].path"),
        ("[{name: data, path: /a/../b}]", "volumes[0].path"),
        ("[{name: data, path: '/a b'}]", "volumes[0].path"),
        ("[{name: data, path: /a//b}]", "volumes[0].path"),
        ("[{name: Data, path: /a}]", "volumes[0].name"),
        ("[{name: data, path: /a, size: 1Mi}]", "volumes[0].size"),
        ("[{name: data}]", "volumes[0]"),
        ("[{name: data, path: /a, tmpfs: /b}]", "volumes[0]"),
        ("[{tmpfs: /a, size: 1k}]", "volumes[0].size"),
        ("[{tmpfs: /a, size: 1025Gi}]", "volumes[0].size"),
        ("[{tmpfs: /a, size: lots}]", "volumes[0].size"),
        ("[{name: a, path: /x}, {tmpfs: /x}]", "volumes[1].tmpfs"),
        ("[{name: a, path: /x}, {name: a, path: /y}]", "volumes[1].name"),
    ] {
        assert_eq!(
            invalid_fields(&format!("name: p\nimage: i\nvolumes: {yaml}\n")),
            [field],
            "{yaml}"
        );
    }
    let many: Vec<String> = (0..=MAX_VOLUMES).map(|i| format!("{{tmpfs: /t{i}}}")).collect();
    assert_eq!(
        invalid_fields(&format!("name: p\nimage: i\nvolumes: [{}]\n", many.join(", "))),
        ["volumes"]
    );
    assert!(parse_specs("name: p\nimage: i\nvolumes: [{name: a, path: /a, mode: rw}]\n").is_err());
}

#[test]
fn shared_volumes_warn() {
    let spec = PodSpec::new("db", "i").with_volume(Volume::named("pgdata", "/data"));
    let warnings = spec.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("recreate"), "{warnings:?}");
    let warnings = spec.clone().with_replicas(3).warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("3 replicas"), "{warnings:?}");
    let tmp_only = PodSpec::new("db", "i")
        .with_volume(Volume::tmpfs("/tmp", None))
        .with_replicas(3);
    assert!(tmp_only.warnings().is_empty());
}

#[test]
fn volumes_and_strategy_are_in_the_revision_only_where_they_change_containers() {
    let plain = PodSpec::new("p", "i");
    let with_volume = plain.clone().with_volume(Volume::named("a", "/a"));
    assert_ne!(plain.revision_hash(), with_volume.revision_hash());
    let recreate = parse_one("name: p\nimage: i\nupdate: {strategy: recreate}\n").expect("valid");
    assert_eq!(plain.revision_hash(), recreate.revision_hash());
    // A spec without the new fields serializes as before.
    let json =
        serde_json::to_string(&parse_one("name: p\nimage: i\nupdate: {max_surge: 2}\n").expect("valid")).expect("json");
    assert!(!json.contains("strategy") && !json.contains("volumes"), "{json}");
}

#[test]
fn expose_is_checked() {
    let spec = parse_one(
        "name: db\nimage: i\nexpose: [{port: 5432, listen: \"127.0.0.1:15432\"}, {port: 9000, listen: \"19000\"}, {port: 1, listen: \"0.0.0.0:19001\"}, {port: 2, listen: \"[::1]:19002\"}, {port: 3, listen: \"[::]:19003\"}]\n",
    )
    .expect("valid");
    let exposed: Vec<(u16, String)> = spec.exposed().into_iter().map(|(p, a)| (p, a.to_string())).collect();
    assert_eq!(
        exposed,
        [
            (5432, "127.0.0.1:15432".to_string()),
            (9000, "127.0.0.1:19000".to_string()),
            (1, "0.0.0.0:19001".to_string()),
            (2, "[::1]:19002".to_string()),
            (3, "[::]:19003".to_string())
        ]
    );
    for (expose, field) in [
        ("[{port: 0, listen: \"15432\"}]", "expose[0].port"),
        ("[{port: 1, listen: \"127.0.0.1\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"127.0.0.1:0\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"0\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"70000\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"db.example.com:5432\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"::1:15432\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"[::1]\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"[127.0.0.1]:15432\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"[fe80::1%eth0]:15432\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"[::1]:443\"}]", "expose[0].listen"),
        (
            "[{port: 1, listen: \"[::1]:15432\"}, {port: 2, listen: \"127.0.0.1:15432\"}]",
            "expose[1].listen",
        ),
        ("[{port: 1, listen: \"015432\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"127.0.0.1:08000\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"127.0.0.01:8000\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \":8000\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"127.0.0.1:+8000\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"127.0.0.1:443\"}]", "expose[0].listen"),
        ("[{port: 1, listen: \"80\"}]", "expose[0].listen"),
        (
            "[{port: 1, listen: \"15432\"}, {port: 2, listen: \"0.0.0.0:15432\"}]",
            "expose[1].listen",
        ),
    ] {
        assert_eq!(
            invalid_fields(&format!("name: p\nimage: i\nexpose: {expose}\n")),
            [field],
            "{expose}"
        );
    }
    let many: Vec<String> = (0..17)
        .map(|i| format!("{{port: 1, listen: \"{}\"}}", 20000 + i))
        .collect();
    assert_eq!(
        invalid_fields(&format!("name: p\nimage: i\nexpose: [{}]\n", many.join(", "))),
        ["expose"]
    );
    assert!(parse_one("name: p\nimage: i\nexpose: [{port: 1, listen: \"1\", proto: udp}]\n").is_err());
}

#[test]
fn hooks_are_lists_of_strings_with_a_bounded_timeout() {
    let spec = parse_one(
        "name: a\nimage: b\nhooks:\n  pre_deploy: [./migrate, up]\n  post_deploy: [./notify]\n  timeout: 5m\n",
    )
    .expect("valid hooks");
    let hooks = spec.hooks.clone().expect("hooks");
    assert_eq!(hooks.pre_deploy, Some(vec!["./migrate".to_string(), "up".to_string()]));
    assert_eq!(hooks.timeout(), Duration::from_secs(300));
    assert_eq!(Hooks::default().timeout(), DEFAULT_HOOK_TIMEOUT);
    // Hooks are part of the revision; a pod without them keeps its old hash.
    let plain = PodSpec::new("a", "b");
    assert_ne!(spec.revision_hash(), plain.revision_hash());
    assert_eq!(plain.with_template_of(&spec).revision_hash(), spec.revision_hash());
    for (hooks, field) in [
        ("{pre_deploy: []}", "hooks.pre_deploy"),
        ("{post_deploy: [\"a\\0b\"]}", "hooks.post_deploy[0]"),
        ("{pre_deploy: [x], timeout: 0s}", "hooks.timeout"),
        ("{pre_deploy: [x], timeout: 25h}", "hooks.timeout"),
        ("{timeout: 1m}", "hooks"),
    ] {
        assert_eq!(
            invalid_fields(&format!("name: a\nimage: b\nhooks: {hooks}\n")),
            vec![field.to_string()],
            "{hooks}"
        );
    }
    // Not a list of strings: refused by the parser, naming the field.
    for hooks in ["{pre_deploy: ./migrate}", "{pre_deploy: [./migrate, {up: 1}]}"] {
        let err = parse_specs(&format!("name: a\nimage: b\nhooks: {hooks}\n")).expect_err(hooks);
        assert!(err.to_string().contains("hooks.pre_deploy"), "{hooks}: {err}");
    }
}

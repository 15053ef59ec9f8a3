//! The spec itself: defaults, readiness, revision hashes and templates.

use super::*;

#[test]
fn revision_hash_ignores_replicas_and_host() {
    let a = PodSpec::new("p", "img:1");
    let scaled = a.clone().with_replicas(7).with_host("x.local");
    assert_eq!(a.revision_hash(), scaled.revision_hash());
    assert_ne!(a.revision_hash(), PodSpec::new("p", "img:2").revision_hash());
    assert_ne!(a.revision_hash(), a.clone().with_port(8080).revision_hash());
    assert_ne!(a.revision_hash(), a.clone().with_env("K", "v").revision_hash());
    assert_eq!(a.revision_hash().len(), 12);
}

#[test]
fn deploy_fields_parse_with_defaults() {
    let spec = parse_one(
        "name: a\nimage: b\ncommand: [/app]\nargs: [--port, \"8080\"]\nresources: {memory: 256Mi, cpus: 0.5}\n\
         health: {path: /healthz}\nupdate: {max_surge: 2, progress_deadline: 30s}\nstop_grace_period: 5s\n\
         restart: {initial_delay: 500ms}\n",
    )
    .expect("valid");
    assert_eq!(spec.memory_bytes(), Some(256 * 1024 * 1024));
    let h = spec.health.as_ref().expect("health");
    assert_eq!(
        (h.interval, h.timeout, h.healthy_after, h.unhealthy_after),
        (Duration::from_secs(2), Duration::from_secs(1), 1, 3)
    );
    let u = spec.update_strategy();
    assert_eq!(
        (u.max_surge, u.max_unavailable, u.progress_deadline),
        (2, 0, Duration::from_secs(30))
    );
    assert_eq!(spec.stop_grace_period, Some(Duration::from_secs(5)));
    assert_eq!(
        spec.restart.as_ref().and_then(|r| r.initial_delay),
        Some(Duration::from_millis(500))
    );
    // Round trip through JSON (what the store keeps) and YAML (what `get -o yaml` prints).
    let json = serde_json::to_string(&spec).expect("json");
    assert_eq!(serde_json::from_str::<PodSpec>(&json).expect("back"), spec);
    let yaml = serde_yaml_ng::to_string(&spec).expect("yaml");
    assert_eq!(parse_one(&yaml).expect("yaml back"), spec);
}

#[test]
fn readiness_defaults_to_tcp_and_the_old_health_shape_means_http() {
    let spec = parse_one("name: p\nimage: i\n").expect("parse");
    assert_eq!(spec.readiness().kind, CheckKind::Tcp);
    assert_eq!(spec.readiness().interval, IMPLICIT_CHECK_INTERVAL);
    let explicit = parse_one("name: p\nimage: i\nhealth: {type: tcp}\n").expect("parse");
    assert_eq!(
        explicit.readiness().interval,
        Duration::from_secs(2),
        "an explicit block keeps its default"
    );
    let u = spec.update_strategy();
    assert_eq!((u.min_ready, u.max_failures), (Duration::from_secs(5), 3));
    let kind = |yaml: &str| {
        parse_one(&format!("name: p\nimage: i\n{yaml}\n"))
            .expect(yaml)
            .readiness()
            .kind
    };
    assert_eq!(kind("health: {path: /healthz}"), CheckKind::Http);
    assert_eq!(kind("health: {type: http, path: /healthz}"), CheckKind::Http);
    assert_eq!(kind("health: {type: tcp, port: 81}"), CheckKind::Tcp);
    assert_eq!(kind("health: {type: none}"), CheckKind::None);
    let spec =
        parse_one("name: p\nimage: i\nhealth: {type: tcp}\nupdate: {min_ready: 0s, max_failures: 5}\n").expect("parse");
    assert_eq!(spec.update_strategy().min_ready, Duration::ZERO);
    // Round trips (what the store keeps, what `get -o yaml` prints).
    let yaml = serde_yaml_ng::to_string(&spec).expect("yaml");
    assert_eq!(parse_one(&yaml).expect("back"), spec);
}

#[test]
fn template_changes_make_new_revisions_policies_do_not() {
    let a = PodSpec::new("p", "img:1");
    let mut b = a.clone();
    b.command = Some(vec!["/x".into()]);
    assert_ne!(a.revision_hash(), b.revision_hash());
    let mut c = a.clone();
    c.resources = Some(Resources {
        memory: Some("64Mi".into()),
        cpus: None,
        pids: None,
    });
    assert_ne!(a.revision_hash(), c.revision_hash());
    let d = a.clone().with_health("/healthz");
    assert_eq!(a.revision_hash(), d.revision_hash());
    let e = PodSpec::new("p", "img:2").with_replicas(4).with_host("h.local");
    let undone = e.with_template_of(&a);
    assert_eq!(undone.revision_hash(), a.revision_hash());
    assert_eq!((undone.replicas, undone.host()), (4, Some("h.local")));
}

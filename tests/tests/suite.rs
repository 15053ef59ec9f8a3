//! The integration tests against the real engine, as one test binary: every
//! file of this directory is a module of it, except `multinode.rs` and
//! `partition.rs`, which scripts/test.sh runs alone, bounded in time, as
//! binaries of their own (see tests/Cargo.toml: `autotests` is off, so a
//! file runs only if it is named here or there; the test below checks).
//! One binary instead of one per file: linking was most of a warm run.
//!
//! Run one file's tests with `cargo test -p dubernetes-tests --test suite web_apps::`,
//! one test by its name: `cargo test -p dubernetes-tests --test suite -- --exact web_apps::websocket_sse_and_uploads`.

mod api;
mod auth;
mod backend;
mod bounds;
mod cli;
mod compose;
mod concurrency;
mod contract;
mod cron;
mod dashboard;
mod durability;
mod exec;
mod ha;
mod healing;
mod hooks;
mod hostile;
mod hostile_ingress;
mod hostile_logs;
mod library;
mod limits;
mod load;
mod names;
mod observability;
mod orchestrator;
mod ownership;
mod rollout;
mod safe_rollout;
mod secret_trust;
mod secrets;
mod tcp_expose;
mod tls;
mod volumes;
mod web_apps;

/// Every file of tests/tests/ runs: a module of this binary, or a binary of
/// its own in tests/Cargo.toml. With `autotests` off, a new file that is in
/// neither would silently never run.
#[test]
fn every_test_file_is_in_a_test_binary() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let suite = include_str!("suite.rs");
    let manifest = include_str!("../Cargo.toml");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tests/tests/") {
        let name = entry.expect("an entry").file_name().to_string_lossy().into_owned();
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        let own_binary = manifest.contains(&format!("path = \"tests/{name}\""));
        if !own_binary && !suite.contains(&format!("\nmod {module};\n")) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "{missing:?} in tests/tests/ would never run: add `mod NAME;` to tests/tests/suite.rs (or a [[test]] to tests/Cargo.toml)"
    );
}

//! The API contract, checked property-based: schemathesis generates requests
//! from `docs/openapi.json` (valid ones and ones that break it) and checks a
//! real server against the document: no 5xx, only documented statuses and
//! content types, bodies that match their schemas, valid input accepted,
//! invalid input refused, refusals without the token.
//!
//! scripts/test.sh installs schemathesis and its pinned dependencies
//! (`tests/contract/requirements.txt`) into a venv (`target/contract-venv`);
//! `DUBERNETES_SCHEMATHESIS` names another binary. It runs every phase
//! (examples, coverage, fuzzing, stateful) and every check, with real writes,
//! against a server of a throwaway instance (its own name, data dir and
//! network; its containers and volumes are removed with it). The hooks
//! (`tests/contract/dubernetes_hooks.py`) keep the run harmless: a valid pod
//! is never pulled (`pull: never`: no registry, no traffic off the machine),
//! followed logs are not followed. `GET /v1/watch` (a stream that
//! never ends) is left out, and so are the `/v1/secrets` routes: whether a
//! certificate is usable is not a schema, so generated ones are refused with
//! 422 (tests/tests/tls.rs checks those routes with real certificates). So
//! is `POST /v1/pods/{name}/exec` (it upgrades the connection): the real
//! engine tests of tests/tests/exec.rs check it. The `/runs` routes are in:
//! a valid run is detached (real containers of the `contract` pod). A body
//! over the server's limit counts as rejected with its 413.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dubernetes_tests::TestServer;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("DUBERNETES_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo().join("target"));
            target.join("contract-venv/bin/schemathesis")
        });
    assert!(
        path.exists(),
        "{} is missing: the contract test needs schemathesis; scripts/test.sh installs it \
         (python3 -m venv target/contract-venv && target/contract-venv/bin/pip install --no-deps -r tests/contract/requirements.txt), \
         or set DUBERNETES_SCHEMATHESIS",
        path.display()
    );
    path
}

/// Runs schemathesis on `document` against `server`; its exit status and output.
fn run(server: &TestServer, document: &Path, extra: &[&str]) -> (bool, String) {
    // Its cache (`.schemathesis/`, replayed failures) stays out of the tree and out of the next run.
    let scratch = tempfile::tempdir().expect("tempdir");
    // A body over the server's limit is refused with 413 before it is read,
    // whatever else is wrong with it: a valid rejection of a negative case.
    let config = scratch.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        "[checks.negative_data_rejection]\nexpected-statuses = [\"400\", \"401\", \"403\", \"404\", \"405\", \"406\", \"409\", \"413\", \"415\", \"422\", \"428\", \"429\", \"5xx\"]\n",
    )
    .expect("write schemathesis.toml");
    let output = Command::new(schemathesis())
        .current_dir(scratch.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(document)
        .args(["--url", &server.url])
        .args(["--header", &format!("Authorization: Bearer {}", server.token)])
        // The watch never ends; a certificate's validity (PEM, key match,
        // expiry) is not a schema, so generated secrets are refused with 422:
        // tests/tests/tls.rs checks those routes with real certificates.
        // Exec upgrades the connection (no schema for what follows):
        // tests/tests/exec.rs checks it.
        .args(["--exclude-path-regex", "^/v1/(watch|secrets)|/exec$"])
        .args(["--checks", "all"])
        // Every phase, every check: the stateful phase chains real writes
        // (create, read, update, roll back, delete) through the document's links.
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--workers", "1", "--no-shrink", "--request-timeout", "10"])
        .args(["--output-truncate", "false"])
        .args(extra)
        .env("PYTHONPATH", repo().join("tests/contract"))
        .env("SCHEMATHESIS_HOOKS", "dubernetes_hooks")
        .env("DUBERNETES_CONTRACT_WRITES", "real")
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn the_server_keeps_the_openapi_contract() {
    let server = TestServer::start("contract").await;
    // One real pod, so reads of it (and its revisions and logs) answer 200.
    let yaml = "name: contract\nimage: dubernetes/whoami:v1\n";
    assert_eq!(server.put_yaml("contract", yaml).await.0, 201);
    server.wait_converged("contract", Duration::from_secs(60)).await;

    let document = repo().join("docs/openapi.json");
    let examples = std::env::var("DUBERNETES_CONTRACT_EXAMPLES").unwrap_or_else(|_| "40".into());
    let seed = std::env::var("DUBERNETES_CONTRACT_SEED").unwrap_or_else(|_| "19".into());
    let (ok, output) = run(&server, &document, &["--max-examples", &examples, "--seed", &seed]);
    assert!(ok, "the server breaks docs/openapi.json:\n{output}");
    let summary = output
        .lines()
        .find(|l| l.contains(" generated"))
        .unwrap_or_else(|| panic!("no summary in:\n{output}"));
    eprintln!("schemathesis: {}", summary.trim());

    // The check can fail: a document that leaves out the 404 of reading a
    // missing pod is refused.
    let mut broken: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&document).expect("read docs/openapi.json")).expect("JSON");
    let removed = broken["paths"]["/v1/pods/{name}"]["get"]["responses"]
        .as_object_mut()
        .and_then(|r| r.remove("404"));
    assert!(removed.is_some(), "GET /v1/pods/{{name}} documents its 404");
    let dir = tempfile::tempdir().expect("tempdir");
    let broken_path = dir.path().join("openapi.json");
    std::fs::write(&broken_path, broken.to_string()).expect("write");
    // Exactly that one operation (`--include-path` and `--include-method`
    // select the union of their matches), valid names only (every one of them
    // names no pod: a 404), a fixed seed: the refusal does not depend on luck.
    let (ok, output) = run(
        &server,
        &broken_path,
        &[
            "--include-name",
            "GET /v1/pods/{name}",
            "--mode",
            "positive",
            "--max-examples",
            "20",
            "--seed",
            &seed,
        ],
    );
    let selected = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Operations:").map(str::trim));
    assert!(
        selected.is_some_and(|s| s.starts_with("1 selected")),
        "the broken run selects GET /v1/pods/{{name}} alone:\n{output}"
    );
    assert!(!ok, "an undocumented status went unnoticed:\n{output}");
    assert!(output.contains("Received: 404"), "{output}");
}

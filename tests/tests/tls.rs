//! HTTPS: the API over TLS (`--tls-cert`/`--tls-key`) with dubectl and its
//! `--ca-file`, user certificates (`dubectl create secret tls`) with each bad
//! input, and certificates from a real ACME server (Pebble) served by the
//! ingress.

use std::process::Command;
use std::time::{Duration, Instant};

use dubernetes_tests::pki::TestCa;
use dubernetes_tests::{TestServer, binary, free_port, stderr, stdout};

/// The API over HTTPS: dubectl with the CA file works, without it fails with a
/// message that names `--ca-file`; a plain-HTTP request gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_over_tls_with_dubectl() {
    let ca = TestCa::new("api test CA");
    let server = TestServer::start_with_api_tls("tls-api", &[], &ca).await;
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let out = server.dubectl(&["get", "pods"]);
    assert!(
        out.status.success(),
        "dubectl over https: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = server.dubectl(&["version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Server Version"), "{}", stdout(&out));

    // Without the CA: refused, and the message says what to do.
    let out = Command::new(binary("dubectl"))
        .args(["get", "pods"])
        .env("DUBERNETES_SERVER", &server.url)
        .env("DUBERNETES_TOKEN", &server.token)
        .env_remove("DUBERNETES_CA_FILE")
        .env("XDG_CONFIG_HOME", server.data_dir.path())
        .output()
        .expect("dubectl");
    assert!(!out.status.success(), "an untrusted certificate must fail");
    assert!(stderr(&out).contains("--ca-file"), "{}", stderr(&out));

    // The CA from the config file, relative to it.
    let config_dir = server.data_dir.path().join("dubernetes");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::copy(server.api_ca_file.as_ref().expect("CA file"), config_dir.join("ca.pem")).expect("copy CA");
    std::fs::write(
        config_dir.join("config.yaml"),
        format!("server: {}\nca_file: ca.pem\n", server.url),
    )
    .expect("config");
    let out = Command::new(binary("dubectl"))
        .args(["get", "pods"])
        .env_remove("DUBERNETES_SERVER")
        .env_remove("DUBERNETES_CA_FILE")
        .env("DUBERNETES_TOKEN", &server.token)
        .env("XDG_CONFIG_HOME", server.data_dir.path())
        .output()
        .expect("dubectl");
    assert!(out.status.success(), "ca_file from the config file: {}", stderr(&out));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = server.url.replace("https://", "http://");
    let answer = reqwest::Client::new().get(format!("{plain}/healthz")).send().await;
    assert!(answer.is_err(), "plain HTTP must not be answered: {answer:?}");
    assert!(
        server.log().contains("scheme=\"https\"") || server.log().contains("scheme=https"),
        "{}",
        server.log()
    );
}

/// A key that does not belong to the certificate stops the server before it
/// starts anything, naming both flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tls_key_mismatch_refused() {
    let ca = TestCa::new("mismatch CA");
    let (one, other) = (ca.leaf(&["127.0.0.1"]), ca.leaf(&["127.0.0.1"]));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cert.pem"), &one.chain_pem).expect("cert");
    std::fs::write(dir.path().join("key.pem"), &other.key_pem).expect("key");
    let started = Instant::now();
    let out = Command::new(binary("dubernetes-server"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--instance", "t-tls-mismatch"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("key.pem"))
        .env("DUBERNETES_TOKEN", dubernetes_tests::random_token())
        .output()
        .expect("run server");
    assert!(!out.status.success(), "a mismatched key must stop the server");
    assert!(stderr(&out).contains("--tls-cert / --tls-key"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
}

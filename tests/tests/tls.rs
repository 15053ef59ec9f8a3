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
        .args(["--listen", "127.0.0.1:0"])
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

/// `POST /v1/secrets` with a body, as the server answers it.
async fn post_secret(server: &TestServer, name: &str, cert: &str, key: &str) -> (u16, serde_json::Value) {
    let response = server
        .http
        .post(format!("{}/v1/secrets", server.url))
        .json(&serde_json::json!({"name": name, "cert": cert, "key": key}))
        .send()
        .await
        .expect("POST /v1/secrets");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// User certificates: stored once, listed without the key, and every bad
/// input (not PEM, key of another certificate, expired, wrong host, unknown
/// secret, in use) is a 4xx that names the problem and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificates_and_each_bad_input() {
    let server = TestServer::start("tls-user").await;
    let ca = TestCa::new("user test CA");
    let good = ca.leaf(&["web.tls.test"]);
    let other = ca.leaf(&["web.tls.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &good.chain_pem).expect("cert");
    std::fs::write(&key_file, &good.key_pem).expect("key");
    let (cert, key) = (cert_file.to_str().expect("path"), key_file.to_str().expect("path"));

    let out = server.dubectl(&["create", "secret", "tls", "web-cert", "--cert", cert, "--key", key]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    assert!(stdout(&out).contains("secret/web-cert created"), "{}", stdout(&out));
    assert!(stdout(&out).contains("web.tls.test"), "{}", stdout(&out));

    // Listed with hosts and expiry; the key is never answered.
    let out = server.dubectl(&["get", "secrets"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("web-cert")
            && table.contains("web.tls.test")
            && (table.contains("in 89d") || table.contains("in 90d")),
        "{table}"
    );
    for format in ["yaml", "json"] {
        let out = server.dubectl(&["get", "secret", "web-cert", "-o", format]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("not_after"), "{}", stdout(&out));
        assert!(
            !stdout(&out).contains("PRIVATE KEY"),
            "the key must never be shown: {}",
            stdout(&out)
        );
    }
    let (status, listed) = server.get_json("/v1/secrets").await;
    assert_eq!(status, 200);
    assert!(
        !listed.to_string().contains("PRIVATE KEY") && listed[0].get("key").is_none(),
        "{listed}"
    );
    assert!(
        listed[0]["issuer"].as_str().is_some_and(|i| i.contains("user test CA")),
        "{listed}"
    );

    // Each bad input: 4xx naming the problem, nothing stored.
    let expired = ca.expired_leaf(&["old.tls.test"]);
    let cases: [(&str, &str, &str, &str, u16, &str, &str); 7] = [
        (
            "not-pem",
            "hello",
            &good.key_pem,
            "cert",
            422,
            "invalid_certificate",
            "PEM",
        ),
        (
            "key-not-pem",
            &good.chain_pem,
            "hello",
            "key",
            422,
            "invalid_certificate",
            "PEM",
        ),
        (
            "mismatch",
            &good.chain_pem,
            &other.key_pem,
            "key",
            422,
            "invalid_certificate",
            "does not match",
        ),
        (
            "expired",
            &expired.chain_pem,
            &expired.key_pem,
            "cert",
            422,
            "invalid_certificate",
            "expired",
        ),
        (
            "Bad_Name",
            &good.chain_pem,
            &good.key_pem,
            "name",
            422,
            "invalid_certificate",
            "DNS label",
        ),
        (
            "web-cert",
            &good.chain_pem,
            &good.key_pem,
            "name",
            409,
            "conflict",
            "exists already",
        ),
        (
            "swapped",
            &good.key_pem,
            &good.chain_pem,
            "cert",
            422,
            "invalid_certificate",
            "CERTIFICATE",
        ),
    ];
    for (name, cert_pem, key_pem, field, status, code, needle) in cases {
        let (got, body) = post_secret(&server, name, cert_pem, key_pem).await;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["code"], code, "{name}: {body}");
        assert_eq!(body["field"], field, "{name}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{name}: {body}"
        );
        assert!(
            !body.to_string().contains("PRIVATE KEY"),
            "{name}: an error must not quote the key: {body}"
        );
    }
    let (_, listed) = server.get_json("/v1/secrets").await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "bad inputs stored nothing: {listed}"
    );

    // dubectl shows the server's message.
    std::fs::write(dir.path().join("other-key.pem"), &other.key_pem).expect("key");
    let other_key = dir.path().join("other-key.pem");
    let out = server.dubectl(&[
        "create",
        "secret",
        "tls",
        "mismatch",
        "--cert",
        cert,
        "--key",
        other_key.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not match the certificate"),
        "{}",
        stderr(&out)
    );

    // A pod's access.tls: the secret must exist and cover the host.
    let pod = |host: &str, secret: &str| {
        format!("name: web\nimage: dubernetes/whoami:v1\naccess:\n  host: {host}\n  tls: {{secret: {secret}}}\n")
    };
    for (host, secret, needle) in [
        ("other.tls.test", "web-cert", "not the pod's host"),
        ("web.tls.test", "nope", "no TLS secret"),
    ] {
        let (status, body) = server.put_yaml("web", &pod(host, secret)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["field"], "access.tls.secret", "{body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains(needle)), "{body}");
        let (status, _) = server.get_json("/v1/pods/web").await;
        assert_eq!(status, 404, "a refused apply creates no pod");
    }
    let (status, body) = server.put_yaml("web", &pod("web.tls.test", "web-cert")).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    // The ingress serves it over HTTPS with the user's certificate (checked against the user's CA).
    server.wait_converged("web", Duration::from_secs(60)).await;
    let tls_port = dubernetes_tests::wait_for("the HTTPS port", Duration::from_secs(30), || async {
        server.get_json("/v1/ingress").await.1["tls_port"]
            .as_u64()
            .map(|p| p as u16)
    })
    .await;
    let client = https_client(&ca.cert_pem, "web.tls.test", tls_port);
    let url = format!("https://web.tls.test:{tls_port}/");
    let response = dubernetes_tests::wait_for("HTTPS with the user's certificate", Duration::from_secs(30), || async {
        client.get(&url).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert_eq!(
        peer_certificate(&response),
        pem_der(&good.cert_pem),
        "the uploaded certificate is served"
    );
    let tls = tls_status(&server, "web").await;
    assert_eq!(
        (tls["source"].as_str(), tls["serving"].as_bool()),
        (Some("secret"), Some(true)),
        "{tls}"
    );

    // In use: not deleted; a replacement must still cover the pod's host.
    let out = server.dubectl(&["delete", "secret", "web-cert"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("used by pod(s) web"), "{}", stderr(&out));
    let elsewhere = ca.leaf(&["elsewhere.tls.test"]);
    let (status, body) = server
        .http
        .put(format!("{}/v1/secrets/web-cert", server.url))
        .json(&serde_json::json!({"name": "web-cert", "cert": elsewhere.chain_pem, "key": elsewhere.key_pem}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map(|s| (s, ()))
        .expect("PUT");
    assert_eq!(status, 422, "{body:?}");
    let (_, listed) = server.get_json("/v1/secrets/web-cert").await;
    assert_eq!(
        listed["hosts"],
        serde_json::json!(["web.tls.test"]),
        "unchanged: {listed}"
    );
    assert_eq!(listed["used_by"], serde_json::json!(["web"]), "{listed}");

    let out = server.dubectl(&["delete", "pod", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.dubectl(&["delete", "secret", "web-cert"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, listed) = server.get_json("/v1/secrets").await;
    assert_eq!(listed, serde_json::json!([]));
    assert!(!server.log().contains("PRIVATE KEY"), "keys never reach the log");
}

/// A pod spec routing `host` with `access.tls: auto` (or none).
fn acme_pod(name: &str, host: &str, tls: bool) -> String {
    let tls = if tls { "\n  tls: auto" } else { "" };
    format!("name: {name}\nimage: dubernetes/whoami:v1\naccess:\n  host: {host}{tls}\n")
}

/// The pod's `status.tls`.
async fn tls_status(server: &TestServer, pod: &str) -> serde_json::Value {
    server.get_json(&format!("/v1/pods/{pod}")).await.1["status"]["tls"].clone()
}

/// The DER of the first PEM certificate in `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM certificate")
        .to_vec()
}

/// An HTTPS client that trusts only `root` and reaches `host` at 127.0.0.1:`port`.
fn https_client(root: &str, host: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).expect("root")])
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The leaf certificate (DER) the server presented.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .expect("a TLS peer certificate")
}

/// `access.tls: auto` against a real ACME server (Pebble): the certificate
/// is issued by HTTP-01 through the ingress (Pebble fetches the challenge),
/// HTTPS is served with it (the chain checked against Pebble's root by a real
/// TLS client, SNI choosing the host), HTTP redirects with 308 keeping path and
/// query, a host without `tls` stays HTTP, a failed challenge leaves its host
/// on HTTP with a Warning and a status that says why and is retried, and
/// renewals (forced by a renew-before longer than the certificate's life)
/// swap the certificate without failing a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issuance_https_redirect_failure_and_renewal() {
    let acme_port = free_port();
    let directory = dubernetes_tests::pebble::Pebble::directory_for(acme_port);
    // Pebble's API CA is only known once it is made: the server reads the file
    // when it first talks to the ACME server, after Pebble is up.
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca_file = ca_dir.path().join("pebble-api-ca.pem");
    std::fs::write(&ca_file, "").expect("placeholder");
    let server = TestServer::start_with(
        "tls-acme",
        &[
            "--acme-directory",
            &directory,
            "--acme-ca-file",
            ca_file.to_str().expect("path"),
            "--acme-retry",
            "2s",
            // Longer than Pebble's certificates live: every certificate is due
            // again at once, so the server renews every few seconds.
            "--acme-renew-before",
            "100000d",
        ],
    )
    .await;
    let http_port = server.ingress_port().await;
    let pebble = dubernetes_tests::pebble::Pebble::start(acme_port, http_port).await;
    std::fs::copy(&pebble.api_ca_file, &ca_file).expect("CA file");
    pebble.set_address("bad.acme.test", "127.0.0.2").await;

    for (name, host, tls) in [
        ("web", "web.acme.test", true),
        ("bad", "bad.acme.test", true),
        ("plain", "plain.acme.test", false),
    ] {
        let (status, body) = server.put_yaml(name, &acme_pod(name, host, tls)).await;
        assert!(status == 200 || status == 201, "{name}: {status} {body}");
    }
    let serving = |pod: &'static str| {
        let server = &server;
        move || async move { (tls_status(server, pod).await["serving"] == true).then_some(()) }
    };
    dubernetes_tests::wait_for("web's certificate", Duration::from_secs(120), serving("web")).await;
    let tls_port = wait_until_some(|| async {
        server.get_json("/v1/ingress").await.1["tls_port"]
            .as_u64()
            .map(|p| p as u16)
    })
    .await;
    let root = pebble.issuance_root_pem().await;

    // HTTPS with the issued certificate, checked against Pebble's root.
    let client = https_client(&root, "web.acme.test", tls_port);
    let url = format!("https://web.acme.test:{tls_port}/");
    let response = dubernetes_tests::wait_for("HTTPS through the ingress", Duration::from_secs(30), || async {
        client.get(&url).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    let first_cert = peer_certificate(&response);
    assert!(
        response.text().await.expect("body").contains("Hostname"),
        "whoami answers"
    );
    // SNI: a name without a certificate gets no handshake.
    let unknown = https_client(&root, "nobody.acme.test", tls_port);
    assert!(
        unknown
            .get(format!("https://nobody.acme.test:{tls_port}/"))
            .send()
            .await
            .is_err()
    );

    // HTTP redirects to HTTPS with path and query; the plain host is not redirected.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // (Waited for: right after a reload, nginx's old workers may still take a connection or two.)
    let location = dubernetes_tests::wait_for("the 308 redirect", Duration::from_secs(15), || async {
        let response = http
            .get(format!("http://127.0.0.1:{http_port}/some/path?q=1&r=2"))
            .header("host", "web.acme.test")
            .send()
            .await
            .ok()?;
        (response.status() == 308).then(|| response.headers().get("location").cloned())?
    })
    .await;
    assert_eq!(
        location,
        format!("https://web.acme.test:{tls_port}/some/path?q=1&r=2").as_str()
    );
    // Nothing above waited for plain's replica (web's certificate can come
    // first: nginx itself answers the challenge).
    server.wait_converged("plain", Duration::from_secs(60)).await;
    let (status, _) = server.via_ingress("plain.acme.test").await.expect("plain");
    assert_eq!(status, 200, "a host without tls stays on HTTP");

    // The failed challenge: a Warning, a status that says why, still HTTP.
    dubernetes_tests::wait_for("bad's CertificateFailed warning", Duration::from_secs(60), || async {
        let (_, events) = server.get_json("/v1/events?pod=bad").await;
        events
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["reason"] == "CertificateFailed" && e["kind"] == "Warning")
            .then_some(())
    })
    .await;
    let bad = tls_status(&server, "bad").await;
    assert_eq!(bad["serving"], false, "{bad}");
    assert!(bad["error"].as_str().is_some_and(|e| e.contains("connection")), "{bad}");
    let (status, _) = server.via_ingress("bad.acme.test").await.expect("bad over HTTP");
    assert_eq!(status, 200, "a host whose issuance failed stays on HTTP");
    let out = server.dubectl(&["describe", "pod", "bad"]);
    assert!(stdout(&out).contains("CertificateFailed"), "{}", stdout(&out));
    // Fixed: the retry (with back-off) succeeds.
    pebble.clear_address("bad.acme.test").await;
    dubernetes_tests::wait_for(
        "bad's certificate after the retry",
        Duration::from_secs(90),
        serving("bad"),
    )
    .await;
    assert!(tls_status(&server, "bad").await["error"].is_null());

    // describe shows issuer and expiry; no key anywhere in the pod.
    let out = server.dubectl(&["describe", "pod", "web"]);
    let text = stdout(&out);
    assert!(text.contains("Issuer") && text.contains("Pebble"), "{text}");
    assert!(text.contains("Expires"), "{text}");
    let out = server.dubectl(&["get", "pod", "web", "-o", "yaml"]);
    assert!(!stdout(&out).contains("PRIVATE KEY"), "{}", stdout(&out));

    // Renewal: a new certificate is served; requests meanwhile all succeed.
    assert_ne!(first_cert, Vec::<u8>::new());
    let before = peer_certificate(&client.get(&url).send().await.expect("HTTPS"));
    let started = Instant::now();
    let mut requests = 0;
    loop {
        let response = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("a request failed during renewal: {e}\n{}", server.log()));
        assert_eq!(response.status(), 200);
        requests += 1;
        if peer_certificate(&response) != before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no renewal within 90s\n{}",
            pebble.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "renewed after {:?}; {requests} requests over HTTPS meanwhile, none failed",
        started.elapsed()
    );
    let (_, events) = server.get_json("/v1/events?pod=web").await;
    assert!(events.to_string().contains("CertificateRenewed"), "{events}");
    assert!(!server.log().contains("PRIVATE KEY"), "keys never reach the log");
}

async fn wait_until_some<T, F, Fut>(check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    dubernetes_tests::wait_for("a value", Duration::from_secs(30), check).await
}

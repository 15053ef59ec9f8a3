//! Secrets you can trust (issue 26, item 5), against the real server,
//! engine and nginx: no error quotes a byte of a key; a chain with a junk
//! block is refused; `status.tls.serving` is what nginx serves; an expiring
//! secret warns (event, status, `get pods`) and blocks no unrelated change;
//! a `HEAD` of a dashboard link leaves its code usable; `-o yaml`, `-o json`
//! and `describe` show bidirectional overrides escaped; `dubectl create
//! secret tls` reads a bounded amount; and every secret check happens in the
//! same transaction as the write it guards (concurrent races, many rounds).

use std::time::{Duration, Instant};

use dubernetes_tests::pki::TestCa;
use dubernetes_tests::{PgCluster, TestServer, instance_name, stderr, stdout, wait_for};

const T: Duration = Duration::from_secs(60);

/// `POST /v1/secrets`: (status, body as text).
async fn post_secret(server: &TestServer, name: &str, cert: &str, key: &str) -> (u16, String) {
    let response = server
        .http
        .post(format!("{}/v1/secrets", server.url))
        .json(&serde_json::json!({"name": name, "cert": cert, "key": key}))
        .send()
        .await
        .expect("POST /v1/secrets");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The base64 body of a PEM key, as one string.
fn key_body(key_pem: &str) -> String {
    key_pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>()
}

/// Fails if `text` holds any 8 consecutive characters of `body`, as text
/// or as a parser's byte dump (`[77, 73, 73, ...]`: decimal byte values).
fn assert_quotes_nothing_of(text: &str, body: &str, what: &str) {
    let chars: Vec<char> = body.chars().collect();
    for window in chars.windows(8) {
        let needle: String = window.iter().collect();
        assert!(
            !text.contains(&needle),
            "{what}: the answer quotes key bytes {needle:?}:\n{text}"
        );
    }
    for window in body.as_bytes().windows(8) {
        let dump = window.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
        assert!(
            !text.contains(&dump),
            "{what}: the answer dumps key bytes [{dump}]:\n{text}"
        );
    }
}

fn pod_yaml(name: &str, host: &str, secret: &str, replicas: u32) -> String {
    format!(
        "name: {name}\nimage: dubernetes/whoami:v1\nreplicas: {replicas}\naccess:\n  host: {host}\n  tls: {{secret: {secret}}}\n"
    )
}

async fn tls_status(server: &TestServer, pod: &str) -> serde_json::Value {
    server.get_json(&format!("/v1/pods/{pod}")).await.1["status"]["tls"].clone()
}

/// A key pasted on one line (or with literal `\n`), or given as the
/// certificate, is refused without a byte of it in the answer; a chain with
/// a junk certificate block is refused at upload; `--cert /dev/zero` fails
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_quote_no_key_and_chains_are_checked_whole() {
    let server = TestServer::start("trust-errors").await;
    let ca = TestCa::new("trust CA");
    let leaf = ca.leaf(&["web.trust.test"]);
    let body = key_body(&leaf.key_pem);
    let one_line = leaf.key_pem.replace('\n', " ");
    let literal_n = leaf.key_pem.replace('\n', "\\n");
    let no_breaks = leaf.key_pem.replace('\n', "");
    for (what, cert, key) in [
        ("key on one line", leaf.chain_pem.as_str(), one_line.as_str()),
        ("key with literal \\n", leaf.chain_pem.as_str(), literal_n.as_str()),
        ("key without line breaks", leaf.chain_pem.as_str(), no_breaks.as_str()),
        ("key on one line as the cert", one_line.as_str(), one_line.as_str()),
        (
            "key with literal \\n as the cert",
            literal_n.as_str(),
            leaf.key_pem.as_str(),
        ),
        ("the key file as the cert", leaf.key_pem.as_str(), leaf.key_pem.as_str()),
    ] {
        let (status, answer) = post_secret(&server, "web-cert", cert, key).await;
        assert_eq!(status, 422, "{what}: {answer}");
        assert!(answer.contains("invalid_certificate"), "{what}: {answer}");
        assert_quotes_nothing_of(&answer, &body, what);
    }
    // Nor does the log.
    assert_quotes_nothing_of(&server.log(), &body, "the server log");

    // A chain with a junk block: refused, naming the block.
    let junk = format!(
        "{}-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
        leaf.chain_pem
    );
    let (status, answer) = post_secret(&server, "web-cert", &junk, &leaf.key_pem).await;
    assert_eq!(status, 422, "a junk certificate block must be refused: {answer}");
    assert!(answer.contains("certificate 3 of the chain"), "{answer}");
    let (status, _) = server.get_json("/v1/secrets/web-cert").await;
    assert_eq!(status, 404, "a refused upload stores nothing");

    // dubectl reads a bounded amount. Under a deadline that kills it: the
    // unbounded read (before) grew by ~200 MB/s until the memory ran out.
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(dubernetes_tests::binary("dubectl"))
            .args([
                "create",
                "secret",
                "tls",
                "zero",
                "--cert",
                "/dev/zero",
                "--key",
                "/dev/zero",
            ])
            .env("DUBERNETES_SERVER", &server.url)
            .env("DUBERNETES_TOKEN", &server.token)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("dubectl create secret tls --cert /dev/zero still reads after 10 s: an unbounded read")
    .expect("run dubectl");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("64 KiB"), "{}", stderr(&out));
}

/// A `HEAD` of a dashboard link (a link previewer) does not use up its
/// code; the browser's `GET` then signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_of_a_dashboard_link_keeps_its_code() {
    let server = TestServer::start("trust-head").await;
    let response = server
        .http
        .post(format!("{}/v1/dashboard/links", server.url))
        .send()
        .await
        .expect("POST links");
    assert_eq!(response.status(), 200);
    let link: serde_json::Value = response.json().await.expect("json");
    let url = format!("{}{}", server.url, link["path"].as_str().expect("path"));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let head = browser.head(&url).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert!(head.headers().get("set-cookie").is_none(), "a HEAD signs nobody in");
    let get = browser.get(&url).send().await.expect("GET");
    assert_eq!(get.status(), 303, "the code still works after a HEAD");
    assert!(get.headers().get("set-cookie").is_some());
    let again = browser.get(&url).send().await.expect("GET again");
    assert_eq!(again.status(), 401, "and only once");
}

/// Bidirectional overrides in an env value and in a certificate's issuer
/// are shown escaped by `-o yaml`, `-o json` and `describe` (as the tables
/// do), and the YAML and JSON still read back as the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_json_and_describe_escape_bidi_characters() {
    let server = TestServer::start("trust-bidi").await;
    let ca = TestCa::new("evil \u{202e}AC tset");
    let leaf = ca.leaf(&["bidi.trust.test"]);
    let (status, answer) = post_secret(&server, "bidi-cert", &leaf.cert_pem, &leaf.key_pem).await;
    assert_eq!(status, 201, "{answer}");
    let yaml = "name: bidi\nimage: dubernetes/whoami:v1\nreplicas: 0\nenv:\n  NOTE: \"abc\\u202Efed\\u2066x\"\naccess:\n  host: bidi.trust.test\n  tls: {secret: bidi-cert}\n";
    let (status, body) = server.put_yaml("bidi", yaml).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["pod"]["spec"]["env"]["NOTE"], "abc\u{202e}fed\u{2066}x", "{body}");
    let unsafe_char = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    for args in [
        &["get", "pod", "bidi", "-o", "yaml"][..],
        &["get", "pods", "-o", "yaml"],
        &["get", "pod", "bidi", "-o", "json"],
        &["describe", "pod", "bidi"],
        &["get", "secret", "bidi-cert", "-o", "yaml"],
        &["get", "secrets", "-o", "json"],
        &["describe", "secret", "bidi-cert"],
    ] {
        let out = server.dubectl(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            !text.chars().any(unsafe_char),
            "{args:?} prints a raw bidi character:\n{text}"
        );
        assert!(
            text.to_lowercase().contains("\\u202e"),
            "{args:?} shows it escaped:\n{text}"
        );
    }
    // The same data: YAML and JSON read back to the server's values.
    let out = server.dubectl(&["get", "pod", "bidi", "-o", "json"]);
    let pod: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(pod["spec"]["env"]["NOTE"], "abc\u{202e}fed\u{2066}x");
    let out = server.dubectl(&["get", "pod", "bidi", "-o", "yaml"]);
    let out = server.dubectl_stdin(&["apply", "-f", "-"], &stdout(&out));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("unchanged"), "{}", stdout(&out));
}

/// A secret that expires while a pod uses it: a Warning event before and at
/// expiry, the status and `get pods` say so, and a scale is not refused
/// (only a pod newly using the expired secret is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_secret_warns_and_blocks_nothing() {
    let server = TestServer::start_with("trust-expiry", &["--resync-seconds", "1"]).await;
    let ca = TestCa::new("expiry CA");
    let now = time::OffsetDateTime::now_utc();
    let lifetime = Duration::from_secs(30);
    let leaf = ca.leaf_valid(
        &["exp.trust.test", "new.trust.test"],
        now - Duration::from_secs(86_400),
        now + lifetime,
    );
    let expires = Instant::now() + lifetime;
    let (status, answer) = post_secret(&server, "exp-cert", &leaf.chain_pem, &leaf.key_pem).await;
    assert_eq!(status, 201, "{answer}");
    let (status, body) = server
        .put_yaml("exp", &pod_yaml("exp", "exp.trust.test", "exp-cert", 0))
        .await;
    assert_eq!(status, 201, "{body}");

    let event = |reason: &'static str| {
        let server = &server;
        move || async move {
            let (_, events) = server.get_json("/v1/events?pod=exp").await;
            events
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["reason"] == reason && e["kind"] == "Warning")
                .cloned()
        }
    };
    let expiring = wait_for("a CertificateExpiring warning", T, event("CertificateExpiring")).await;
    assert!(
        expiring["message"].as_str().is_some_and(|m| m.contains("exp-cert")),
        "{expiring}"
    );
    let tls = tls_status(&server, "exp").await;
    assert!(tls["warning"].as_str().is_some_and(|w| w.contains("expires")), "{tls}");
    let out = server.dubectl(&["get", "pods"]);
    assert!(stdout(&out).contains("(certificate expires in"), "{}", stdout(&out));

    // At expiry: the second warning, the status and the table say it.
    tokio::time::sleep(expires.saturating_duration_since(Instant::now())).await;
    let expired = wait_for("a CertificateExpired warning", T, event("CertificateExpired")).await;
    assert!(
        expired["message"].as_str().is_some_and(|m| m.contains("expired")),
        "{expired}"
    );
    let tls = tls_status(&server, "exp").await;
    assert!(tls["warning"].as_str().is_some_and(|w| w.contains("expired")), "{tls}");
    let out = server.dubectl(&["get", "pods"]);
    assert!(stdout(&out).contains("(certificate EXPIRED)"), "{}", stdout(&out));
    let out = server.dubectl(&["describe", "pod", "exp"]);
    assert!(stdout(&out).contains("CertificateExpired"), "{}", stdout(&out));

    // Unrelated changes go through; a new use of the expired secret does not.
    let out = server.dubectl(&["scale", "pod", "exp", "--replicas", "1"]);
    assert!(out.status.success(), "a scale must not be refused: {}", stderr(&out));
    let (status, body) = server
        .put_yaml("exp", &pod_yaml("exp", "exp.trust.test", "exp-cert", 2))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .put_yaml("new", &pod_yaml("new", "new.trust.test", "exp-cert", 0))
        .await;
    assert_eq!(status, 422, "a new use of an expired secret is refused: {body}");
    // One warning per stage, not one per resync.
    let (_, events) = server.get_json("/v1/events?pod=exp").await;
    let count = |reason: &str| {
        events
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == reason)
            .count()
    };
    assert_eq!(
        (count("CertificateExpiring"), count("CertificateExpired")),
        (1, 1),
        "{events}"
    );
}

/// `status.tls.serving` says what nginx serves: whenever it is true after a
/// replacement, HTTPS answers with the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_means_the_current_certificate_is_served() {
    let server = TestServer::start("trust-serving").await;
    let ca = TestCa::new("serving CA");
    let first = ca.leaf(&["srv.trust.test"]);
    let (status, answer) = post_secret(&server, "srv-cert", &first.chain_pem, &first.key_pem).await;
    assert_eq!(status, 201, "{answer}");
    let (status, body) = server
        .put_yaml("srv", &pod_yaml("srv", "srv.trust.test", "srv-cert", 1))
        .await;
    assert_eq!(status, 201, "{body}");
    server.wait_converged("srv", T).await;
    let tls_port = wait_for("the HTTPS port", T, || async {
        server.get_json("/v1/ingress").await.1["tls_port"]
            .as_u64()
            .map(|p| p as u16)
    })
    .await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).expect("root")])
        .resolve("srv.trust.test", std::net::SocketAddr::from(([127, 0, 0, 1], tls_port)))
        .tls_info(true)
        // A fresh connection per request: a kept-alive one would still show
        // the certificate of the config it was opened under.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let served = || async {
        let response = client.get("https://srv.trust.test/").send().await.ok()?;
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .map(<[u8]>::to_vec)
    };
    let der = |pem: &str| {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("PEM")
            .to_vec()
    };
    wait_for("serving: true", T, || async {
        (tls_status(&server, "srv").await["serving"] == true).then_some(())
    })
    .await;
    assert_eq!(served().await, Some(der(&first.cert_pem)));

    for round in 0..3 {
        let next = ca.leaf(&["srv.trust.test"]);
        let response = server
            .http
            .put(format!("{}/v1/secrets/srv-cert", server.url))
            .json(&serde_json::json!({"name": "srv-cert", "cert": next.chain_pem, "key": next.key_pem}))
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), 200, "round {round}");
        let deadline = Instant::now() + T;
        loop {
            let tls = tls_status(&server, "srv").await;
            if tls["serving"] == true {
                assert_eq!(
                    served().await,
                    Some(der(&next.cert_pem)),
                    "round {round}: the status says serving, so nginx serves the new certificate"
                );
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: never serving again: {tls}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Over HTTP on the real server, concurrently and many rounds: a pod applied
/// while its secret is deleted, a replacement that stops covering a host while
/// a pod starts using it, two creates of one name: exactly one of each pair
/// succeeds (before, both did in most rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_checks_and_their_writes_are_one_transaction() {
    races(&TestServer::start("trust-races").await).await;
}

/// The same races on a PostgreSQL store (its own database on the shared
/// throwaway cluster), where the write lock is an advisory lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_checks_and_their_writes_are_one_transaction_on_postgres() {
    let url = PgCluster::shared().new_database().await;
    let instance = instance_name("trust-pgraces");
    races(&TestServer::start_shared("trust-pgraces", &instance, &url, &[]).await).await;
}

async fn races(server: &TestServer) {
    let ca = TestCa::new("races CA");
    let put_pod = |name: String, host: String, secret: String| async move {
        server.put_yaml(&name, &pod_yaml(&name, &host, &secret, 0)).await.0
    };
    for round in 0..15 {
        // Apply while the secret is deleted.
        let host = format!("del{round}.trust.test");
        let leaf = ca.leaf(&[&host]);
        let secret = format!("del{round}");
        assert_eq!(
            post_secret(server, &secret, &leaf.chain_pem, &leaf.key_pem).await.0,
            201
        );
        let delete = async {
            server
                .http
                .delete(format!("{}/v1/secrets/{secret}", server.url))
                .send()
                .await
                .expect("DELETE")
                .status()
                .as_u16()
        };
        let (applied, deleted) = tokio::join!(put_pod(format!("pdel{round}"), host.clone(), secret.clone()), delete);
        assert!(
            matches!((applied, deleted), (201, 409) | (422, 200 | 204)),
            "round {round}: apply {applied}, delete of its secret {deleted}"
        );

        // A replacement not covering the host, racing an apply that uses it.
        let host = format!("rep{round}.trust.test");
        let leaf = ca.leaf(&[&host]);
        let elsewhere = ca.leaf(&["elsewhere.trust.test"]);
        let secret = format!("rep{round}");
        assert_eq!(
            post_secret(server, &secret, &leaf.chain_pem, &leaf.key_pem).await.0,
            201
        );
        let replace = async {
            server
                .http
                .put(format!("{}/v1/secrets/{secret}", server.url))
                .json(&serde_json::json!({"name": secret, "cert": elsewhere.chain_pem, "key": elsewhere.key_pem}))
                .send()
                .await
                .expect("PUT")
                .status()
                .as_u16()
        };
        let (applied, replaced) = tokio::join!(put_pod(format!("prep{round}"), host.clone(), secret.clone()), replace);
        assert!(
            matches!((applied, replaced), (201, 422) | (422, 200)),
            "round {round}: apply {applied}, uncovering replace {replaced}"
        );

        // Two creates of one name: one 201, one 409.
        let secret = format!("new{round}");
        let (one, two) = tokio::join!(
            post_secret(server, &secret, &leaf.chain_pem, &leaf.key_pem),
            post_secret(server, &secret, &leaf.chain_pem, &leaf.key_pem)
        );
        let mut statuses = [one.0, two.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: two creates of one name");
    }
}

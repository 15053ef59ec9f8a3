//! Nobody gets in without the token: every API call but `GET /healthz` needs
//! it, refusals say nothing, there is no CORS, and the server will not serve a
//! non-loopback address without a token it was given.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dubernetes_tests::{TestServer, binary, stderr, stdout};

#[tokio::test]
async fn every_api_call_but_healthz_needs_the_token() {
    let server = TestServer::start("auth").await;
    let anonymous = &server.anonymous;
    let url = |path: &str| format!("{}{path}", server.url);

    let health = anonymous.get(url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);

    let wrong = format!("{}x", server.token);
    let attempts: Vec<(&str, &str, Option<String>)> = vec![
        ("GET", "/v1/pods", None),
        ("GET", "/v1/version", None),
        ("GET", "/v1/events", None),
        ("GET", "/v1/ingress", None),
        ("GET", "/v1/pods/x", Some(wrong.clone())),
        ("PUT", "/v1/pods/x", Some(wrong.clone())),
        ("DELETE", "/v1/pods/x", Some(String::new())),
        ("POST", "/v1/pods", Some(server.token.to_uppercase())),
        ("GET", "/no/such/route", None),
        ("POST", "/healthz", None),
        ("GET", "/v1/pods", Some(format!("Basic {}", server.token))),
    ];
    let mut bodies = Vec::new();
    for (method, path, token) in &attempts {
        let mut request = anonymous.request(method.parse().expect("method"), url(path));
        if let Some(token) = token {
            let value = if token.starts_with("Basic ") {
                token.clone()
            } else {
                format!("Bearer {token}")
            };
            request = request.header("authorization", value);
        }
        let response = request
            .header("content-type", "application/yaml")
            .body("name: x\nimage: y\n")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
        assert_eq!(
            response.headers().get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        bodies.push(response.text().await.expect("body"));
    }
    // One answer for every refusal: nothing says whether a token was close,
    // missing, or which routes exist.
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:#?}");
    assert!(bodies[0].contains("\"code\":\"unauthorized\""), "{}", bodies[0]);
    assert!(!bodies[0].contains(&server.token));

    // Nothing was written by the refused calls.
    let (status, pods) = server.get_json("/v1/pods").await;
    assert_eq!((status, pods), (200, serde_json::json!([])));

    // No CORS: a browser page on another origin gets no permission to read answers.
    let preflight = anonymous
        .request(reqwest::Method::OPTIONS, url("/v1/pods"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
    let get = server
        .http
        .get(url("/v1/pods"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 200);
    assert!(get.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_server_without_a_token_generates_a_private_one() {
    let server = TestServer::start_generating_token("gentoken").await;
    let file = server.data_dir.path().join("token");
    let mode = std::fs::metadata(&file).expect("token file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    assert!(server.token.len() >= 32);
    assert!(
        server.log().contains(&file.display().to_string()),
        "the log says where the token is"
    );
    assert!(!server.log().contains(&server.token), "the log does not show the token");

    // dubectl: without a token it is refused with a hint; with it, it works.
    let out = Command::new(binary("dubectl"))
        .args(["--server", &server.url, "get", "pods"])
        .env_remove("DUBERNETES_TOKEN")
        .output()
        .expect("dubectl");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("DUBERNETES_TOKEN"), "{}", stderr(&out));
    let out = Command::new(binary("dubectl"))
        .args(["--server", &server.url, "--token", &server.token, "version"])
        .env_remove("DUBERNETES_TOKEN")
        .output()
        .expect("dubectl");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Server Version"));
    let out = server.dubectl(&["get", "pods"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_non_loopback_api_without_a_token_is_refused_at_start() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(binary("dubernetes-server"))
        .args(["--listen", "0.0.0.0:0"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--instance", "t-refused"])
        .env_remove("DUBERNETES_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not refuse to start");
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "a synchronous poll of a child process, bounded by its deadline"
        )]
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    assert!(!status.success());
    let err = stderr(&out);
    assert!(err.contains("refusing") && err.contains("--token"), "{err}");
    assert!(!data_dir.path().join("token").exists());

    // A token that is too short is refused too.
    let out = Command::new(binary("dubernetes-server"))
        .args(["--listen", "127.0.0.1:0", "--token", "short"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at least 16"), "{}", stderr(&out));
}

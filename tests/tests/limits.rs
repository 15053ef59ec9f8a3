//! Bounded everything: replicas per pod, pods per instance, body size, request
//! time, header time and open connections.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dubernetes_tests::TestServer;

fn spec(name: &str, replicas: u32) -> String {
    format!("name: {name}\nimage: dubernetes/whoami:v1\nreplicas: {replicas}\n")
}

#[tokio::test]
async fn replicas_and_pods_are_capped() {
    let server = TestServer::start_with("caps", &["--max-replicas", "3", "--max-pods", "2"]).await;
    let (status, body) = server.put_yaml("a", &spec("a", 4)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "replicas");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("--max-replicas"),
        "{body}"
    );
    assert_eq!(server.put_yaml("a", &spec("a", 0)).await.0, 201);
    assert_eq!(server.put_yaml("b", &spec("b", 0)).await.0, 201);
    let (status, body) = server.put_yaml("c", &spec("c", 0)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        (body["code"].as_str(), body["field"].as_str()),
        (Some("limit_exceeded"), Some("name"))
    );
    // Updating an existing pod is fine at the limit.
    assert_eq!(server.put_yaml("b", &spec("b", 0).replace("v1", "v2")).await.0, 200);
    let (_, pods) = server.get_json("/v1/pods").await;
    assert_eq!(pods.as_array().map(Vec::len), Some(2));
    // dubectl scale beyond the cap is refused with the field.
    let out = server.dubectl(&["scale", "pod", "a", "--replicas", "9"]);
    assert!(!out.status.success());
    assert!(dubernetes_tests::stderr(&out).contains("replicas"));
}

#[tokio::test]
async fn bodies_requests_headers_and_connections_are_bounded() {
    let server = TestServer::start_with(
        "bounds",
        &[
            "--request-timeout-seconds",
            "1",
            "--header-timeout-seconds",
            "2",
            "--max-connections",
            "4",
        ],
    )
    .await;
    let addr = server.url.trim_start_matches("http://").to_string();

    // A body over the limit: 413, JSON, nothing written.
    let response = server
        .http
        .put(format!("{}/v1/pods/big", server.url))
        .header("content-type", "application/yaml")
        .body(format!("{}#{}\n", spec("big", 0), "x".repeat(300 * 1024)))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        (body["code"].as_str(), body["field"].as_str()),
        (Some("body_too_large"), Some("body"))
    );

    // A body that trickles in slower than the request deadline: 503 request_timeout.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        slow,
        "PUT /v1/pods/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/yaml\r\nContent-Length: 100\r\n\r\nname: slow\n",
        server.token
    )
    .expect("write");
    let started = Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Headers that never finish (slowloris): the connection is closed.
    let mut loris = TcpStream::connect(&addr).expect("connect");
    loris.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    loris.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("write");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = loris.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let text = String::from_utf8_lossy(&rest);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // At the connection limit, a new connection waits until one closes.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            // Keep each one busy with a request head that arrives in parts.
            s.write_all(b"GET /healthz HTTP/1.1\r\n").expect("write");
            s
        })
        .collect();
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let mut blocked = false;
    let deadline = Instant::now() + Duration::from_millis(400);
    while Instant::now() < deadline {
        if probe.get(format!("{}/healthz", server.url)).send().await.is_err() {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "a fifth connection was served while four were open");
    drop(held);
    // Once they are gone (closed by us, or by the header timeout), it is served again.
    dubernetes_tests::wait_for("the API to answer again", Duration::from_secs(10), || async {
        probe
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let (_, pods) = server.get_json("/v1/pods").await;
    assert_eq!(pods, serde_json::json!([]), "nothing was written");
}

//! Real web apps through the real ingress (nginx), with real clients:
//! WebSocket (handshake, frames both ways), server-sent events that arrive as
//! they are sent, big uploads and `access.max_body`, several hosts with a
//! wildcard, path prefixes (longest wins, whole segments), a clash refused
//! with 409, HTTP/2 and WebSocket on the TLS listener. The app is examples/whoami
//! (`/ws`, `/sse`, `/upload`).

use std::time::{Duration, Instant};

use dubernetes_tests::pki::TestCa;
use dubernetes_tests::{TestServer, wait_for};
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(90);

async fn put(server: &TestServer, name: &str, yaml: &str) {
    let (status, body) = server.put_yaml(name, yaml).await;
    assert!(status == 200 || status == 201, "{name}: {status} {body}");
}

/// Waits until `GET http://127.0.0.1:PORT/` with this Host reaches a replica.
async fn wait_routed(server: &TestServer, host: &str) {
    wait_for(&format!("{host} to be routed"), T, || async {
        matches!(server.via_ingress(host).await, Ok((200, _))).then_some(())
    })
    .await;
}

/// WebSocket echo through the ingress (HTTP), SSE whose first event comes
/// at once, a 10 MB upload accepted by default and a 2 MB one refused with
/// 413 by a pod with `max_body: 1Mi`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sse_and_uploads() {
    let server = TestServer::start("web-proto").await;
    put(
        &server,
        "app",
        "name: app\nimage: dubernetes/whoami:v1\naccess:\n  host: app.web.test\n  timeout: 2s\n",
    )
    .await;
    put(
        &server,
        "small",
        "name: small\nimage: dubernetes/whoami:v1\naccess: {host: small.web.test, max_body: 1Mi}\n",
    )
    .await;
    server.wait_converged("app", T).await;
    server.wait_converged("small", T).await;
    wait_routed(&server, "app.web.test").await;
    wait_routed(&server, "small.web.test").await;
    let port = server.ingress_port().await;

    // WebSocket: the handshake reaches the app (101), frames go both ways.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut ws, response) = tokio_tungstenite::client_async("ws://app.web.test/ws", stream)
        .await
        .expect("WebSocket handshake through the ingress");
    assert_eq!(response.status().as_u16(), 101);
    for text in ["hello", "second message", &"x".repeat(70_000)] {
        ws.send(Message::text(text)).await.expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("a frame")
            .expect("a good frame");
        assert_eq!(echoed, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("a frame")
        .expect("a good frame");
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.expect("close");

    // SSE: the first event arrives before the app sends its next one (1 s
    // later), and the stream is not cut by the 2 s idle timeout while events flow (3 s in all).
    let started = Instant::now();
    let mut response = server
        .anonymous
        .get(format!("http://127.0.0.1:{port}/sse"))
        .header("host", "app.web.test")
        .send()
        .await
        .expect("GET /sse");
    assert_eq!(response.status().as_u16(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first event in time")
        .expect("read")
        .expect("a chunk");
    let first_after = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: 0"), "{first:?}");
    assert!(
        first_after < Duration::from_secs(1),
        "the first event took {first_after:?}: the ingress buffers the stream"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("the rest of the stream") {
        rest.extend_from_slice(&chunk);
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("data: 3"), "all events: {rest:?}");

    // Uploads: 10 MB passes the default max_body (100Mi); 2 MB to the pod
    // with max_body 1Mi is refused by the ingress with 413.
    let upload = |host: &'static str, bytes: usize| {
        let client = server.anonymous.clone();
        async move {
            let response = client
                .post(format!("http://127.0.0.1:{port}/upload"))
                .header("host", host)
                .body(vec![b'u'; bytes])
                .send()
                .await
                .expect("POST /upload");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };
    let (status, body) = upload("app.web.test", 10 * 1024 * 1024).await;
    assert_eq!((status, body.trim()), (200, "received 10485760 bytes"));
    let (status, body) = upload("small.web.test", 2 * 1024 * 1024).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = upload("small.web.test", 512 * 1024).await;
    assert_eq!((status, body.trim()), (200, "received 524288 bytes"));
}

fn whoami(name: &str, access: &str) -> String {
    format!("name: {name}\nimage: dubernetes/whoami:v1\nenv: {{WHOAMI_VERSION: {name}}}\naccess: {access}\n")
}

/// Several hosts with a wildcard, path prefixes of one host shared by three
/// pods (longest prefix wins, whole segments), a clash refused with 409
/// naming the owner, bad input refused with the field named, and HTTP/2 on
/// the TLS listener with a wildcard certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_paths_clash_and_http2() {
    let server = TestServer::start("web-routes").await;
    let ca = TestCa::new("web apps CA");
    let wild = ca.leaf(&["*.shop.test"]);
    let response = server
        .http
        .post(format!("{}/v1/secrets", server.url))
        .json(&serde_json::json!({"name": "shop-cert", "cert": wild.chain_pem, "key": wild.key_pem}))
        .send()
        .await
        .expect("POST /v1/secrets");
    assert_eq!(response.status().as_u16(), 201, "{:?}", response.text().await);

    put(
        &server,
        "site",
        &whoami(
            "site",
            "{hosts: [www.shop.test, \"*.shop.test\"], tls: {secret: shop-cert}}",
        ),
    )
    .await;
    put(&server, "api", &whoami("api", "{host: www.shop.test, path: /api}")).await;
    put(&server, "v2", &whoami("v2", "{host: www.shop.test, path: /api/v2}")).await;

    // Bad input: refused with the field named, nothing created.
    for (access, field) in [
        ("{host: www.shop.test, path: api}", "access.path"),
        ("{host: \"www.*.test\"}", "access.host"),
        ("{hosts: [a.shop.test, \"a*.shop.test\"]}", "access.hosts[1]"),
        ("{host: www.shop.test, max_body: 12 parsecs}", "access.max_body"),
        ("{hosts: [\"*.other.test\"], tls: auto}", "access.tls"),
    ] {
        let (status, body) = server.put_yaml("bad", &whoami("bad", access)).await;
        assert_eq!((status, body["field"].as_str()), (422, Some(field)), "{access}: {body}");
    }
    // A clash (same host, same path): 409 naming the owner, nothing changed.
    let (status, body) = server
        .put_yaml(
            "clash",
            &whoami("clash", "{hosts: [new.shop.test, www.shop.test], path: /api/}"),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["field"], "access.path", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"api\"") && m.contains("www.shop.test")),
        "{body}"
    );
    for name in ["bad", "clash"] {
        let (status, _) = server.get_json(&format!("/v1/pods/{name}")).await;
        assert_eq!(status, 404, "a refused apply creates no pod");
    }

    for name in ["site", "api", "v2"] {
        server.wait_converged(name, T).await;
    }
    let tls_port = wait_for("the HTTPS port", T, || async {
        server.get_json("/v1/ingress").await.1["tls_port"]
            .as_u64()
            .map(|p| p as u16)
    })
    .await;
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], tls_port));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).expect("root")])
        .resolve("www.shop.test", at)
        .resolve("shop-assets.shop.test", at)
        .resolve("a.b.shop.test", at)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let get = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.map_err(|e| e.to_string())?;
            let version = response.version();
            let status = response.status().as_u16();
            let body = response.text().await.map_err(|e| e.to_string())?;
            let served_by = body
                .lines()
                .find_map(|l| l.strip_prefix("Version: "))
                .unwrap_or("")
                .to_string();
            Ok::<_, String>((status, served_by, version))
        }
    };
    let www = |path: &str| format!("https://www.shop.test:{tls_port}{path}");
    wait_for("www.shop.test over HTTPS", T, || async {
        matches!(get(www("/api/v2/x")).await, Ok((200, ref by, _)) if by == "v2").then_some(())
    })
    .await;
    for (path, pod) in [
        ("/", "site"),
        ("/index.html", "site"),
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/users?id=1", "api"),
        ("/apix", "site"),
        ("/api/v2", "v2"),
        ("/api/v2/orders", "v2"),
        ("/api/v20", "api"),
    ] {
        let (status, by, version) = get(www(path)).await.expect(path);
        assert_eq!((status, by.as_str()), (200, pod), "GET {path}");
        assert_eq!(version, reqwest::Version::HTTP_2, "HTTP/2 on the TLS listener ({path})");
    }
    // The wildcard: any one label, served by `site` only (the paths belong to www).
    let (status, by, _) = get(format!("https://shop-assets.shop.test:{tls_port}/api/x"))
        .await
        .expect("wildcard");
    assert_eq!((status, by.as_str()), (200, "site"));
    // Two labels are not covered by `*.shop.test` (as for certificates):
    // no handshake for that name.
    assert!(
        get(format!("https://a.b.shop.test:{tls_port}/")).await.is_err(),
        "a.b.shop.test must not be served"
    );
    // Plain HTTP of a TLS host redirects, whatever the path.
    let port = server.ingress_port().await;
    let response = client
        .get(format!("http://127.0.0.1:{port}/api/x"))
        .header("host", "www.shop.test")
        .send()
        .await
        .expect("GET http");
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(
        response.headers().get("location").and_then(|l| l.to_str().ok()),
        Some(format!("https://www.shop.test:{tls_port}/api/x").as_str())
    );

    // WebSocket over HTTPS (HTTP/1.1 by ALPN's default): the same echo.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
                ca.cert_pem.as_bytes(),
            )
            .expect("CA PEM"),
        )
        .expect("root");
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(at).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("www.shop.test").expect("name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (mut ws, response) = tokio_tungstenite::client_async("wss://www.shop.test/ws", tls)
        .await
        .expect("WebSocket handshake over HTTPS");
    assert_eq!(response.status().as_u16(), 101);
    ws.send(Message::text("over tls")).await.expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("a frame")
        .expect("a good frame");
    assert_eq!(echoed, Message::text("over tls"));
    ws.close(None).await.expect("close");

    // The clash was refused without touching the owner: still served.
    let (status, by, _) = get(www("/api/x")).await.expect("api");
    assert_eq!((status, by.as_str()), (200, "api"));
}

/// One WebSocket session through the ingress: handshake (101), three frames
/// echoed (text, a large text, binary), close.
async fn ws_session(port: u16, host: &str) -> Result<(), String> {
    let io = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut ws, response) = tokio_tungstenite::client_async(format!("ws://{host}/ws"), stream)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        if response.status().as_u16() != 101 {
            return Err(format!("handshake answered {}", response.status()));
        }
        let frames = [
            Message::text("hello"),
            Message::text("y".repeat(20_000)),
            Message::binary(vec![0u8, 1, 2, 255]),
        ];
        for frame in frames {
            ws.send(frame.clone()).await.map_err(|e| format!("send: {e}"))?;
            match ws.next().await {
                Some(Ok(echoed)) if echoed == frame => {}
                other => return Err(format!("echo: {other:?}")),
            }
        }
        ws.close(None).await.map_err(|e| format!("close: {e}"))?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// WebSocket sessions (handshake, frames both ways) through a rolling update
/// of the app: every one succeeds while the old replicas are replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_a_rolling_update() {
    let server = TestServer::start("web-ws-roll").await;
    let spec = |version: &str| {
        format!(
            "name: ws\nimage: dubernetes/whoami:v1\nreplicas: 2\nenv: {{WHOAMI_VERSION: {version}}}\n\
             health: {{path: /healthz, interval: 200ms, timeout: 500ms}}\naccess: {{host: ws.web.test}}\n"
        )
    };
    put(&server, "ws", &spec("one")).await;
    server.wait_converged("ws", T).await;
    wait_routed(&server, "ws.web.test").await;
    let port = server.ingress_port().await;
    ws_session(port, "ws.web.test")
        .await
        .expect("a session before the update");

    put(&server, "ws", &spec("two")).await;
    let (mut ok, mut failed) = (0u32, Vec::new());
    let deadline = Instant::now() + T;
    let mut settled_rounds = 0;
    while settled_rounds < 20 {
        assert!(Instant::now() < deadline, "ws did not converge; failures: {failed:?}");
        match ws_session(port, "ws.web.test").await {
            Ok(()) => ok += 1,
            Err(e) => failed.push(e),
        }
        let (status, pod) = server.get_json("/v1/pods/ws").await;
        let s = &pod["status"];
        let converged = status == 200
            && s["ready_replicas"] == 2
            && s["updated_replicas"] == 2
            && s["current_replicas"] == 2
            && s["observed_generation"] == pod["generation"];
        if converged {
            settled_rounds += 1;
        }
    }
    eprintln!(
        "WebSocket sessions during the rollout: {ok} ok, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "WebSocket sessions failed during the rollout: {failed:?}"
    );
    assert!(ok > 20, "{ok}");
    let (status, body) = server.via_ingress("ws.web.test").await.expect("GET /");
    assert_eq!(status, 200);
    assert!(body.contains("Version: two"), "{body}");
}

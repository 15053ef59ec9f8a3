//! TCP services (issue 25, item 5), on the real engine, on both backends: a
//! pod's `expose` publishes its TCP port through the ingress on a host
//! address; a real TCP client connects there and talks to a **ready**
//! replica only, with no nginx reload when replicas change readiness;
//! `replicas: 0` refuses (the connection closes at once); bad input is
//! refused with the field named, and nothing is written.
//!
//! The pod is busybox (`dubernetes/busybox:local`): `nc -ll -e` runs, per
//! connection, a script that writes the replica's host name (its container
//! id's first 12 characters) and then echoes what it reads. Its readiness
//! is busybox `httpd` serving `/ready` on another port: the test removes the
//! file in one replica (the engine's exec) to make that replica unready
//! while it keeps running.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use dubernetes_tests::{Backend, TestServer, docker, exec_in_container, free_port, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const T: Duration = Duration::from_secs(90);
const BUSYBOX: &str = "dubernetes/busybox:local";
/// The replicas' echo port, and their readiness port.
const ECHO_PORT: u16 = 7000;
const READY_PORT: u16 = 8080;

const SCRIPT: &str = "mkdir -p /tmp/www && echo ok > /tmp/www/ready && httpd -p 8080 -h /tmp/www && \
     printf '#!/bin/sh\\necho \"$HOSTNAME\"\\nexec cat\\n' > /tmp/echo && chmod +x /tmp/echo && \
     exec nc -ll -p 7000 -e /tmp/echo";

/// The echo pod (as JSON, which is YAML), exposing its echo port on `listen`.
fn echo(replicas: u32, listen: &str) -> String {
    serde_json::json!({
        "name": "echo",
        "image": BUSYBOX,
        "replicas": replicas,
        "port": ECHO_PORT,
        "command": ["/bin/sh", "-c", SCRIPT],
        "health": {
            "path": "/ready", "port": READY_PORT, "interval": "200ms",
            "timeout": "500ms", "unhealthy_after": 1
        },
        "stop_grace_period": "1s",
        "expose": [{"port": ECHO_PORT, "listen": listen}],
    })
    .to_string()
}

/// One conversation through the published port: the replica's greeting
/// (its host name) once it echoed a line back; Err when the connection is
/// refused or closed before a greeting (no ready replica).
async fn talk(port: u16) -> Result<String, String> {
    let io = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        if reader
            .read_line(&mut greeting)
            .await
            .map_err(|e| format!("read: {e}"))?
            == 0
        {
            return Err("closed without a byte".to_string());
        }
        let ping = format!("ping {}\n", rand_token());
        reader
            .get_mut()
            .write_all(ping.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut back = String::new();
        reader.read_line(&mut back).await.map_err(|e| format!("read: {e}"))?;
        if back != ping {
            return Err(format!("sent {ping:?}, got {back:?}"));
        }
        Ok(greeting.trim().to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

fn rand_token() -> String {
    dubernetes_tests::random_token()
}

/// The greetings of `n` conversations (all must succeed).
async fn greetings(port: u16, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for i in 0..n {
        match talk(port).await {
            Ok(g) => {
                seen.insert(g);
            }
            Err(e) => panic!("conversation {i} through port {port} failed: {e}"),
        }
    }
    seen
}

/// Running replica containers of the pod (task containers on Swarm carry the labels too).
async fn running(docker: &Docker, instance: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            "io.dubernetes.pod=echo".to_string(),
            "io.dubernetes.role=replica".to_string(),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new().filters(&filters).build();
    let list = docker.list_containers(Some(options)).await.expect("list containers");
    let mut ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    ids.sort();
    ids
}

async fn reloads(server: &TestServer) -> u64 {
    let (status, body) = server.get_json("/v1/ingress").await;
    assert_eq!(status, 200, "{body}");
    body["reloads"].as_u64().expect("reloads")
}

async fn ready_replicas(server: &TestServer) -> u64 {
    let (_, pod) = server.get_json("/v1/pods/echo").await;
    pod["status"]["ready_replicas"].as_u64().unwrap_or(0)
}

/// A TCP client through `expose`, ready replicas only, no reload on
/// readiness changes, refused at zero replicas, a moved listener.
async fn a_tcp_client_reaches_ready_replicas_only(backend: Backend) {
    let docker = docker().await;
    let server = TestServer::start_on(backend, "tcp-expose").await;
    let instance = server.instance.clone();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (status, body) = server.put_yaml("echo", &echo(2, &listen)).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("echo", T).await;

    // Both replicas answer through the published port (chosen per connection).
    let ids = running(&docker, &instance).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    wait_for("a conversation through the exposed port", T, || async {
        talk(port).await.ok()
    })
    .await;
    let seen = wait_for("both replicas to answer", T, || async {
        let seen = greetings(port, 12).await;
        (seen.len() == 2).then_some(seen)
    })
    .await;
    for greeting in &seen {
        assert!(
            ids.iter().any(|id| id.starts_with(greeting.as_str())),
            "{greeting:?} is not one of {ids:?}"
        );
    }

    // One replica unready (it keeps running): connections go to the other
    // only, without an nginx reload; ready again, both serve again.
    let before = reloads(&server).await;
    let (unready, other) = (&ids[0], &ids[1]);
    let (code, out) = exec_in_container(&docker, unready, &["rm", "/tmp/www/ready"]).await;
    assert_eq!(code, 0, "{out}");
    wait_for("the replica to be unready", T, || async {
        (ready_replicas(&server).await == 1).then_some(())
    })
    .await;
    // The ingress follows within a sync: wait until 20 in a row reach the ready one only.
    wait_for("connections to reach the ready replica only", T, || async {
        let seen = greetings(port, 20).await;
        (seen.len() == 1 && other.starts_with(seen.iter().next()?.as_str())).then_some(())
    })
    .await;
    for _ in 0..3 {
        let seen = greetings(port, 20).await;
        assert!(
            seen.len() == 1 && other.starts_with(seen.iter().next().expect("one").as_str()),
            "a connection reached the unready replica {unready}: {seen:?}"
        );
    }
    let (code, out) = exec_in_container(&docker, unready, &["sh", "-c", "echo ok > /tmp/www/ready"]).await;
    assert_eq!(code, 0, "{out}");
    wait_for("both replicas to answer again", T, || async {
        (greetings(port, 12).await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(reloads(&server).await, before, "readiness changes reloaded nginx");
    assert_eq!(running(&docker, &instance).await, ids, "the replicas were not replaced");

    // Scaled to zero: the listener stays, and closes every connection at once.
    let (status, body) = server.put_yaml("echo", &echo(0, &listen)).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the replicas to be gone", T, || async {
        running(&docker, &instance).await.is_empty().then_some(())
    })
    .await;
    for _ in 0..5 {
        let answer = talk(port).await;
        assert!(answer.is_err(), "a connection was served at replicas: 0: {answer:?}");
    }
    // And back.
    let (status, body) = server.put_yaml("echo", &echo(1, &listen)).await;
    assert_eq!(status, 200, "{body}");
    server.wait_converged("echo", T).await;
    wait_for("the replica to answer after the scale up", T, || async {
        talk(port).await.ok()
    })
    .await;

    // The listener moved to another port: a new ingress container publishes
    // it; the old port no longer answers.
    let moved = free_port();
    let (status, body) = server.put_yaml("echo", &echo(1, &format!("127.0.0.1:{moved}"))).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the moved listener to answer", T, || async { talk(moved).await.ok() }).await;
    assert!(talk(port).await.is_err(), "the old listen port still answers");
    eprintln!("{backend}: tcp expose ok");
}

/// Bad `expose` input is refused with the field named; nothing is written.
async fn bad_expose_is_refused(backend: Backend) {
    let server = TestServer::start_on(backend, "tcp-bad").await;
    let port = free_port();
    let (status, body) = server.put_yaml("echo", &echo(0, &format!("127.0.0.1:{port}"))).await;
    assert!(status == 200 || status == 201, "{status}: {body}");

    let spec = |name: &str, expose: serde_json::Value| {
        serde_json::json!({"name": name, "image": BUSYBOX, "replicas": 0, "expose": expose}).to_string()
    };
    let cases = [
        (
            serde_json::json!([{"port": 0, "listen": "127.0.0.1:20001"}]),
            422,
            "expose[0].port",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "127.0.0.1"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "127.0.0.1:0"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "db.example.com:5432"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "127.0.0.1:80"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 1, "listen": "20002"}, {"port": 2, "listen": "0.0.0.0:20002"}]),
            422,
            "expose[1].listen",
        ),
        // Another pod's listen port (whatever the IP): 409 naming it.
        (
            serde_json::json!([{"port": 5432, "listen": format!("0.0.0.0:{port}")}]),
            409,
            "expose[0].listen",
        ),
    ];
    for (expose, want, field) in cases {
        let (status, body) = server.put_yaml("other", &spec("other", expose.clone())).await;
        assert_eq!(status, want, "{expose}: {body}");
        assert_eq!(body["field"], field, "{expose}: {body}");
        if want == 409 {
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("\"echo\""), "the owner is named: {body}");
        }
    }
    // The ingress's own HTTP port on the host.
    let http = server.ingress_port().await;
    let (status, body) = server
        .put_yaml(
            "other",
            &spec(
                "other",
                serde_json::json!([{"port": 1, "listen": format!("127.0.0.1:{http}")}]),
            ),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["field"], "expose[0].listen", "{body}");
    // Nothing was written.
    let (status, _) = server.get_json("/v1/pods/other").await;
    assert_eq!(status, 404);
    // A port alone is 127.0.0.1; the same pod may keep its own port.
    let (status, body) = server.put_yaml("echo", &echo(0, &port.to_string())).await;
    assert_eq!(status, 200, "{body}");
}

/// A listen port another program holds on the host: the ingress cannot
/// publish it, starts without its TCP listeners, and HTTP keeps working;
/// the next change of `expose` tries again.
async fn a_taken_listen_port_keeps_http_working(backend: Backend) {
    let server = TestServer::start_on(backend, "tcp-taken").await;
    let (status, body) = server
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\naccess: {host: web.tcp.test}\n",
        )
        .await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("web", T).await;
    wait_for("web to be routed", T, || async {
        matches!(server.via_ingress("web.tcp.test").await, Ok((200, _))).then_some(())
    })
    .await;

    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").port();
    let (status, body) = server.put_yaml("echo", &echo(1, &format!("127.0.0.1:{taken}"))).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("echo", T).await;
    wait_for("the ingress to give up the taken port", T, || async {
        server
            .log()
            .contains("could not start with the TCP listeners")
            .then_some(())
    })
    .await;
    wait_for("web to be routed again", T, || async {
        matches!(server.via_ingress("web.tcp.test").await, Ok((200, _))).then_some(())
    })
    .await;
    for _ in 0..5 {
        assert!(matches!(server.via_ingress("web.tcp.test").await, Ok((200, _))));
    }

    // Another port: the listeners are tried again, and serve.
    drop(holder);
    let port = free_port();
    let (status, body) = server.put_yaml("echo", &echo(1, &format!("127.0.0.1:{port}"))).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the new listener to answer", T, || async { talk(port).await.ok() }).await;
    // The new container's TCP listeners can serve a moment before its HTTP routes do.
    wait_for("web to be routed by the new ingress", T, || async {
        matches!(server.via_ingress("web.tcp.test").await, Ok((200, _))).then_some(())
    })
    .await;
}

dubernetes_tests::on_both_backends!(
    a_tcp_client_reaches_ready_replicas_only,
    bad_expose_is_refused,
    a_taken_listen_port_keeps_http_working
);

//! `--backend`: the flag, and the swarm backend's refusal of an engine that is
//! not a swarm manager. (Everything the swarm backend does on a real swarm is
//! tested by the `swarm::*` tests of orchestrator, rollout and healing.)

use std::process::Command;
use std::time::Duration;

use dubernetes_tests::{Backend, TestServer, binary, random_token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An engine that is in no swarm, as its API says so: it answers the calls a
/// server makes before it decides (ping, version, info) and nothing else.
/// The real engine here may be in a swarm (the swarm tests make one), and
/// leaving it would break those tests, so this one test talks to a stand-in.
async fn engine_in_no_swarm(socket: std::path::PathBuf) {
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the stand-in engine's socket");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = if path.ends_with("/_ping") {
                    "OK".to_string()
                } else if path.ends_with("/version") {
                    r#"{"ApiVersion":"1.41","MinAPIVersion":"1.12","Version":"20.10.24"}"#.to_string()
                } else if path.ends_with("/info") {
                    r#"{"Swarm":{"LocalNodeState":"inactive","ControlAvailable":false}}"#.to_string()
                } else {
                    r#"{"message":"not in this test"}"#.to_string()
                };
                let status = if body.contains("not in this test") {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
}

#[tokio::test]
async fn swarm_backend_refuses_an_engine_that_is_not_a_manager() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("engine.sock");
    engine_in_no_swarm(socket.clone()).await;
    let server = binary("dubernetes-server");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(server)
            .args(["--backend", "swarm", "--instance", "refuse"])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--ingress-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("DUBERNETES_TOKEN", random_token())
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .env("RUST_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .output()
            .expect("run dubernetes-server")
    });
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("the server decides within 30s")
        .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the server started on an engine in no swarm:\n{stderr}"
    );
    assert!(
        stderr.contains("swarm manager") && stderr.contains("`inactive`") && stderr.contains("docker swarm init"),
        "the refusal says what is wrong and what to do:\n{stderr}"
    );
}

#[tokio::test]
async fn an_unknown_backend_is_refused_by_name() {
    let out = Command::new(binary("dubernetes-server"))
        .args(["--backend", "kubernetes"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run dubernetes-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--backend") && stderr.contains("use `docker` or `swarm`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn version_names_the_backend() {
    for backend in [Backend::Docker, Backend::Swarm] {
        let server = TestServer::start_on(backend, "version").await;
        let (status, version) = server.get_json("/v1/version").await;
        assert_eq!(status, 200);
        assert_eq!(version["backend"], backend.as_str(), "{version}");
    }
}

/// Issue 28 item 4 on the docker backend: its one node is this engine (a
/// `manager`); constraints are checked against it. A pod whose constraints
/// hold runs; one whose constraints this engine does not satisfy makes no
/// container and says why (`Unschedulable`); a malformed constraint is
/// refused at apply with its field and the fix; `GET /v1/nodes` shows the
/// one node with the replicas on it.
#[tokio::test]
async fn placement_on_the_docker_backend_checks_the_one_engine() {
    use dubernetes_tests::{WHOAMI_V1, wait_for};
    let server = TestServer::start("place").await;
    let (status, nodes) = server.get_json("/v1/nodes").await;
    assert_eq!(status, 200, "{nodes}");
    let node = nodes[0].clone();
    assert_eq!(
        (nodes.as_array().map(Vec::len), &node["role"]),
        (Some(1), &"manager".into()),
        "{nodes}"
    );
    let hostname = node["hostname"].as_str().expect("a host name").to_string();
    let yaml = format!(
        "name: here\nimage: {WHOAMI_V1}\nplacement: {{constraints: [\"node.role==manager\", \"node.hostname=={hostname}\", \
         \"node.platform.os==linux\", \"node.labels.dubernetes-test!=none\"], spread: node.labels.zone}}\n"
    );
    let (status, body) = server.put_yaml("here", &yaml).await;
    assert_eq!(status, 201, "{body}");
    server.wait_converged("here", Duration::from_secs(60)).await;
    let (_, nodes) = server.get_json("/v1/nodes").await;
    assert_eq!(nodes[0]["replicas"]["here"], 1, "{nodes}");
    let yaml = format!("name: there\nimage: {WHOAMI_V1}\nplacement: {{constraints: [\"node.role==worker\"]}}\n");
    let (status, body) = server.put_yaml("there", &yaml).await;
    assert_eq!(status, 201, "{body}");
    let pod = wait_for("pod there unschedulable", Duration::from_secs(30), || async {
        let (_, pod) = server.get_json("/v1/pods/there").await;
        (pod["status"]["reason"] == "Unschedulable").then_some(pod)
    })
    .await;
    let message = pod["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("node.role==worker") && message.contains("one node"),
        "{pod}"
    );
    assert!(server.replicas(Some("there")).await.is_empty());
    let yaml = format!(
        "name: bad\nimage: {WHOAMI_V1}\nplacement: {{constraints: [\"node.labels.disk=ssd\"], spread: node.hostname}}\n"
    );
    let (status, body) = server.put_yaml("bad", &yaml).await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(
        text.contains("placement.constraints[0]") && text.contains("KEY==VALUE") && text.contains("placement.spread"),
        "{body}"
    );
    let (status, _) = server.get_json("/v1/pods/bad").await;
    assert_eq!(status, 404, "a refused spec changes nothing");
    let out = server.dubectl(&["get", "nodes", "-o", "wide"]);
    let table = dubernetes_tests::stdout(&out);
    assert!(
        out.status.success() && table.contains("here:1") && table.contains("manager"),
        "{table}"
    );
}

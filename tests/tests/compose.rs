//! Compose files through the real `dubectl` and a real server: a small stack
//! (a web service published through the ingress, a worker writing to a named
//! volume) applied straight from its compose file runs; a real compose file
//! (docker/awesome-compose's react-express-mysql) with keys that do not map
//! is refused, naming them, and changes nothing; `convert` prints what
//! `apply` applies.

use std::process::Output;
use std::time::Duration;

use dubernetes_tests::{Backend, TestServer, docker, free_port, stderr, stdout, wait_for};

const STACK: &str = include_str!("../compose/stack.yaml");
const REACT_EXPRESS_MYSQL: &str = include_str!("../compose/react-express-mysql.yaml");

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

async fn need_images() {
    let docker = docker().await;
    for image in ["dubernetes/whoami:v1", "dubernetes/busybox:local"] {
        assert!(
            docker.inspect_image(image).await.is_ok(),
            "image {image} is missing; build the test images with scripts/build-images.sh"
        );
    }
}

dubernetes_tests::on_both_backends!(a_compose_stack_applies_and_runs);

async fn a_compose_stack_applies_and_runs(backend: Backend) {
    need_images().await;
    let server = TestServer::start_on(backend, "compose").await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("docker-compose.yml");
    std::fs::write(&file, STACK).expect("write");
    // `.env` beside the file feeds the interpolation, as in Compose; the
    // second published port of web becomes an `expose` entry on this port.
    let tcp_port = free_port();
    std::fs::write(
        tmp.path().join(".env"),
        format!("GREETING=from-dotenv\nTCP_PORT={tcp_port}\n"),
    )
    .expect("write");
    let file = file.to_str().expect("utf-8 path");

    // convert: the pods, exit 0, nothing unmapped.
    let out = server.dubectl(&["convert", "-f", file, "--strict"]);
    assert_eq!(code(&out), 0, "convert: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing unmapped");
    let yaml = stdout(&out);
    assert!(
        yaml.contains("name: web") && yaml.contains("host: web.localhost"),
        "{yaml}"
    );
    assert!(yaml.contains("GREETING: from-dotenv"), "{yaml}");
    assert!(yaml.contains("# depends_on: worker"), "{yaml}");
    assert!(
        yaml.contains(&format!("expose:\n- port: 80\n  listen: 127.0.0.1:{tcp_port}\n")),
        "{yaml}"
    );

    // apply straight from the compose file.
    let out = server.dubectl(&["apply", "-f", file, "--wait", "--timeout", "90s"]);
    assert_eq!(code(&out), 0, "apply: {}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("pod/web created") && text.contains("pod/worker created"),
        "{text}"
    );
    server.wait_converged("web", Duration::from_secs(60)).await;
    server.wait_converged("worker", Duration::from_secs(60)).await;

    // The web pod answers through the ingress on its host.
    let body = wait_for("web through the ingress", Duration::from_secs(30), || async {
        match server.via_ingress("web.localhost").await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert!(!body.is_empty());
    // The published TCP port: the ingress passes a raw connection to web.
    let answer = wait_for("web through its exposed TCP port", Duration::from_secs(30), || {
        raw_http_get(tcp_port)
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let (_, pod) = server.get_json("/v1/pods/worker").await;
    assert_eq!(
        pod["spec"]["volumes"],
        serde_json::json!([{"name": "work", "path": "/data"}, {"tmpfs": "/scratch"}]),
        "{pod}"
    );
    assert_eq!(pod["spec"]["health"]["type"], "none", "{pod}");
    // Its container is named on the docker backend (a swarm task's is not).
    if backend == Backend::Docker {
        worker_ticks(&server).await;
    }

    // Applying the same file again changes nothing.
    let out = server.dubectl(&["apply", "-f", file]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "pod/web unchanged\npod/worker unchanged\n");

    // The output of convert applies to the same pods.
    let out = server.dubectl_stdin(&["apply", "-f", "-"], &yaml);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "pod/web unchanged\npod/worker unchanged\n");

    // delete -f of the compose file removes its pods.
    let out = server.dubectl(&["delete", "-f", file]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (_, pods) = server.get_json("/v1/pods").await;
    assert_eq!(pods, serde_json::json!([]), "{pods}");
}

/// A GET written on a plain TCP connection to 127.0.0.1:`port`: the answer, if any.
async fn raw_http_get(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .ok()
        .flatten()
        .filter(|a| !a.is_empty())
}

/// The worker writes to its named volume: its ticks grow there.
async fn worker_ticks(server: &TestServer) {
    let replicas = server.replicas(Some("worker")).await;
    let [(id, _, _)] = replicas.as_slice() else {
        panic!("one worker replica: {replicas:?}");
    };
    let ticks = |id: String| async move {
        let out = std::process::Command::new("docker")
            .args(["exec", &id, "sh", "-c", "cat /data/started && wc -l < /data/ticks"])
            .output()
            .ok()?;
        let text = stdout(&out);
        let mut lines = text.lines();
        (lines.next()? == "started").then_some(())?;
        lines.next()?.trim().parse::<u64>().ok()
    };
    let first = wait_for("the worker's first ticks", Duration::from_secs(20), || {
        ticks(id.clone())
    })
    .await;
    wait_for("more ticks on the volume", Duration::from_secs(20), || async {
        ticks(id.clone()).await.filter(|n| *n > first)
    })
    .await;
}

#[tokio::test]
async fn a_compose_file_with_keys_that_do_not_map_is_refused() {
    let server = TestServer::start("compose-refused").await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("docker-compose.yml");
    std::fs::write(&file, REACT_EXPRESS_MYSQL).expect("write");
    let file = file.to_str().expect("utf-8 path");

    let out = server.dubectl(&["apply", "-f", file]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    for key in [
        "services.backend.build",
        "services.backend.volumes[0]",
        "services.db.networks",
        "services.frontend.volumes[1]",
    ] {
        assert!(err.contains(&format!("unmapped: {file}: {key}: ")), "{key} in:\n{err}");
    }
    assert!(err.contains("not applied"), "{err}");
    let (_, pods) = server.get_json("/v1/pods").await;
    assert_eq!(pods, serde_json::json!([]), "nothing applied: {pods}");

    // convert prints the pods all the same (exit 0), and fails with --strict.
    let out = server.dubectl(&["convert", "-f", file]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("name: db"), "{}", stdout(&out));
    let out = server.dubectl(&["convert", "-f", file, "--strict"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stdout(&out), "", "nothing printed with --strict");
}

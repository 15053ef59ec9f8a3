//! The orchestrator end to end, against the real engine, nginx and HTTP.

use std::collections::HashSet;
use std::time::Duration;

use dubernetes_tests::{Backend, TestServer, WHOAMI_V1, WHOAMI_V2, docker, stderr, stdout, wait_for};

const T: Duration = Duration::from_secs(60);

fn spec(name: &str, image: &str, replicas: u32, host: &str) -> String {
    format!("name: {name}\nimage: {image}\nreplicas: {replicas}\naccess:\n  host: {host}\n")
}

/// Sends requests through the ingress until `n` distinct hostnames answered.
async fn distinct_hostnames(server: &TestServer, host: &str, n: usize) -> HashSet<String> {
    let seen = std::sync::Mutex::new(HashSet::new());
    wait_for(&format!("{n} distinct replicas answering for {host}"), T, || async {
        if let Ok((200, body)) = server.via_ingress(host).await
            && let Some(name) = body.lines().find_map(|l| l.strip_prefix("Hostname: "))
        {
            seen.lock().expect("lock").insert(name.to_string());
        }
        (seen.lock().expect("lock").len() >= n).then_some(())
    })
    .await;
    seen.into_inner().expect("lock")
}

async fn demo_apply_serve_get_delete(backend: Backend) {
    let server = TestServer::start_on(backend, "demo").await;
    let docker = docker().await;
    let file = server.data_dir.path().join("whoami.yaml");
    std::fs::write(&file, spec("whoami", WHOAMI_V1, 3, "whoami.local")).expect("write spec");
    let file = file.to_str().expect("utf8 path");

    let out = server.dubectl(&["apply", "-f", file, "--wait", "--timeout", "60s"]);
    assert!(out.status.success(), "apply failed: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().next(), Some("pod/whoami created"));

    // Three distinct replicas answer through the ingress, in turn.
    let seen = distinct_hostnames(&server, "whoami.local", 3).await;
    assert_eq!(seen.len(), 3);
    assert_eq!(server.replicas(Some("whoami")).await.len(), 3);

    // Unknown hosts get a 404 from nginx.
    assert_eq!(server.via_ingress("nobody.local").await.expect("request").0, 404);

    // Applying again changes nothing.
    let out = server.dubectl(&["apply", "-f", file]);
    assert_eq!(stdout(&out).trim(), "pod/whoami unchanged");

    let out = server.dubectl(&["get", "pods"]);
    assert!(out.status.success());
    let table = stdout(&out);
    let row = table.lines().find(|l| l.starts_with("whoami")).expect("whoami row");
    assert!(
        row.contains("3/3") && row.contains("whoami.local") && row.contains("Running"),
        "{table}"
    );

    let out = server.dubectl(&["get", "pods", "whoami", "-o", "json"]);
    // One pod by name prints one object (it round-trips through `apply`).
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(pod["replicas"].as_array().expect("replicas").len(), 3);

    // No replica publishes a host port; only the ingress does.
    let list = docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .filters(&std::collections::HashMap::from([(
                    "label",
                    vec![format!("io.dubernetes.instance={}", server.instance)],
                )]))
                .build(),
        ))
        .await
        .expect("list");
    for c in &list {
        let role = c
            .labels
            .as_ref()
            .and_then(|l| l.get("io.dubernetes.role"))
            .cloned()
            .unwrap_or_default();
        let published = c.ports.iter().flatten().any(|p| p.public_port.is_some());
        // (and the swarm backend's probe agent, on 127.0.0.1)
        assert_eq!(
            published,
            role == "ingress" || role == "probe",
            "container {:?} ({role})",
            c.names
        );
    }

    let out = server.dubectl(&["delete", "pod", "whoami"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "pod/whoami deleted");
    wait_for("whoami's containers to be gone", T, || async {
        server.replicas(Some("whoami")).await.is_empty().then_some(())
    })
    .await;
    wait_for("the whoami route to be gone", T, || async {
        matches!(server.via_ingress("whoami.local").await, Ok((404, _))).then_some(())
    })
    .await;
    let out = server.dubectl(&["get", "pods", "whoami"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

async fn scale_up_down_and_to_zero(backend: Backend) {
    let server = TestServer::start_on(backend, "scale").await;
    let (status, _) = server.put_yaml("web", &spec("web", WHOAMI_V1, 1, "web.local")).await;
    assert_eq!(status, 201);
    server.wait_converged("web", T).await;

    let out = server.dubectl(&["scale", "pod", "web", "--replicas", "6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.wait_converged("web", T).await;
    assert_eq!(server.replicas(Some("web")).await.len(), 6);
    distinct_hostnames(&server, "web.local", 6).await;

    server.dubectl(&["scale", "pod", "web", "--replicas", "2"]);
    server.wait_converged("web", T).await;
    assert_eq!(server.replicas(Some("web")).await.len(), 2);

    // Zero keeps the pod and runs nothing; the host answers 503 from nginx.
    server.dubectl(&["scale", "pod", "web", "--replicas", "0"]);
    let pod = server.wait_converged("web", T).await;
    assert_eq!(pod["status"]["phase"], "Stopped");
    assert!(server.replicas(Some("web")).await.is_empty());
    wait_for("a 503 for a pod without replicas", T, || async {
        matches!(server.via_ingress("web.local").await, Ok((503, _))).then_some(())
    })
    .await;
}

async fn image_change_replaces_every_container(backend: Backend) {
    let server = TestServer::start_on(backend, "image").await;
    server.put_yaml("app", &spec("app", WHOAMI_V1, 3, "app.local")).await;
    server.wait_converged("app", T).await;
    let before: HashSet<String> = server.replicas(Some("app")).await.into_iter().map(|c| c.0).collect();

    let (status, body) = server.put_yaml("app", &spec("app", WHOAMI_V2, 3, "app.local")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "configured");
    assert_eq!(body["pod"]["generation"], 2);
    server.wait_converged("app", T).await;

    // Converged counts live replicas; the last old one may still be on its way out.
    let after = wait_for("the old containers to be removed", T, || async {
        let after = server.replicas(Some("app")).await;
        (after.len() == 3).then_some(after)
    })
    .await;
    for (id, state, image) in &after {
        assert!(!before.contains(id), "container {id} survived the image change");
        assert_eq!(state, "running");
        assert_eq!(image, WHOAMI_V2);
    }
    wait_for("v2 answering", T, || async {
        matches!(server.via_ingress("app.local").await, Ok((200, body)) if body.contains("Version: v2")).then_some(())
    })
    .await;
}

async fn restart_adopts_running_containers(backend: Backend) {
    let mut server = TestServer::start_on(backend, "adopt").await;
    server.put_yaml("keep", &spec("keep", WHOAMI_V1, 3, "keep.local")).await;
    server.wait_converged("keep", T).await;
    let before = server.replicas(Some("keep")).await;

    server.restart().await;
    let pod = server.wait_converged("keep", T).await;
    assert_eq!(pod["generation"], 1);
    let after = server.replicas(Some("keep")).await;
    assert_eq!(before, after, "containers were recreated on restart");
    distinct_hostnames(&server, "keep.local", 3).await;
}

async fn killed_replica_is_replaced_and_routed(backend: Backend) {
    let server = TestServer::start_on(backend, "heal").await;
    server.put_yaml("heal", &spec("heal", WHOAMI_V1, 3, "heal.local")).await;
    server.wait_converged("heal", T).await;
    let before = server.replicas(Some("heal")).await;
    let victim = before[0].0.clone();
    server.kill_replica(&victim).await;
    wait_for("the killed replica to be replaced", T, || async {
        let now = server.replicas(Some("heal")).await;
        let running = now.iter().filter(|c| c.1 == "running").count();
        (running == 3 && !now.iter().any(|c| c.0 == victim)).then_some(())
    })
    .await;
    let pod = server.wait_converged("heal", T).await;
    assert_eq!(pod["status"]["restarts"], 1);
    distinct_hostnames(&server, "heal.local", 3).await;
    let (_, events) = server.get_json("/v1/events?pod=heal").await;
    let reasons: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    // A kill from outside is booked as such, not as the app's own exit (a crash).
    assert!(
        reasons.contains(&"Killed") && !reasons.contains(&"Exited"),
        "{reasons:?}"
    );
}

async fn multi_document_apply_from_stdin_and_delete_by_file(backend: Backend) {
    let server = TestServer::start_on(backend, "multi").await;
    let yaml = format!(
        "{}---\n{}",
        spec("one", WHOAMI_V1, 1, "one.local"),
        "name: two\nimage: dubernetes/whoami:v1\nreplicas: 2\n"
    );
    let out = server.dubectl_stdin(&["apply", "-f", "-"], &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "pod/one created\npod/two created\n");
    server.wait_converged("one", T).await;
    server.wait_converged("two", T).await;
    assert_eq!(server.replicas(None).await.len(), 3);

    let file = server.data_dir.path().join("both.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let out = server.dubectl(&["delete", "-f", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("all containers gone", T, || async {
        server.replicas(None).await.is_empty().then_some(())
    })
    .await;
}

dubernetes_tests::on_both_backends!(
    demo_apply_serve_get_delete,
    scale_up_down_and_to_zero,
    image_change_replaces_every_container,
    restart_adopts_running_containers,
    killed_replica_is_replaced_and_routed,
    multi_document_apply_from_stdin_and_delete_by_file,
);

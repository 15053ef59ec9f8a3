//! Volumes on the real engine: a stateful pod (a counter kept on a named
//! volume by a shell loop) keeps its data across a recreate rollout, a delete
//! and re-apply, and a server restart; a recreate rollout never runs two
//! writers; `delete volume` is refused while a pod mounts it, then removes
//! it; a tmpfs is mounted with its size; a volume of the same engine name
//! that this store did not make is never mounted nor deleted; image
//! references Docker would refuse are refused at apply.

use std::time::Duration;

use dubernetes_tests::{Backend, TestServer, docker, docker_cli, stderr, stdout, wait_for};

const BUSYBOX: &str = "dubernetes/busybox:local";

/// The counter: every start and every SIGTERM is logged to the volume, and
/// the count goes on from what the volume holds.
const COUNTER: &str = "trap 'echo stop $HOSTNAME >> /data/log; exit 0' TERM; \
    echo start $HOSTNAME >> /data/log; \
    n=$(cat /data/count 2>/dev/null || echo 0); \
    while true; do n=$((n+1)); echo $n > /data/count.new && mv /data/count.new /data/count; sleep 0.2 & wait $!; done";

fn counter_spec(generation: u32) -> serde_json::Value {
    serde_json::json!({
        "name": "counter",
        "image": BUSYBOX,
        "command": ["/bin/sh", "-c", COUNTER],
        "env": {"GENERATION": generation.to_string()},
        "health": {"type": "none"},
        "update": {"strategy": "recreate"},
        "volumes": [{"name": "data", "path": "/data"}, {"tmpfs": "/scratch", "size": "8Mi"}],
    })
}

async fn need_busybox() {
    let docker = docker().await;
    assert!(
        docker.inspect_image(BUSYBOX).await.is_ok(),
        "image {BUSYBOX} is missing; build the test images with scripts/build-images.sh"
    );
}

/// `/marker` of the engine volume `engine_name`, read by a throwaway container.
fn volume_marker(engine_name: &str) -> (bool, String) {
    docker_cli(&[
        "run",
        "--rm",
        "-v",
        &format!("{engine_name}:/d"),
        BUSYBOX,
        "cat",
        "/d/marker",
    ])
}

fn exec(container: &str, script: &str) -> String {
    let (ok, text) = docker_cli(&["exec", container, "sh", "-c", script]);
    assert!(ok, "docker exec {container} {script}: {text}");
    text
}

/// The counter once it has moved past `above` in `container`.
async fn count_above(container: &str, above: u64) -> u64 {
    wait_for(
        &format!("the counter past {above}"),
        Duration::from_secs(20),
        || async {
            let (ok, text) = docker_cli(&["exec", container, "cat", "/data/count"]);
            let n: u64 = text.trim().parse().ok().filter(|_| ok)?;
            (n > above).then_some(n)
        },
    )
    .await
}

async fn put(server: &TestServer, spec: &serde_json::Value) -> (u16, serde_json::Value) {
    let response = server
        .http
        .put(format!(
            "{}/v1/pods/{}",
            server.url,
            spec["name"].as_str().unwrap_or_default()
        ))
        .json(spec)
        .send()
        .await
        .expect("PUT");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn wait_gone(server: &TestServer, pod: &str) {
    wait_for(
        &format!("{pod}'s replicas to be gone"),
        Duration::from_secs(30),
        || async { server.replicas(Some(pod)).await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_stateful_pod_keeps_its_data() {
    need_busybox().await;
    let mut server = TestServer::start("vol-keep").await;
    let engine_name = format!("dub-{}_data", server.instance);

    let (status, body) = put(&server, &counter_spec(1)).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body.get("warnings").is_none(),
        "one replica, recreate: no warning: {body}"
    );
    server.wait_converged("counter", Duration::from_secs(60)).await;
    let first = server.running_container("counter", &[]).await;
    let before_rollout = count_above(&first, 2).await;

    // The tmpfs is there, of the size asked for, and a tmpfs.
    let df = exec(&first, "df -k /scratch; grep ' /scratch ' /proc/mounts");
    assert!(df.contains("tmpfs") && df.contains("8192"), "{df}");
    // The volume is the instance's, labelled with the store.
    let (ok, labels) = docker_cli(&["volume", "inspect", "-f", "{{json .Labels}}", &engine_name]);
    assert!(ok, "{labels}");
    assert!(
        labels.contains("io.dubernetes.store") && labels.contains(&server.instance),
        "{labels}"
    );

    // A recreate rollout: the old replica is gone before the new one starts,
    // and the count goes on.
    let (status, body) = put(&server, &counter_spec(2)).await;
    assert_eq!(status, 200, "{body}");
    let second = server.running_container("counter", std::slice::from_ref(&first)).await;
    let after_rollout = count_above(&second, before_rollout).await;
    let log = exec(&second, "cat /data/log");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 3, "{log}");
    for pair in lines.windows(2) {
        assert!(
            !(pair[0].starts_with("start") && pair[1].starts_with("start")),
            "two writers at once (a start before the previous replica stopped):\n{log}"
        );
    }

    // The volume is in use: its delete is refused, by the API and by dubectl.
    let response = server
        .http
        .delete(format!("{}/v1/volumes/data", server.url))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 409);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "conflict", "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("counter"),
        "{body}"
    );
    let out = server.dubectl(&["delete", "volume", "data"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("counter"), "{}", stderr(&out));

    // Delete the pod and apply it again: the volume and its count stay.
    let out = server.dubectl(&["delete", "pod", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_gone(&server, "counter").await;
    let out = server.dubectl(&["get", "volumes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("data") && table.contains(&engine_name), "{table}");
    let (status, volumes) = server.get_json("/v1/volumes").await;
    assert_eq!(status, 200, "{volumes}");
    assert_eq!(volumes[0]["name"], "data", "{volumes}");
    assert_eq!(volumes[0]["used_by"], serde_json::json!([]), "{volumes}");
    assert!(
        volumes[0]["size_bytes"].as_u64().is_some(),
        "the engine knows the size: {volumes}"
    );
    let (status, body) = put(&server, &counter_spec(2)).await;
    assert_eq!(status, 201, "{body}");
    let third = server.running_container("counter", &[]).await;
    let after_reapply = count_above(&third, after_rollout).await;

    // A server restart: the replica and its data stay.
    server.restart().await;
    server.wait_converged("counter", Duration::from_secs(60)).await;
    let fourth = server.running_container("counter", &[]).await;
    count_above(&fourth, after_reapply).await;
    let (_, volumes) = server.get_json("/v1/volumes").await;
    assert_eq!(volumes[0]["used_by"], serde_json::json!(["counter"]), "{volumes}");

    // Without the pod, the volume goes on request, and only then.
    let out = server.dubectl(&["delete", "pod", "counter"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_gone(&server, "counter").await;
    // A replica still stopping is a 409 too: retry until the engine lets go.
    wait_for("the volume's delete", Duration::from_secs(30), || async {
        server
            .dubectl(&["delete", "volume", "data"])
            .status
            .success()
            .then_some(())
    })
    .await;
    let (ok, text) = docker_cli(&["volume", "inspect", &engine_name]);
    assert!(!ok, "the volume is still there: {text}");
    let out = server.dubectl(&["delete", "volume", "data"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

/// Removes a volume this test made by hand, even when the test fails.
struct ForeignVolume(String);

impl Drop for ForeignVolume {
    fn drop(&mut self) {
        let _ = docker_cli(&["volume", "rm", "-f", &self.0]);
    }
}

#[tokio::test]
async fn a_foreign_volume_is_left_alone_and_bad_images_are_refused() {
    need_busybox().await;
    let server = TestServer::start("vol-foreign").await;

    // Image references Docker refuses are a 422 on `image` at apply.
    for image in [
        "Dubernetes/whoami:v1".to_string(),
        "a".repeat(302),
        format!("x@sha256:{}", "A".repeat(64)),
    ] {
        let spec = serde_json::json!({"name": "bad", "image": image});
        let (status, body) = put(&server, &spec).await;
        assert_eq!(status, 422, "{image}: {body}");
        assert_eq!(body["fields"][0]["field"], "image", "{body}");
    }

    // A volume of the engine name the instance would use, made by someone else, with data.
    let engine_name = format!("dub-{}_shared", server.instance);
    let (ok, text) = docker_cli(&["volume", "create", &engine_name]);
    assert!(ok, "{text}");
    let _guard = ForeignVolume(engine_name.clone());
    let (ok, text) = docker_cli(&[
        "run",
        "--rm",
        "-v",
        &format!("{engine_name}:/d"),
        BUSYBOX,
        "sh",
        "-c",
        "echo theirs > /d/marker",
    ]);
    assert!(ok, "{text}");

    let spec = serde_json::json!({
        "name": "intruder",
        "image": BUSYBOX,
        "command": ["/bin/sh", "-c", "echo ours > /data/marker; sleep 600"],
        "health": {"type": "none"},
        "volumes": [{"name": "shared", "path": "/data"}],
    });
    let (status, body) = put(&server, &spec).await;
    assert_eq!(status, 201, "{body}");
    // Rolling with a volume: applied, with the warning in the answer.
    let warnings = body["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap_or_default().contains("recreate")),
        "{body}"
    );
    // The pod says why it cannot run, and nothing mounts the volume.
    let event = server.wait_event("intruder", "VolumeUnavailable", None).await;
    assert!(
        event["message"].as_str().unwrap_or_default().contains("left alone"),
        "{event}"
    );
    server.wait_event("intruder", "SharedVolume", Some("Warning")).await;
    // The warning stays in the pod's status: `get pods` marks it, `describe` says it.
    let (_, pod) = server.get_json("/v1/pods/intruder").await;
    assert_eq!(pod["status"]["warnings"], body["warnings"], "{pod}");
    let out = server.dubectl(&["get", "pods"]);
    let row = stdout(&out)
        .lines()
        .find(|l| l.starts_with("intruder "))
        .map(str::to_string);
    assert!(
        row.as_ref().is_some_and(|r| r.contains("(1 warning)")),
        "{}",
        stdout(&out)
    );
    let out = server.dubectl(&["describe", "pod", "intruder"]);
    let described = stdout(&out);
    let warning = warnings[0].as_str().unwrap_or_default();
    assert!(
        described.contains("Warnings:") && described.contains(warning),
        "{described}"
    );
    assert!(server.replicas(Some("intruder")).await.is_empty());

    // Not listed, and its delete is refused (not even with the pod gone).
    let (_, volumes) = server.get_json("/v1/volumes").await;
    assert_eq!(volumes, serde_json::json!([]));
    let out = server.dubectl(&["delete", "pod", "intruder"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let response = server
        .http
        .delete(format!("{}/v1/volumes/shared", server.url))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 409);

    // Their data is untouched.
    let (ok, text) = volume_marker(&engine_name);
    assert!(ok && text.trim() == "theirs", "{text}");
}

/// On the swarm backend the service's task mounts the volume (made on the
/// node that runs the task, labelled as ours) and the tmpfs.
#[tokio::test]
async fn swarm_services_get_the_mounts() {
    need_busybox().await;
    let server = TestServer::start_on(Backend::Swarm, "vol").await;
    let spec = serde_json::json!({
        "name": "keeper",
        "image": BUSYBOX,
        "command": ["/bin/sh", "-c", "echo kept > /data/marker; sleep 600"],
        "health": {"type": "none"},
        "update": {"strategy": "recreate"},
        "volumes": [{"name": "data", "path": "/data"}, {"tmpfs": "/scratch", "size": "4Mi"}],
    });
    let (status, body) = put(&server, &spec).await;
    assert_eq!(status, 201, "{body}");
    server.wait_converged("keeper", Duration::from_secs(90)).await;
    let engine_name = format!("dub-{}_data", server.instance);
    let (ok, mounts) = docker_cli(&[
        "service",
        "inspect",
        "-f",
        "{{json .Spec.TaskTemplate.ContainerSpec.Mounts}}",
        &server.replicas(Some("keeper")).await[0].0,
    ]);
    assert!(ok, "{mounts}");
    assert!(mounts.contains(&engine_name) && mounts.contains("tmpfs"), "{mounts}");
    let marker = wait_for("the marker on the volume", Duration::from_secs(30), || async {
        let (ok, text) = volume_marker(&engine_name);
        ok.then_some(text)
    })
    .await;
    assert_eq!(marker.trim(), "kept");
    let (ok, labels) = docker_cli(&["volume", "inspect", "-f", "{{json .Labels}}", &engine_name]);
    assert!(ok && labels.contains("io.dubernetes.store"), "{labels}");
    // Pinned to the node (the manager) by a node label and a `node.id` constraint.
    let (ok, node) = docker_cli(&["node", "inspect", "self", "-f", "{{.ID}} {{json .Spec.Labels}}"]);
    let pin = format!("\"io.dubernetes.volume.{engine_name}\":\"true\"");
    assert!(ok && node.contains(&pin), "{node}");
    let node_id = node.split_whitespace().next().unwrap_or_default();
    let (ok, placement) = docker_cli(&[
        "service",
        "inspect",
        "-f",
        "{{json .Spec.TaskTemplate.Placement}}",
        &server.replicas(Some("keeper")).await[0].0,
    ]);
    assert!(ok && placement.contains(&format!("node.id=={node_id}")), "{placement}");
    // Deleting the volume takes the pin with it.
    let out = server.dubectl(&["delete", "pod", "keeper"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the volume deleted", Duration::from_secs(60), || async {
        let output = server.dubectl(&["delete", "volume", "data"]);
        output.status.success().then_some(())
    })
    .await;
    let (_, node) = docker_cli(&["node", "inspect", "self", "-f", "{{json .Spec.Labels}}"]);
    assert!(!node.contains(&engine_name), "the pin stayed: {node}");
}

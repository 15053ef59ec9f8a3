//! Valid but hostile routes through the real server and the real nginx:
//! every host name the API accepts is served (RFC 1123: up to 253
//! characters), and a route nginx rejects is reported against its pod while
//! every other pod's changes keep being applied.

use std::time::Duration;

use bollard::query_parameters::UploadToContainerOptionsBuilder;
use dubernetes_tests::{TestServer, containers, docker, peak_kib, wait_for};

const T: Duration = Duration::from_secs(90);
const PREVIEW: &str = "feature-login-redesign.preview.staging.example.com";

/// A valid host name of exactly `len` characters (labels of at most 63),
/// made of `fill`, ending in a label that tells its length.
fn host_of(len: usize, fill: char) -> String {
    let tag = format!("l{len}");
    if len <= tag.len() + 1 {
        return fill.to_string().repeat(len);
    }
    let mut labels = Vec::new();
    let mut left = len - tag.len() - 1;
    while left > 0 {
        let mut n = left.min(63);
        if left - n == 1 {
            n -= 1;
        }
        labels.push(fill.to_string().repeat(n));
        left = left.saturating_sub(n + 1);
    }
    labels.push(tag);
    let host = labels.join(".");
    assert_eq!(host.len(), len, "{host}");
    host
}

fn pod(name: &str, host: &str, replicas: u32) -> String {
    format!("name: {name}\nimage: dubernetes/whoami:v1\nreplicas: {replicas}\naccess: {{host: {host}}}\n")
}

async fn put(server: &TestServer, name: &str, yaml: &str) {
    let (status, body) = server.put_yaml(name, yaml).await;
    assert!(status == 200 || status == 201, "{name}: {status} {body}");
}

/// Waits until a request with this Host is answered by its pod's server block:
/// 200 from a replica, or (no replica) 503 naming the pod; never the 404 of
/// the default server.
async fn wait_served(server: &TestServer, host: &str, name: &str, want: u16) {
    wait_for(&format!("{host} ({} chars) to be served", host.len()), T, || async {
        match server.via_ingress(host).await {
            Ok((status, body)) if status == want && (want != 503 || body.contains(name)) => Some(()),
            _ => None,
        }
    })
    .await;
}

/// The replica ids of a pod that run now.
async fn running(server: &TestServer, name: &str) -> Vec<String> {
    let docker = docker().await;
    containers(&docker, &server.instance, Some(name))
        .await
        .into_iter()
        .filter(|(_, state, _)| state == "running")
        .map(|(id, _, _)| id)
        .collect()
}

/// Kills one replica of a pod (the engine's kill, as a crash) and waits until
/// the pod has healed: a new replica runs, is routed (the pod converged) and
/// answers through the ingress.
async fn kill_and_wait_healed(server: &TestServer, name: &str, host: &str) {
    let before = running(server, name).await;
    let victim = before.first().expect("a running replica").clone();
    let docker = docker().await;
    docker
        .kill_container(&victim, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .expect("kill a replica");
    let last = std::sync::Mutex::new(serde_json::Value::Null);
    let healed = tokio::time::timeout(T, async {
        loop {
            let (_, pod) = server.get_json(&format!("/v1/pods/{name}")).await;
            let s = &pod["status"];
            let ids: Vec<String> = pod["replicas"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["ready"] == true)
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect();
            let healed = s["ready_replicas"] == s["desired_replicas"]
                && s["current_replicas"] == s["desired_replicas"]
                && !ids.iter().any(|id| victim.starts_with(id.as_str()));
            *last.lock().unwrap_or_else(|e| e.into_inner()) = pod;
            if healed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if healed.is_err() {
        let seen = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let config = server.ingress_config().await;
        panic!("{name} did not heal and get routed within {T:?}; last seen:\n{seen:#}\nlive config:\n{config}");
    }
    wait_served(server, host, name, 200).await;
}

/// Writes a file into the ingress container (as a different image's extra
/// config would be there).
async fn write_into_ingress(server: &TestServer, file: &str, content: &str) {
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, file, content.as_bytes()).expect("tar");
    let tar = builder.into_inner().expect("tar");
    docker()
        .await
        .upload_to_container(
            &format!("dub-{}-ingress", server.instance),
            Some(UploadToContainerOptionsBuilder::new().path("/etc/nginx/conf.d").build()),
            bollard::body_full(tar.into()),
        )
        .await
        .expect("upload into the ingress");
}

#[tokio::test]
async fn every_host_length_the_api_accepts_is_served() {
    let server = TestServer::start("hosts").await;
    let pid = server.pid().expect("server pid");
    put(&server, "victim", &pod("victim", "victim.local", 1)).await;
    server.wait_converged("victim", T).await;

    // The 51-character preview host of the report: served, and it does not
    // stop another pod's heal from being routed.
    put(&server, "preview", &pod("preview", PREVIEW, 1)).await;
    server.wait_converged("preview", T).await;
    wait_served(&server, PREVIEW, "preview", 200).await;
    kill_and_wait_healed(&server, "victim", "victim.local").await;
    let (_, body) = server.get_json("/v1/ingress").await;
    assert!(body["error"].is_null(), "{body}");

    // Each length where the hash's bucket size changes, on both sides, alone
    // the longest (applied one at a time in increasing order), then every
    // length from 1 to 253 at once.
    for len in [45, 46, 47, 48, 110, 111, 238, 239, 252, 253] {
        let name = format!("b{len}");
        let host = host_of(len, 'b');
        put(&server, &name, &pod(&name, &host, 0)).await;
        wait_served(&server, &host, &name, 503).await;
    }
    for len in 1..=253 {
        let name = format!("h{len}");
        put(&server, &name, &pod(&name, &host_of(len, 'h'), 0)).await;
    }
    for len in 1..=253 {
        wait_served(&server, &host_of(len, 'h'), &format!("h{len}"), 503).await;
    }
    let config = server.ingress_config().await;
    assert!(config.contains("server_names_hash_bucket_size 512;"), "{config}");
    assert!(config.contains(&format!("server_name {};", host_of(253, 'h'))));
    // Still routing changes after all that: the victim heals again.
    kill_and_wait_healed(&server, "victim", "victim.local").await;
    let (_, body) = server.get_json("/v1/ingress").await;
    assert!(body["error"].is_null(), "{body}");
    let (_, pods) = server.get_json("/v1/pods").await;
    let rejected: Vec<_> = pods
        .as_array()
        .expect("pods")
        .iter()
        .filter(|p| p["status"]["reason"] == "IngressRejected")
        .map(|p| p["name"].clone())
        .collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    let peak = peak_kib(pid);
    eprintln!(
        "server VmHWM with {} pods routed: {peak} KiB",
        pods.as_array().map_or(0, Vec::len)
    );
    assert!(peak < MAX_PEAK_KIB, "the server's peak memory reached {peak} KiB");
}

/// The server's peak memory with the 265 pods above (measured: see docs/security.md).
const MAX_PEAK_KIB: u64 = 96 * 1024;

#[tokio::test]
async fn a_route_nginx_rejects_is_reported_and_the_rest_applied() {
    let server = TestServer::start_with("reject", &["--resync-seconds", "2"]).await;
    put(&server, "good", &pod("good", "good.local", 1)).await;
    put(&server, "victim", &pod("victim", "victim.local", 1)).await;
    server.wait_converged("good", T).await;
    server.wait_converged("victim", T).await;

    // An ingress image may carry configs of its own. This one defines an
    // upstream of the name Dubernetes gives pod `bad`: nginx rejects any
    // config that routes `bad` to a replica ("duplicate upstream"), and
    // nothing else.
    write_into_ingress(&server, "aa-extra.conf", "upstream pod_bad { server 127.0.0.1:9; }\n").await;
    put(&server, "bad", &pod("bad", "bad.local", 1)).await;

    let status = wait_for("bad to be reported as IngressRejected", T, || async {
        let (_, pod) = server.get_json("/v1/pods/bad").await;
        (pod["status"]["reason"] == "IngressRejected").then(|| pod["status"].clone())
    })
    .await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("duplicate upstream \"pod_bad\""), "{message}");
    assert_eq!(status["phase"], "Failing");
    let events = wait_for("an IngressRejected event", T, || async {
        let (_, events) = server.get_json("/v1/events?pod=bad").await;
        let events = events.as_array()?.clone();
        events
            .iter()
            .any(|e| e["reason"] == "IngressRejected")
            .then_some(events)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "Warning" && e["message"].as_str().unwrap_or("").contains("duplicate upstream")),
        "{events:?}"
    );

    // The other pods' changes keep flowing: a heal, a scale-up, a new pod.
    kill_and_wait_healed(&server, "victim", "victim.local").await;
    put(&server, "good", &pod("good", "good.local", 2)).await;
    server.wait_converged("good", T).await;
    put(&server, "late", &pod("late", "late.local", 1)).await;
    server.wait_converged("late", T).await;
    wait_served(&server, "late.local", "late", 200).await;

    // The live config routes exactly the running replicas of the others, and not `bad`.
    let config = server.ingress_config().await;
    assert!(!config.contains("pod_bad"), "{config}");
    assert!(!config.contains("bad.local"), "{config}");
    let (_, good) = server.get_json("/v1/pods/good").await;
    for pod in ["good", "victim", "late"] {
        let (_, view) = server.get_json(&format!("/v1/pods/{pod}")).await;
        for r in view["replicas"].as_array().expect("replicas") {
            let ip = r["ip"].as_str().expect("ip");
            assert!(
                config.contains(&format!("server {ip}:80 ")),
                "{pod} {ip} not in\n{config}"
            );
        }
    }
    assert_eq!(good["status"]["ready_replicas"], 2, "{good}");
    // No other server either (the killed replica is gone from it).
    assert_eq!(config.matches(" max_fails=1 ").count(), 4, "{config}");
    let (_, ingress) = server.get_json("/v1/ingress").await;
    assert!(ingress["error"].is_null(), "{ingress}");
    let rejected = ingress["rejected"].as_object().expect("rejected");
    assert_eq!(rejected.keys().collect::<Vec<_>>(), ["bad"], "{ingress}");
    // The 404 of the default server, not a 502: nginx serves the others' config.
    let (status, _) = server.via_ingress("bad.local").await.expect("ingress");
    assert_eq!(status, 404);

    // Once what made nginx reject it is gone, the route is tried again (on
    // the next resync) and served.
    write_into_ingress(&server, "aa-extra.conf", "# nothing\n").await;
    wait_for("bad to be served once nginx accepts it", T, || async {
        let (_, pod) = server.get_json("/v1/pods/bad").await;
        let ok = pod["status"]["reason"].is_null() && pod["status"]["ready_replicas"] == 1;
        ok.then_some(())
    })
    .await;
    wait_served(&server, "bad.local", "bad", 200).await;
    assert!(server.ingress_config().await.contains("upstream pod_bad"));
}

#[tokio::test]
async fn a_culprit_nginx_does_not_point_at_is_found_by_bisection() {
    let server = TestServer::start("bisect").await;
    // This time the clash is reported in the image's file, loaded after ours
    // ("duplicate upstream ... in zz-extra.conf:1"): nothing in nginx's
    // message names a line of our config, so the routes are bisected.
    let names = ["p1", "p2", "p3", "p4", "p5", "p6"];
    for name in names {
        put(&server, name, &pod(name, &format!("{name}.local"), 1)).await;
    }
    for name in names {
        server.wait_converged(name, T).await;
    }
    write_into_ingress(&server, "zz-extra.conf", "upstream pod_p4 { server 127.0.0.1:9; }\n").await;
    // A change of another pod makes the ingress render and check again.
    put(&server, "p1", &pod("p1", "p1.local", 2)).await;
    let status = wait_for("p4 to be reported as IngressRejected", T, || async {
        let (_, pod) = server.get_json("/v1/pods/p4").await;
        (pod["status"]["reason"] == "IngressRejected").then(|| pod["status"].clone())
    })
    .await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("duplicate upstream \"pod_p4\""), "{message}");
    server.wait_converged("p1", T).await;
    let (_, ingress) = server.get_json("/v1/ingress").await;
    let rejected = ingress["rejected"].as_object().expect("rejected");
    assert_eq!(rejected.keys().collect::<Vec<_>>(), ["p4"], "{ingress}");
    for name in names.iter().filter(|n| **n != "p4") {
        let (_, view) = server.get_json(&format!("/v1/pods/{name}")).await;
        assert!(view["status"]["reason"].is_null(), "{view}");
        wait_served(&server, &format!("{name}.local"), name, 200).await;
    }
    let config = server.ingress_config().await;
    assert!(!config.contains("pod_p4"), "{config}");
    assert_eq!(config.matches(" max_fails=1 ").count(), 6, "{config}");
}

//! Valid but hostile routes through the real server and the real nginx:
//! every host name the API accepts is served (RFC 1123: up to 253
//! characters), and a config nginx rejects keeps the live one while replica
//! changes keep being routed (they need no reload).

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
async fn a_config_nginx_rejects_keeps_the_live_one_and_replicas_still_route() {
    let server = TestServer::start_with("reject", &["--resync-seconds", "2"]).await;
    put(&server, "good", &pod("good", "good.local", 1)).await;
    put(&server, "victim", &pod("victim", "victim.local", 1)).await;
    server.wait_converged("good", T).await;
    server.wait_converged("victim", T).await;
    wait_served(&server, "victim.local", "victim", 200).await;

    // An ingress image may carry configs of its own. This one is broken:
    // nginx rejects every config from now on, with or without routes. (The
    // per-route isolation of a rejected config is tested with the fake
    // engine: the config has no name a foreign file could clash with per pod
    // any more, since replicas are not in it.)
    write_into_ingress(&server, "aa-extra.conf", "this_is_not_a_directive;\n").await;
    let (_, before) = server.get_json("/v1/ingress").await;
    put(&server, "late", &pod("late", "late.local", 1)).await;
    let ingress = wait_for("the rejection to be reported", T, || async {
        let (_, ingress) = server.get_json("/v1/ingress").await;
        ingress["error"]
            .as_str()
            .is_some_and(|e| e.contains("this_is_not_a_directive"))
            .then_some(ingress)
    })
    .await;
    assert!(
        ingress["error"]
            .as_str()
            .unwrap_or_default()
            .contains("kept the last good one"),
        "{ingress}"
    );
    // The live config still serves, and replica changes still reach it:
    // they need no reload (a heal, a scale-up).
    kill_and_wait_healed(&server, "victim", "victim.local").await;
    put(&server, "good", &pod("good", "good.local", 2)).await;
    server.wait_converged("good", T).await;
    wait_for("both good replicas to be served", T, || async {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..40 {
            if let Ok((200, body)) = server.via_ingress("good.local").await {
                seen.insert(
                    body.lines()
                        .find(|l| l.starts_with("Hostname:"))
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
        (seen.len() == 2).then_some(())
    })
    .await;
    let (_, after) = server.get_json("/v1/ingress").await;
    assert_eq!(after["reloads"], before["reloads"], "{before} -> {after}");
    // The new host is not live yet: the default server's 404.
    let (status, _) = server.via_ingress("late.local").await.expect("ingress");
    assert_eq!(status, 404);

    // Once what made nginx reject it is gone, the next resync applies it.
    write_into_ingress(&server, "aa-extra.conf", "# nothing\n").await;
    server.wait_converged("late", T).await;
    wait_served(&server, "late.local", "late", 200).await;
    let (_, ingress) = server.get_json("/v1/ingress").await;
    assert!(ingress["error"].is_null(), "{ingress}");
}

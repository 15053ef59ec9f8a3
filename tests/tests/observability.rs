//! Observability of a real server: `GET /metrics` behind the token, a
//! well-formed Prometheus text exposition, counters that move when the engine
//! kills a replica and the controller replaces it; and JSON logs.

use std::time::Duration;

use dubernetes_tests::exposition::{self, Exposition};
use dubernetes_tests::{TestServer, containers, docker, wait_for};
use futures::StreamExt as _;

const T: Duration = Duration::from_secs(60);

/// One scrape, parsed strictly, with the conventions checked.
struct Scrape {
    text: String,
    parsed: Exposition,
}

impl Scrape {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.parsed.value(name, labels)
    }

    /// How many observations a histogram (with these labels) has.
    fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.parsed.value(&format!("{name}_count"), labels)
    }
}

async fn scrape(server: &TestServer) -> Scrape {
    let response = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.expect("body");
    let parsed = exposition::parse(&text).unwrap_or_else(|e| panic!("the exposition does not parse: {e}\n{text}"));
    // Names follow the conventions: the prefix, counters in `_total`, durations in `_seconds`.
    for (name, kind) in &parsed.types {
        assert!(name.starts_with("dubernetes_"), "{name} lacks the prefix");
        assert!(
            ["counter", "gauge", "histogram"].contains(&kind.as_str()),
            "{name}: {kind}"
        );
        if kind == "counter" {
            assert!(name.ends_with("_total"), "counter {name} does not end in _total");
        }
        if name.contains("duration") {
            assert!(name.ends_with("_seconds"), "{name} is a duration not in seconds");
        }
    }
    Scrape { text, parsed }
}

#[tokio::test]
async fn metrics_parse_and_move_when_a_replica_is_killed_and_replaced() {
    let server = TestServer::start("metrics").await;
    let docker = docker().await;

    // Behind the token, like every API route.
    let anonymous = server
        .anonymous
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(anonymous.status(), 401);

    let yaml = "name: web\nimage: dubernetes/whoami:v1\nreplicas: 2\naccess: {host: web.metrics.local}\n";
    assert_eq!(server.put_yaml("web", yaml).await.0, 201);
    server.wait_converged("web", T).await;
    // A pod nobody asked about must not show up; a 404 is counted by its route template.
    assert_eq!(server.get_json("/v1/pods/nope").await.0, 404);

    // Converged (per the API) comes a moment before the rollout is booked complete.
    let before = wait_for("the rollout to be counted complete", T, || async {
        let now = scrape(&server).await;
        let complete = now.value("dubernetes_rollouts_total", &[("pod", "web"), ("outcome", "complete")]);
        (complete == Some(1.0)).then_some(now)
    })
    .await;
    for family in [
        "dubernetes_reconcile_duration_seconds",
        "dubernetes_reconciles_total",
        "dubernetes_pod_replicas",
        "dubernetes_rollouts_total",
        "dubernetes_ingress_syncs_total",
        "dubernetes_ingress_sync_duration_seconds",
        "dubernetes_ingress_reloads_total",
        "dubernetes_engine_call_duration_seconds",
        "dubernetes_api_requests_total",
        "dubernetes_api_request_duration_seconds",
        "dubernetes_streams_open",
    ] {
        // (Per-pod counters and engine errors appear with their first increase.)
        assert!(
            before.text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{}",
            before.text
        );
    }
    for (state, n) in [("desired", 2.0), ("running", 2.0), ("ready", 2.0)] {
        assert_eq!(
            before.value("dubernetes_pod_replicas", &[("pod", "web"), ("state", state)]),
            Some(n),
            "{state}"
        );
    }
    assert_eq!(
        before.value("dubernetes_rollouts_total", &[("pod", "web"), ("outcome", "complete")]),
        Some(1.0)
    );
    assert_eq!(
        before.value(
            "dubernetes_api_requests_total",
            &[("method", "PUT"), ("route", "/v1/pods/{name}"), ("status", "201")]
        ),
        Some(1.0)
    );
    assert_eq!(
        before.value(
            "dubernetes_api_requests_total",
            &[("method", "GET"), ("route", "/v1/pods/{name}"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(!before.text.contains("/v1/pods/nope"), "a raw path became a label");
    let creates = before
        .histogram_count("dubernetes_engine_call_duration_seconds", &[("operation", "create")])
        .expect("create calls");
    assert!(creates >= 3.0, "2 replicas and the ingress: {creates}");
    assert!(before.value("dubernetes_ingress_reloads_total", &[]).unwrap_or(0.0) >= 1.0);
    assert!(
        before
            .value("dubernetes_ingress_syncs_total", &[("result", "changed")])
            .unwrap_or(0.0)
            >= 1.0
    );
    let reconciles = before
        .histogram_count("dubernetes_reconcile_duration_seconds", &[])
        .unwrap_or(0.0);
    assert!(reconciles >= 1.0);
    assert_eq!(
        before.value("dubernetes_container_restarts_total", &[("pod", "web")]),
        None
    );
    // No container id is a label value: cardinality stays bounded by pods.
    let replicas = containers(&docker, &server.instance, Some("web")).await;
    assert_eq!(replicas.len(), 2);
    for (id, _, _) in &replicas {
        assert!(!before.text.contains(&id[..12]), "container id {id} in the metrics");
    }

    // The engine kills a replica; the controller replaces it.
    let (victim, _, _) = &replicas[0];
    docker
        .kill_container(victim, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .expect("docker kill");
    let after = wait_for("the restart to be counted and the pod converged again", T, || async {
        let now = scrape(&server).await;
        let restarted = now.value("dubernetes_container_restarts_total", &[("pod", "web")]) == Some(1.0);
        let ready = now.value("dubernetes_pod_replicas", &[("pod", "web"), ("state", "ready")]) == Some(2.0);
        (restarted && ready).then_some(now)
    })
    .await;
    let replaced = containers(&docker, &server.instance, Some("web")).await;
    assert!(replaced.iter().all(|(id, _, _)| id != victim), "{replaced:?}");
    let creates_after = after
        .histogram_count("dubernetes_engine_call_duration_seconds", &[("operation", "create")])
        .unwrap_or(0.0);
    assert!(creates_after > creates, "{creates_after} > {creates}");
    let reconciles_after = after
        .histogram_count("dubernetes_reconcile_duration_seconds", &[])
        .unwrap_or(0.0);
    assert!(reconciles_after > reconciles, "{reconciles_after} > {reconciles}");
    // A kill from outside is replaced at once: no back-off.
    assert_eq!(
        after.value("dubernetes_crashloop_backoffs_total", &[("pod", "web")]),
        None
    );
    assert!(
        after
            .value("dubernetes_api_requests_total", &[("route", "/metrics")])
            .unwrap_or(0.0)
            >= 1.0,
        "scrapes are counted"
    );

    // A watch counts as an open stream while it lasts.
    let watch = server
        .http
        .get(format!("{}/v1/watch", server.url))
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), 200);
    let mut body = watch.bytes_stream();
    assert!(body.next().await.is_some(), "the watch sends the pods first");
    let open = scrape(&server).await;
    assert_eq!(open.value("dubernetes_streams_open", &[("stream", "watch")]), Some(1.0));
    drop(body);
    wait_for("the watch to count as closed", T, || async {
        let now = scrape(&server).await;
        (now.value("dubernetes_streams_open", &[("stream", "watch")]) == Some(0.0)).then_some(())
    })
    .await;

    // A deleted pod's series go away.
    let deleted = server
        .http
        .delete(format!("{}/v1/pods/web", server.url))
        .send()
        .await
        .expect("DELETE");
    assert!(deleted.status().is_success());
    wait_for("the deleted pod's series to go", T, || async {
        let now = scrape(&server).await;
        (!now.text.contains("pod=\"web\"")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_pod_and_revision() {
    let server = TestServer::start_with("jsonlogs", &["--log-format", "json"]).await;
    let yaml = "name: api\nimage: dubernetes/whoami:v1\n";
    assert_eq!(server.put_yaml("api", yaml).await.0, 201);
    let pod = server.wait_converged("api", T).await;
    let revision = pod["status"]["revision"].as_str().expect("revision").to_string();
    let lines = wait_for("a reconcile line with the pod and its revision", T, || async {
        let log = server.log();
        // Only whole lines: the server may be writing the last one.
        let lines: Vec<serde_json::Value> = log
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
            .collect();
        lines
            .iter()
            .any(|l| l["span"]["pod"] == "api" && l["span"]["revision"] == revision.as_str())
            .then_some(lines)
    })
    .await;
    for line in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
    }
    // Event fields are top-level: the controller's events name their pod.
    assert!(
        lines.iter().any(|l| l["pod"] == "api" && l["reason"] == "Created"),
        "no Created event line for the pod"
    );
}

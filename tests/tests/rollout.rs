//! Rolling updates that never drop a request, and automatic rollback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dubernetes_tests::{Backend, TestServer, stderr, stdout, wait_for};

const T: Duration = Duration::from_secs(90);

fn spec(image: &str, replicas: u32, extra: &str) -> String {
    format!(
        "name: app\nimage: {image}\nreplicas: {replicas}\naccess: {{host: app.local}}\n\
         health: {{path: /healthz, interval: 200ms, timeout: 500ms}}\n{extra}"
    )
}

/// A steady stream of requests through the ingress, on a few keep-alive
/// connections, never retried: replica changes reload no nginx, so no
/// connection is closed under a client.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(server: &TestServer, host: &str, clients: usize) -> Load {
        let port = server.ingress_port().await;
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            errors: Arc::new(std::sync::Mutex::new(Vec::new())),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (stop, ok, failed, errors) = (
                load.stop.clone(),
                load.ok.clone(),
                load.failed.clone(),
                load.errors.clone(),
            );
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let url = format!("http://127.0.0.1:{port}/");
            let host = host.to_string();
            tasks.push(tokio::spawn(async move {
                // Bounded: at most 10 minutes of requests even if nobody stops us.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                    let result = http.get(&url).header("host", &host).send().await;
                    match result {
                        Ok(r) if r.status().as_u16() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.lock().expect("lock").push(format!("HTTP {}", r.status()));
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.lock().expect("lock").push(format!("{e:?}"));
                        }
                    }
                }
            }));
        }
        Load { tasks, ..load }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let errors = self.errors.lock().expect("lock").clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

async fn pod(server: &TestServer) -> serde_json::Value {
    server.get_json("/v1/pods/app").await.1
}

async fn wait_rollout_complete(server: &TestServer) {
    wait_for("the rollout to be marked complete", T, || async {
        let p = pod(server).await;
        let c = p["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Progressing").cloned());
        c.filter(|c| c["reason"] == "RolloutComplete").map(|_| ())
    })
    .await;
}

/// nginx reloads and endpoint updates since the server started.
async fn ingress_counts(server: &TestServer) -> (u64, u64) {
    let (_, ingress) = server.get_json("/v1/ingress").await;
    (
        ingress["reloads"].as_u64().expect("reloads"),
        ingress["endpoint_updates"].as_u64().expect("endpoint_updates"),
    )
}

/// Waits until the load has made `n` more requests.
async fn more_requests(load: &Load, n: u64) {
    let seen = load.ok.load(Ordering::Relaxed) + load.failed.load(Ordering::Relaxed);
    wait_for("more requests", T, || async {
        let now = load.ok.load(Ordering::Relaxed) + load.failed.load(Ordering::Relaxed);
        (now > seen + n).then_some(())
    })
    .await;
}

async fn image_change_under_load_drops_no_request(backend: Backend) {
    let server = TestServer::start_on(backend, "rolling").await;
    let (status, body) = server.put_yaml("app", &spec("dubernetes/whoami:v1", 5, "")).await;
    assert_eq!(status, 201, "{body}");
    server.wait_converged("app", T).await;
    // Converged is not complete: revision 1's stabilization window (5 s) ends
    // later, the later the slower its replicas started (the swarm backend).
    wait_rollout_complete(&server).await;
    let load = Load::start(&server, "app.local", 4).await;
    wait_for("some requests to succeed", T, || async {
        (load.ok.load(Ordering::Relaxed) > 20).then_some(())
    })
    .await;
    let (reloads, updates) = ingress_counts(&server).await;
    // A local engine: the endpoint files are renamed in the data dir's
    // `ingress/`, bound into the ingress, not uploaded through the engine.
    let (_, ingress) = server.get_json("/v1/ingress").await;
    assert_eq!(ingress["endpoints"], "bound", "{ingress}");
    let bound = server.data_path.join(dubernetes_core::files::INGRESS_ENDPOINTS_DIR);
    assert!(bound.join("app.a").is_file(), "no endpoint file in {}", bound.display());

    // The stabilization window is not what this test is about: keep it short.
    let (status, body) = server
        .put_yaml("app", &spec("dubernetes/whoami:v2", 5, "update: {min_ready: 300ms}\n"))
        .await;
    assert_eq!(status, 200, "{body}");
    let done = server.wait_converged("app", T).await;
    // A few more requests on the new revision only.
    more_requests(&load, 20).await;
    // Scaling down and up under the same keep-alive clients.
    for replicas in [2, 5] {
        let (status, body) = server
            .put_yaml(
                "app",
                &spec("dubernetes/whoami:v2", replicas, "update: {min_ready: 300ms}\n"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        server.wait_converged("app", T).await;
        wait_for("the old replicas to be gone", T, || async {
            let now = server.replicas(Some("app")).await;
            (now.len() == replicas as usize).then_some(())
        })
        .await;
        more_requests(&load, 20).await;
    }
    let (ok, failed, errors) = load.finish().await;
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests (keep-alive, no retries) failed during the rollout and scaling: {errors:?}",
        ok + failed
    );
    assert!(ok > 50, "too few requests to mean anything: {ok}");
    // Replicas came and went by endpoint updates only: nginx never reloaded.
    let (reloads_after, updates_after) = ingress_counts(&server).await;
    assert_eq!(reloads_after, reloads, "nginx reloaded on a replica change");
    assert!(
        updates_after >= updates + 5,
        "{updates} -> {updates_after} endpoint updates"
    );

    let after = wait_for("the old containers to be removed", T, || async {
        let now = server.replicas(Some("app")).await;
        (now.len() == 5).then_some(now)
    })
    .await;
    assert!(
        after.iter().all(|c| c.2 == "dubernetes/whoami:v2" && c.1 == "running"),
        "{after:?}"
    );
    assert_eq!(done["status"]["revision_number"], 2);
    let progressing = done["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Progressing")
        .cloned();
    wait_rollout_complete(&server).await;
    drop(progressing);

    // Changing only replicas scales without a new revision.
    let (_, body) = server
        .put_yaml("app", &spec("dubernetes/whoami:v2", 3, "update: {min_ready: 300ms}\n"))
        .await;
    assert_eq!(body["pod"]["status"]["revision_number"], 2);
    let out = server.dubectl(&["rollout", "history", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let history = stdout(&out);
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(
        history
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("complete") && l.contains("whoami:v1")),
        "{history}"
    );
}

async fn assert_rolls_back(backend: Backend, test: &str, bad_env: &str, deadline: &str, reason: &str, cause: &str) {
    let server = TestServer::start_on(backend, test).await;
    // The good revision rolls out under the default deadline (a busy CI
    // machine may need more than a few seconds to start it); only the bad
    // one gets its deadline.
    let deadline = format!("update: {{progress_deadline: {deadline}}}\n");
    server.put_yaml("app", &spec("dubernetes/whoami:v1", 3, "")).await;
    server.wait_converged("app", T).await;
    wait_for("revision 1 complete", T, || async {
        let p = pod(&server).await;
        p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["reason"] == "RolloutComplete")
            .then_some(())
    })
    .await;
    let good: Vec<String> = server.replicas(Some("app")).await.into_iter().map(|c| c.0).collect();
    let load = Load::start(&server, "app.local", 3).await;

    let bad = spec("dubernetes/whoami:v2", 3, &format!("{deadline}env: {{{bad_env}}}\n"));
    let (status, body) = server.put_yaml("app", &bad).await;
    assert_eq!(status, 200, "{body}");
    let rolled = wait_for("the automatic rollback", T, || async {
        let p = pod(&server).await;
        (p["status"]["reason"] == "RolledBack").then_some(p)
    })
    .await;
    let message = rolled["status"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(reason) && message.contains(cause), "{message}");
    assert_eq!(rolled["spec"]["image"], "dubernetes/whoami:v1");
    assert!(rolled["spec"].get("env").is_none(), "{rolled}");
    let settled = server.wait_converged("app", T).await;
    assert_eq!(settled["status"]["revision_number"], 3);

    let (ok, failed, errors) = load.finish().await;
    assert_eq!(failed, 0, "{failed} of {} requests failed: {errors:?}", ok + failed);
    assert!(ok > 20, "{ok}");
    // The old replicas never stopped serving: they are the very same containers.
    let now: Vec<String> = server.replicas(Some("app")).await.into_iter().map(|c| c.0).collect();
    assert_eq!(now, good);

    let out = server.dubectl(&["rollout", "history", "app"]);
    let history = stdout(&out);
    let row2 = history.lines().find(|l| l.starts_with('2')).unwrap_or_default();
    assert!(row2.contains("failed") && row2.contains(reason), "{history}");
    let (_, events) = server.get_json("/v1/events?pod=app").await;
    assert!(
        events
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["reason"] == "RolledBack"),
        "{events}"
    );
}

async fn a_never_ready_revision_is_rolled_back(backend: Backend) {
    assert_rolls_back(
        backend,
        "unready",
        "WHOAMI_UNHEALTHY: \"1\"",
        // Long enough for a loaded machine's swarm to start the tasks and
        // check them at least once (CI once saw none checked within 4 s).
        "12s",
        "ProgressDeadlineExceeded",
        "answered 500",
    )
    .await;
}

async fn a_crashing_revision_is_rolled_back(backend: Backend) {
    // Its replicas exit: it fails fast (with its third exit), long before the deadline.
    assert_rolls_back(
        backend,
        "crashing",
        "WHOAMI_EXIT_CODE: \"3\"",
        "60s",
        "ReplicasExiting",
        "exited with code 3",
    )
    .await;
}

async fn rollout_undo_goes_back_and_forth(backend: Backend) {
    let server = TestServer::start_on(backend, "undo").await;
    server.put_yaml("app", &spec("dubernetes/whoami:v1", 2, "")).await;
    server.wait_converged("app", T).await;
    server
        .put_yaml("app", &spec("dubernetes/whoami:v2", 2, "update: {min_ready: 300ms}\n"))
        .await;
    server.wait_converged("app", T).await;

    let out = server.dubectl(&["rollout", "undo", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.dubectl(&["rollout", "status", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("only v1 containers", T, || async {
        let images: Vec<String> = server.replicas(Some("app")).await.into_iter().map(|c| c.2).collect();
        (images == ["dubernetes/whoami:v1", "dubernetes/whoami:v1"]).then_some(())
    })
    .await;

    let out = server.dubectl(&["rollout", "undo", "app", "--to-revision", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.wait_converged("app", T).await;
    wait_for("only v2 containers", T, || async {
        let images: Vec<String> = server.replicas(Some("app")).await.into_iter().map(|c| c.2).collect();
        (images == ["dubernetes/whoami:v2", "dubernetes/whoami:v2"]).then_some(())
    })
    .await;

    let out = server.dubectl(&["rollout", "undo", "app", "--to-revision", "99"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no revision 99"), "{}", stderr(&out));
}

dubernetes_tests::on_both_backends!(
    image_change_under_load_drops_no_request,
    a_never_ready_revision_is_rolled_back,
    a_crashing_revision_is_rolled_back,
    rollout_undo_goes_back_and_forth,
);

/// Old replicas that ignore SIGTERM take their whole grace period to stop
/// (a shell as PID 1 does that): an old replica that is out of the ingress
/// and stopping must not hold back the next step. Each step of this 3-replica
/// rollout would otherwise wait out a 10 s grace (30 s and more; 9 s
/// measured with the steps overlapping the stops).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_rolling_update_does_not_wait_for_old_replicas_that_ignore_sigterm() {
    let server = TestServer::start("slowstops").await;
    let stubborn = |version: &str| {
        format!(
            "name: app\nimage: dubernetes/whoami:stubborn\nreplicas: 3\naccess: {{host: app.local}}\n\
             health: {{path: /healthz, interval: 200ms, timeout: 500ms}}\nstop_grace_period: 10s\n\
             update: {{min_ready: 2s}}\nenv: {{WHOAMI_IGNORE_SIGTERM: \"1\", V: \"{version}\"}}\n"
        )
    };
    assert_eq!(server.put_yaml("app", &stubborn("1")).await.0, 201);
    server.wait_converged("app", T).await;
    let started = tokio::time::Instant::now();
    let (status, body) = server.put_yaml("app", &stubborn("2")).await;
    assert_eq!(status, 200, "{body}");
    wait_rollout_complete(&server).await;
    let took = started.elapsed();
    eprintln!("3-replica rolling update of SIGTERM-ignoring replicas (grace 10 s): {took:?}");
    // Stepping on each stop would take 3 × 10 s; the steps overlap the stops.
    assert!(
        took < Duration::from_secs(20),
        "the rollout took {took:?}: its steps waited for the old replicas to stop"
    );
    let (_, p) = server.get_json("/v1/pods/app").await;
    assert_eq!(p["status"]["ready_replicas"], 3, "{p}");
    // The stops stay graceful: the old replicas are still in their grace period
    // or gone, never more of them than were replaced.
    server.wait_converged("app", T).await;
}

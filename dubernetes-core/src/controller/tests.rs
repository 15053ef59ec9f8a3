//! The controller against the fake engine (`crate::engine::fake`), on
//! tokio's paused clock: rollouts, surge and availability, fast failure and
//! rollback, the progress deadline, crash-loop back-off, adoption by a new
//! server, drain before stop, and a dying ingress. No Docker; virtual time,
//! so back-offs of seconds and deadlines of minutes take milliseconds.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::fake::{App, FakeEngine};
use crate::spec::UpdateStrategy;
use crate::{Dubernetes, IngressSettings, PodSpec};

const NGINX: &str = "fake/nginx";
const V1: &str = "fake/web:v1";
const V2: &str = "fake/web:v2";
/// Generous in virtual time: nothing here takes this long unless it is broken.
const WAIT: Duration = Duration::from_secs(300);

fn engine() -> FakeEngine {
    let fake = FakeEngine::new();
    fake.image(NGINX, App::nginx())
        .image(V1, App::serving())
        .image(V2, App::serving());
    fake
}

/// Paces tokio's auto-advancing clock. The store's SQLite runs on a thread
/// of its own, so while a query runs the runtime looks idle and a paused
/// clock would jump straight to the next timer (the pool's acquire timeout,
/// a back-off): with a [`PACE`] timer always pending, it moves that much at a
/// time instead, a few ms of virtual time per query.
const PACE: Duration = Duration::from_millis(1);

fn pace_the_clock() {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(PACE).await;
        }
    });
}

async fn start(fake: &FakeEngine, dir: Option<&std::path::Path>) -> Dubernetes {
    pace_the_clock();
    let builder = Dubernetes::builder()
        .instance("fake")
        .ingress(IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address")))
        .drain_period(Duration::from_millis(200))
        .engine(Arc::new(fake.clone()));
    let builder = match dir {
        Some(dir) => builder.data_dir(dir),
        None => builder.in_memory(),
    };
    builder
        .build()
        .await
        .expect("the orchestrator starts on the fake engine")
}

/// An in-memory orchestrator on the fake engine with these ingress settings and resync interval.
async fn start_in_memory(fake: &FakeEngine, ingress: IngressSettings, resync: Duration) -> Dubernetes {
    pace_the_clock();
    Dubernetes::builder()
        .instance("fake")
        .ingress(ingress)
        .resync_interval(resync)
        .engine(Arc::new(fake.clone()))
        .in_memory()
        .build()
        .await
        .expect("the orchestrator starts on the fake engine")
}

fn web(image: &str, replicas: u32, update: UpdateStrategy) -> PodSpec {
    let mut spec = PodSpec::new("web", image)
        .with_replicas(replicas)
        .with_host("web.local");
    spec.update = Some(update);
    spec
}

fn strategy(max_surge: u32, max_unavailable: u32) -> UpdateStrategy {
    // Non-exhaustive (it lives in `dubernetes-api`): set the fields of a default.
    let mut update = UpdateStrategy::default();
    update.max_surge = max_surge;
    update.max_unavailable = max_unavailable;
    update.min_ready = Duration::from_secs(1);
    update
}

/// Waits until the pod is ready and the controller has booked its rollout
/// complete (`wait_ready` can return a moment before that: an apply in
/// between would find no good revision to roll back to).
async fn landed(d: &Dubernetes) -> crate::Pod {
    let pod = d.wait_ready("web", WAIT).await.expect("the pod lands");
    let number = pod.status.revision_number;
    until("the rollout is booked complete", async || {
        let events = d.events(Some("web"), 500).await.expect("events");
        events
            .iter()
            .any(|e| e.reason == "RolloutComplete" && e.message.starts_with(&format!("revision {number} ")))
    })
    .await;
    pod
}

/// Waits (in virtual time) until `done` holds, polling every 10 ms.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn has_event(d: &Dubernetes, reason: &str) -> bool {
    let events = d.events(Some("web"), 500).await.expect("events");
    if std::env::var("FAKE_DEBUG").is_ok() {
        for e in &events {
            eprintln!("{} {} {}", e.reason, e.kind, e.message);
        }
    }
    events.iter().any(|e| e.reason == reason)
}

#[tokio::test(start_paused = true)]
async fn a_rollout_surges_by_one_and_never_drops_below_replicas() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 3, strategy(1, 0))).await.expect("apply v1");
    landed(&d).await;
    assert_eq!(fake.running_revisions("web").len(), 3);
    assert_eq!(fake.routed_now("web"), 3, "all three routed once ready");

    fake.clear_history();
    let v2 = web(V2, 3, strategy(1, 0));
    let revision = v2.revision_hash();
    d.apply(v2).await.expect("apply v2");
    let pod = d.wait_ready("web", WAIT).await.expect("v2 lands");
    assert_eq!(pod.status.revision, revision);
    assert_eq!(fake.running_revisions("web"), vec![revision.clone(); 3]);
    assert_eq!(
        fake.min_routable("web"),
        Some(3),
        "max_unavailable 0: never fewer than 3 routed"
    );
    assert_eq!(
        fake.max_routable("web"),
        Some(4),
        "max_surge 1: at most 4 routed at once"
    );
    assert_eq!(
        fake.stopped_while_routed(),
        0,
        "every old replica left the ingress before its stop"
    );
    assert!(has_event(&d, "RolloutComplete").await);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_stabilization_window_a_step_routes_the_new_replica_and_unroutes_the_old_in_one_write() {
    let fake = engine();
    let d = start(&fake, None).await;
    let mut update = strategy(1, 0);
    update.min_ready = Duration::ZERO;
    d.apply(web(V1, 3, update.clone())).await.expect("apply v1");
    landed(&d).await;
    fake.clear_history();
    let updates = d.diagnostics().ingress_endpoint_updates();
    d.apply(web(V2, 3, update.clone())).await.expect("apply v2");
    d.wait_ready("web", WAIT).await.expect("v2 lands");
    // Each of the 3 steps is one endpoint write that swaps one replica: the
    // routed set never holds 4 (new in first, old out later) nor 2.
    assert_eq!(fake.min_routable("web"), Some(3), "never fewer than 3 routed");
    assert_eq!(
        fake.max_routable("web"),
        Some(3),
        "never 4 routed: in and out in one change"
    );
    assert_eq!(
        d.diagnostics().ingress_endpoint_updates() - updates,
        3,
        "one endpoint write per step"
    );
    assert_eq!(fake.stopped_while_routed(), 0);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn max_unavailable_lets_a_rollout_go_below_replicas_but_no_further() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 4, strategy(0, 2))).await.expect("apply v1");
    landed(&d).await;
    fake.clear_history();
    d.apply(web(V2, 4, strategy(0, 2))).await.expect("apply v2");
    d.wait_ready("web", WAIT).await.expect("v2 lands");
    assert_eq!(
        fake.max_routable("web"),
        Some(4),
        "max_surge 0: never more than 4 routed"
    );
    let min = fake.min_routable("web").expect("history");
    assert!(min >= 2, "max_unavailable 2: at least 2 of 4 routed, saw {min}");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_crashing_revision_fails_fast_and_rolls_back_while_the_old_one_serves() {
    let fake = engine();
    fake.image("fake/web:broken", App::crashing(Duration::from_millis(300), 3));
    let d = start(&fake, None).await;
    let v1 = web(V1, 2, strategy(1, 0));
    let good = v1.revision_hash();
    d.apply(v1).await.expect("apply v1");
    landed(&d).await;
    fake.clear_history();
    let began = tokio::time::Instant::now();
    d.apply(web("fake/web:broken", 2, strategy(1, 0)))
        .await
        .expect("apply broken");
    until("rolled back", async || has_event(&d, "RolledBack").await).await;
    assert!(
        began.elapsed() < UpdateStrategy::default().progress_deadline,
        "max_failures fails the rollout before the progress deadline ({:?})",
        began.elapsed()
    );
    let pod = d.wait_ready("web", WAIT).await.expect("the rolled-back revision lands");
    assert_eq!(pod.status.revision, good);
    assert_eq!(fake.min_routable("web"), Some(2), "the old replicas served throughout");
    let events = d.events(Some("web"), 500).await.expect("events");
    let rolled = events.iter().find(|e| e.reason == "RolledBack").expect("event");
    assert!(rolled.message.contains("exited 3 times"), "{}", rolled.message);
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_revision_that_never_becomes_ready_fails_at_its_progress_deadline() {
    let fake = engine();
    fake.image("fake/web:hangs", App::hanging());
    let d = start(&fake, None).await;
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply v1");
    landed(&d).await;
    let mut hangs = web("fake/web:hangs", 2, strategy(1, 0));
    let deadline = Duration::from_secs(20);
    if let Some(u) = hangs.update.as_mut() {
        u.progress_deadline = deadline;
    }
    let began = tokio::time::Instant::now();
    d.apply(hangs).await.expect("apply hanging");
    until("rolled back", async || has_event(&d, "RolledBack").await).await;
    let took = began.elapsed();
    assert!(took >= deadline, "not before the deadline: {took:?}");
    // (The paced clock lets a few seconds of virtual time pass while SQLite works.)
    assert!(took < deadline * 2, "soon after it: {took:?}");
    let events = d.events(Some("web"), 500).await.expect("events");
    let rolled = events.iter().find(|e| e.reason == "RolledBack").expect("event");
    assert!(rolled.message.contains("made no progress"), "{}", rolled.message);
    d.wait_ready("web", WAIT).await.expect("back on v1");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_backs_off_exponentially() {
    let fake = engine();
    fake.image("fake/web:crash", App::crashing(Duration::from_millis(100), 1));
    let d = start(&fake, None).await;
    d.apply(web("fake/web:crash", 1, strategy(1, 0))).await.expect("apply");
    until("four exits", async || {
        let events = d.events(Some("web"), 500).await.expect("events");
        events.iter().filter(|e| e.reason == "Exited").count() >= 5
    })
    .await;
    let events = d.events(Some("web"), 500).await.expect("events");
    let delays: Vec<String> = events
        .iter()
        .filter(|e| e.reason == "Exited")
        .filter_map(|e| e.message.split("back-off ").nth(1).map(str::to_string))
        .collect();
    assert!(
        delays.starts_with(&["1s".into(), "2s".into(), "4s".into(), "8s".into()]),
        "back-off doubles from 1 s: {delays:?} ({events:?})"
    );
    let pod = d.get("web").await.expect("get");
    assert_eq!(pod.status.reason.as_deref(), Some("CrashLoopBackOff"));
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_server_adopts_what_runs_and_creates_nothing() {
    let fake = engine();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = start(&fake, Some(dir.path())).await;
    d.apply(web(V1, 3, strategy(1, 0))).await.expect("apply");
    d.apply(exposing("db", &["127.0.0.1:15020"])).await.expect("apply db");
    d.wait_ready("web", WAIT).await.expect("lands");
    d.wait_ready("db", WAIT).await.expect("lands");
    until("db's listener runs", async || listeners(&fake).len() == 1).await;
    let listener = listeners(&fake);
    let ids = fake.ids("replica", Some("web"), true);
    let creates = fake.calls("create");
    d.shutdown().await;
    drop(d);

    let again = start(&fake, Some(dir.path())).await;
    let pod = again.wait_ready("web", WAIT).await.expect("adopted");
    assert_eq!(pod.status.ready_replicas, 3);
    again.wait_ready("db", WAIT).await.expect("adopted");
    // Past the new server's first full ingress sync (listeners included).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(listeners(&fake), listener, "the same listener runs");
    let mut now = fake.ids("replica", Some("web"), true);
    now.sort();
    let mut before = ids;
    before.sort();
    assert_eq!(now, before, "the same replicas run");
    assert_eq!(
        fake.calls("create"),
        creates,
        "no container was created (the ingress and the listener adopted too)"
    );
    again.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn scaling_down_drains_before_it_stops() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 3, strategy(1, 0))).await.expect("apply");
    d.wait_ready("web", WAIT).await.expect("lands");
    let stops = fake.calls("stop");
    d.apply(web(V1, 1, strategy(1, 0))).await.expect("scale down");
    d.wait_ready("web", WAIT).await.expect("scaled");
    until("two stopped and removed", async || {
        fake.ids("replica", Some("web"), false).len() == 1
    })
    .await;
    assert_eq!(
        fake.calls("stop") - stops,
        2,
        "each removed replica was stopped gracefully"
    );
    assert_eq!(fake.stopped_while_routed(), 0, "out of the ingress first, then stopped");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dying_ingress_is_replaced_and_routes_again() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply");
    d.wait_ready("web", WAIT).await.expect("lands");
    let ingress = fake.ids("ingress", None, true);
    assert_eq!(ingress.len(), 1);
    fake.crash(&ingress[0], 1);
    until("a new ingress runs", async || {
        let now = fake.ids("ingress", None, true);
        now.len() == 1 && now != ingress
    })
    .await;
    fake.clear_history();
    until("routes are served again", async || {
        d.get("web").await.is_ok_and(|p| p.status.ready_replicas == 2)
    })
    .await;
    assert_eq!(d.diagnostics().ingress_error(), None);
    // Scaling changes only the endpoint files: no `nginx -t`, no reload.
    let reloads = d.diagnostics().ingress_reloads();
    let updates = d.diagnostics().ingress_endpoint_updates();
    d.apply(web(V1, 3, strategy(1, 0))).await.expect("scale up");
    d.wait_ready("web", WAIT).await.expect("scaled up");
    assert_eq!(
        d.diagnostics().ingress_reloads(),
        reloads,
        "no reload for a new replica"
    );
    assert!(d.diagnostics().ingress_endpoint_updates() > updates);
    // A config nginx rejects (a new host) is never made live: the running one stays.
    fake.reject_configs(true);
    let mut api = PodSpec::new("api", V1).with_replicas(1).with_host("api.local");
    api.update = Some(strategy(1, 0));
    d.apply(api).await.expect("apply api");
    until("the rejection is reported", async || {
        d.diagnostics().ingress_error().is_some()
    })
    .await;
    assert_eq!(d.diagnostics().ingress_reloads(), reloads, "nothing was reloaded");
    fake.reject_configs(false);
    d.wait_ready("api", WAIT).await.expect("lands once nginx accepts");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn endpoint_files_go_through_the_archive_api_when_the_ingress_does_not_see_the_directory() {
    let fake = engine();
    // A local engine whose containers never see this process's directory
    // (this server runs in a container of its own): the check fails, and
    // the endpoint files go through the archive API as before.
    fake.claim_local(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let ingress = IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address"))
        .with_endpoints_dir(dir.path().join("endpoints"));
    let d = start_in_memory(&fake, ingress, Duration::from_secs(30)).await;
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply");
    d.wait_ready("web", WAIT).await.expect("lands");
    assert!(
        !d.diagnostics().ingress_endpoints_bound(),
        "the check saw no marker, so nothing is bound"
    );
    assert_eq!(
        fake.routed_now("web"),
        2,
        "routed through files written by the archive API"
    );
    assert!(dir.path().join("endpoints").join(".dubernetes-check").exists());
    assert!(
        !dir.path().join("endpoints").join("web.a").exists(),
        "nothing routes from the unseen directory"
    );
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn endpoint_files_changed_by_hand_are_rewritten_at_the_resync() {
    let fake = engine();
    let ingress = IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address"));
    let d = start_in_memory(&fake, ingress, Duration::from_secs(10)).await;
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply");
    d.wait_ready("web", WAIT).await.expect("lands");
    let ingress = fake.ids("ingress", None, true);
    let updates = d.diagnostics().ingress_endpoint_updates();
    let reloads = d.diagnostics().ingress_reloads();
    for slot in ['a', 'b'] {
        let path = format!("/etc/{}", crate::ingress::endpoints_slot("web", slot));
        assert!(fake.file(&ingress[0], &path).is_some(), "{path} was written");
        fake.overwrite_file(
            &ingress[0],
            &path,
            b"dubernetes-endpoints 1 99999999999999999\nend 99999999999999999\n",
        );
    }
    assert_eq!(fake.routed_now("web"), 0, "the edit routes to nothing");
    until("the resync rewrites the files", async || fake.routed_now("web") == 2).await;
    assert!(d.diagnostics().ingress_endpoint_updates() > updates);
    assert_eq!(
        d.diagnostics().ingress_reloads(),
        reloads,
        "endpoint files only: no reload"
    );
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_route_nginx_rejects_is_left_out_and_the_others_still_change() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 1, strategy(1, 0))).await.expect("apply web");
    landed(&d).await;
    fake.reject_host(Some("bad.local"));
    let mut bad = PodSpec::new("bad", V1).with_replicas(1).with_host("bad.local");
    bad.update = Some(strategy(1, 0));
    d.apply(bad).await.expect("apply bad");
    until("bad is reported as IngressRejected", async || {
        d.get("bad")
            .await
            .is_ok_and(|p| p.status.reason.as_deref() == Some("IngressRejected"))
    })
    .await;
    assert_eq!(d.diagnostics().ingress_rejections().keys().collect::<Vec<_>>(), ["bad"]);
    // The other pod's replica changes go on, by endpoint files only.
    let reloads = d.diagnostics().ingress_reloads();
    d.apply(web(V1, 3, strategy(1, 0))).await.expect("scale web");
    until("web scaled and routed", async || {
        d.get("web").await.is_ok_and(|p| p.status.ready_replicas == 3)
    })
    .await;
    assert_eq!(fake.max_routable("bad"), Some(0), "bad was never routed");
    assert_eq!(
        d.diagnostics().ingress_reloads(),
        reloads,
        "a replica change reloaded nginx"
    );
    // Once nginx accepts it (the next resync tries again), bad is routed.
    fake.reject_host(None);
    d.wait_ready("bad", WAIT)
        .await
        .expect("bad lands once nginx accepts it");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_replica_killed_from_outside_is_replaced_at_once_and_is_no_crash() {
    let fake = engine();
    pace_the_clock();
    // A back-off far longer than the bound below, so that "replaced at once"
    // cannot pass through a back-off, while the bound leaves room for a
    // slow machine (the paced clock moves while SQLite's thread works).
    let backoff = crate::controller::BackoffSettings {
        initial: Duration::from_secs(60),
        max: Duration::from_secs(120),
        reset_after: Duration::from_secs(600),
    };
    let d = Dubernetes::builder()
        .instance("fake")
        .ingress(IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address")))
        .drain_period(Duration::from_millis(200))
        .backoff(backoff)
        .engine(Arc::new(fake.clone()))
        .in_memory()
        .build()
        .await
        .expect("the orchestrator starts on the fake engine");
    d.apply(web(V1, 2, strategy(1, 0))).await.expect("apply");
    landed(&d).await;
    let victim = fake.ids("replica", Some("web"), true)[0].clone();
    let began = tokio::time::Instant::now();
    fake.kill(&victim);
    until("replaced", async || {
        let now = fake.ids("replica", Some("web"), true);
        now.len() == 2 && !now.contains(&victim)
    })
    .await;
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "no back-off: {:?}",
        began.elapsed()
    );
    let events = d.events(Some("web"), 500).await.expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Killed" && e.message.contains("signal 9")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e.reason == "Exited"),
        "a kill is not a crash: {events:?}"
    );
    d.shutdown().await;
}

/// Waits until the controller has booked revision `number`'s rollout complete.
async fn rolled_out(d: &Dubernetes, number: i64) {
    until("the rollout is booked complete", async || {
        let events = d.events(Some("web"), 500).await.expect("events");
        events
            .iter()
            .any(|e| e.reason == "RolloutComplete" && e.message.starts_with(&format!("revision {number} ")))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn old_replicas_that_ignore_sigterm_do_not_hold_back_the_next_step_up_to_a_bound() {
    const V3: &str = "fake/web:v3";
    let fake = FakeEngine::new();
    fake.image(NGINX, App::nginx())
        .image(V1, App::stubborn())
        .image(V2, App::stubborn())
        .image(V3, App::stubborn());
    let d = start(&fake, None).await;
    let grace = Duration::from_secs(60);
    let stubborn = |image: &str| {
        let mut spec = web(image, 3, strategy(1, 0));
        spec.stop_grace_period = Some(grace);
        spec
    };
    d.apply(stubborn(V1)).await.expect("apply v1");
    landed(&d).await;

    // Each old replica waits out its whole grace period: the steps go on meanwhile.
    let t0 = tokio::time::Instant::now();
    d.apply(stubborn(V2)).await.expect("apply v2");
    rolled_out(&d, 2).await;
    let took = t0.elapsed();
    assert!(took < grace / 2, "the rollout waited for a stop: {took:?}");
    until("the three old replicas to be stopping at once", async || {
        fake.stopping().0 == 3
    })
    .await;
    assert!(t0.elapsed() < grace, "all three stops overlap");
    assert_eq!(fake.stopped_while_routed(), 0, "each left the ingress before its stop");

    // At once another rollout: three are stopping already, the bound (replicas):
    // its new replica starts, but no v2 replica is taken out until v1's are gone.
    let t1 = tokio::time::Instant::now();
    d.apply(stubborn(V3)).await.expect("apply v3");
    rolled_out(&d, 3).await;
    let (_, max) = fake.stopping();
    assert_eq!(max, 3, "never more than `replicas` stopping at once");
    assert!(
        t1.elapsed() + took >= grace,
        "the second rollout waited for the first one's stops: {:?}",
        t1.elapsed()
    );
    assert_eq!(fake.stopped_while_routed(), 0);
    d.wait_ready("web", WAIT)
        .await
        .expect("v3 lands with the old replicas gone");
    d.shutdown().await;
}

/// The instance's TCP listener containers (running), by the address they publish.
fn listeners(fake: &FakeEngine) -> std::collections::BTreeMap<String, String> {
    fake.ids(crate::ingress::ROLE_LISTENER, None, true)
        .into_iter()
        .filter_map(|id| Some((fake.label(&id, "io.dubernetes.listen")?, id)))
        .collect()
}

fn exposing(name: &str, listens: &[&str]) -> PodSpec {
    listens.iter().fold(PodSpec::new(name, V1).with_replicas(1), |spec, l| {
        spec.with_expose(crate::spec::Expose::new(80, *l))
    })
}

#[tokio::test(start_paused = true)]
async fn an_expose_change_replaces_only_its_own_listener() {
    let fake = engine();
    let d = start(&fake, None).await;
    d.apply(web(V1, 1, strategy(1, 0))).await.expect("apply web");
    d.apply(exposing("a", &["127.0.0.1:15001"])).await.expect("apply a");
    d.apply(exposing("b", &["127.0.0.1:15002"])).await.expect("apply b");
    for pod in ["web", "a", "b"] {
        d.wait_ready(pod, WAIT).await.expect("lands");
    }
    until("both listeners run", async || listeners(&fake).len() == 2).await;
    let ingress = fake.ids("ingress", None, true);
    let a = listeners(&fake)["127.0.0.1:15001"].clone();
    let reloads = d.diagnostics().ingress_reloads();
    // b moves, then gets a second entry, then none.
    for (step, want) in [
        (vec!["127.0.0.1:15003"], vec!["127.0.0.1:15001", "127.0.0.1:15003"]),
        (
            vec!["127.0.0.1:15003", "[::1]:15004"],
            vec!["127.0.0.1:15001", "127.0.0.1:15003", "[::1]:15004"],
        ),
        (vec![], vec!["127.0.0.1:15001"]),
    ] {
        let mut spec = exposing("b", &step);
        spec.replicas = 1;
        d.apply(spec).await.expect("apply b");
        until(&format!("b's listeners are {step:?}"), async || {
            listeners(&fake).keys().map(String::as_str).collect::<Vec<_>>() == want
        })
        .await;
        assert_eq!(
            fake.ids("ingress", None, true),
            ingress,
            "the HTTP ingress was replaced"
        );
        assert_eq!(listeners(&fake)["127.0.0.1:15001"], a, "a's listener was replaced");
    }
    assert_eq!(d.diagnostics().ingress_reloads(), reloads, "nginx reloaded");
    // a's replicas are in its listener's endpoint files.
    let a_replica = fake.ids("replica", Some("a"), true);
    assert_eq!(a_replica.len(), 1);
    let files: Vec<String> = ['a', 'b']
        .iter()
        .filter_map(|slot| fake.file(&a, &format!("/etc/dubernetes/endpoints/tcp_15001.{slot}")))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    let servers = crate::ingress::latest_endpoints(files.iter().map(String::as_str)).expect("a complete file");
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert!(servers[0].ends_with(":80"), "{servers:?}");
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_listener_that_cannot_start_is_reported_and_retried() {
    let fake = engine();
    let d = start(&fake, None).await;
    fake.take_port(15010, true);
    d.apply(exposing("db", &["127.0.0.1:15010"])).await.expect("apply");
    until("ListenerFailed", async || {
        d.get("db")
            .await
            .is_ok_and(|p| p.status.reason.as_deref() == Some("ListenerFailed"))
    })
    .await;
    let pod = d.get("db").await.expect("db");
    assert!(
        pod.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("127.0.0.1:15010") && m.contains("address already in use")),
        "{:?}",
        pod.status.message
    );
    // Tried again with back-off (1 s, 2 s, 4 s, ...), one event for all tries.
    let starts = fake.calls("start");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tries = fake.calls("start") - starts;
    assert!((2..=5).contains(&tries), "{tries} tries in 8 s");
    let failed = d.events(Some("db"), 500).await.expect("events");
    assert_eq!(failed.iter().filter(|e| e.reason == "ListenerFailed").count(), 1);
    assert!(listeners(&fake).is_empty());
    fake.take_port(15010, false);
    until("the listener runs", async || listeners(&fake).len() == 1).await;
    until("the status clears", async || {
        d.get("db").await.is_ok_and(|p| p.status.reason.is_none())
    })
    .await;
    let events = d.events(Some("db"), 500).await.expect("events");
    assert!(events.iter().any(|e| e.reason == "ListenerStarted"), "{events:?}");
    // A listener container that dies is replaced.
    let id = listeners(&fake)["127.0.0.1:15010"].clone();
    fake.crash(&id, 1);
    until("a new listener runs", async || {
        listeners(&fake).get("127.0.0.1:15010").is_some_and(|now| *now != id)
    })
    .await;
    d.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn listener_endpoint_files_changed_by_hand_are_rewritten_at_the_resync() {
    let fake = engine();
    let ingress = IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address"));
    let d = start_in_memory(&fake, ingress, Duration::from_secs(10)).await;
    d.apply(exposing("db", &["127.0.0.1:15030"])).await.expect("apply");
    d.wait_ready("db", WAIT).await.expect("lands");
    until("db's listener runs", async || listeners(&fake).len() == 1).await;
    let id = listeners(&fake)["127.0.0.1:15030"].clone();
    let read = || {
        let slots: Vec<String> = ['a', 'b']
            .iter()
            .filter_map(|slot| fake.file(&id, &format!("/etc/dubernetes/endpoints/tcp_15030.{slot}")))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        crate::ingress::latest_endpoints(slots.iter().map(String::as_str))
    };
    until("the replica is in the listener's files", async || {
        read().is_some_and(|s| s.len() == 1)
    })
    .await;
    for slot in ['a', 'b'] {
        let path = format!("/etc/dubernetes/endpoints/tcp_15030.{slot}");
        fake.overwrite_file(&id, &path, b"changed by hand\n");
    }
    assert_eq!(read(), None, "changed by hand");
    until("the resync rewrites them", async || {
        read().is_some_and(|s| s.len() == 1)
    })
    .await;
    assert_eq!(listeners(&fake)["127.0.0.1:15030"], id, "the same container");
    d.shutdown().await;
}

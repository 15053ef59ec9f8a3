//! Two servers on one real PostgreSQL, acting on one fake engine: who
//! leads, what a standby shows and accepts, takeover, and fencing. Real
//! time (the database is real); the deadlines are generous.

use std::time::Duration;

use dubernetes_core::pg_cluster::PgCluster;
use dubernetes_core::test_internals::{self, App, FakeEngine, HEARTBEAT, LEADER_LOCK, SESSION_TIMEOUT};
use dubernetes_core::{Dubernetes, IngressSettings, PodSpec};

const NGINX: &str = "fake/nginx";
const V1: &str = "fake/web:v1";
const WAIT: Duration = Duration::from_secs(30);

fn engine() -> FakeEngine {
    let fake = FakeEngine::new();
    fake.image(NGINX, App::nginx()).image(V1, App::serving());
    fake
}

async fn server(fake: &FakeEngine, url: &str) -> Dubernetes {
    test_internals::on_fake_engine(Dubernetes::builder(), fake)
        .instance("fake")
        .ingress(IngressSettings::new(NGINX, "127.0.0.1:0".parse().expect("address")))
        .drain_period(Duration::from_millis(100))
        .postgres(url)
        .build()
        .await
        .expect("a server starts on the shared store")
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_a_standby_serves_writes_and_takes_over() {
    let url = PgCluster::shared().new_database().await;
    let fake = engine();
    let a = server(&fake, &url).await;
    until("a to lead", || a.is_leader()).await;
    let b = server(&fake, &url).await;
    // b had every chance to take the lock by the time a confirmed it twice.
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert!(a.is_leader() && !b.is_leader(), "exactly one leader");
    assert_eq!(b.store_id(), a.store_id(), "one store, one id");

    // A write through the standby is acted on by the leader, and the standby
    // shows the leader's view.
    b.apply(PodSpec::new("web", V1).with_replicas(3))
        .await
        .expect("apply via b");
    let pod = b.wait_ready("web", WAIT).await.expect("ready, as b shows it");
    assert_eq!(pod.status.ready_replicas, 3);
    assert_eq!(fake.ids("replica", Some("web"), true).len(), 3);

    // The leader goes: b leads, and a scale through it is acted on, from what
    // the engine shows (the 3 replicas are adopted, not duplicated).
    a.shutdown().await;
    until("b to lead", || b.is_leader()).await;
    b.scale("web", 5).await.expect("scale via b");
    b.wait_ready("web", WAIT).await.expect("5 ready");
    assert_eq!(fake.ids("replica", Some("web"), true).len(), 5, "no duplicate replicas");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_session_dies_stops_acting_and_another_takes_over() {
    use sqlx::Connection as _;
    let url = PgCluster::shared().new_database().await;
    let fake = engine();
    let a = server(&fake, &url).await;
    until("a to lead", || a.is_leader()).await;
    let b = server(&fake, &url).await;
    a.apply(PodSpec::new("web", V1).with_replicas(2)).await.expect("apply");
    a.wait_ready("web", WAIT).await.expect("ready");
    let mut a_leads = test_internals::leader_changes(&a);
    // The database ends a's lock session (as when it stops hearing from a).
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("admin");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND objid = $1",
    )
    .bind(i64::from(LEADER_LOCK as u32))
    .fetch_all(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(killed, [true], "one lock session");
    tokio::time::timeout(WAIT, a_leads.wait_for(|leads| !*leads))
        .await
        .expect("a stops leading in time")
        .expect("a's leadership is watched");
    until("someone to lead again", || a.is_leader() || b.is_leader()).await;
    // Whoever leads now acts; the replicas are the same two.
    let leader = if a.is_leader() { &a } else { &b };
    leader.scale("web", 3).await.expect("scale");
    leader.wait_ready("web", WAIT).await.expect("3 ready");
    assert_eq!(fake.ids("replica", Some("web"), true).len(), 3, "no duplicate replicas");
    a.shutdown().await;
    b.shutdown().await;
}

/// The lock connection's session carries the settings that keep the
/// database from freeing the lock sooner than `SESSION_TIMEOUT` after the
/// leader went silent, whatever the server's own configuration (the
/// partition test, tests/tests/partition.rs, runs a server with ~2 s
/// keepalives against it).
#[tokio::test]
async fn the_lock_session_waits_session_timeout_before_the_database_gives_up_on_it() {
    let url = PgCluster::shared().new_database().await;
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a URL");
    let mut conn = test_internals::lock_connection(&options)
        .await
        .expect("the lock connection");
    let show = |name: &'static str| format!("SELECT current_setting('{name}')");
    let mut got = Vec::new();
    for name in [
        "idle_session_timeout",
        "tcp_keepalives_idle",
        "tcp_keepalives_interval",
        "tcp_keepalives_count",
        "tcp_user_timeout",
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(show(name)))
            .fetch_one(&mut conn)
            .await
            .expect("a setting");
        got.push((name, value));
    }
    let session = SESSION_TIMEOUT.as_secs();
    assert_eq!(
        got,
        [
            ("idle_session_timeout", format!("{session}s")),
            ("tcp_keepalives_idle", format!("{session}")),
            ("tcp_keepalives_interval", "1".to_string()),
            ("tcp_keepalives_count", "1".to_string()),
            // Milliseconds, shown without a unit.
            ("tcp_user_timeout", SESSION_TIMEOUT.as_millis().to_string()),
        ]
    );
}

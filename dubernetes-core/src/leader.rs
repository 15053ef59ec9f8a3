//! Several servers, one PostgreSQL store: who leads, and how every server
//! learns of what the others did.
//!
//! **Leadership** is a session-level advisory lock (`pg_try_advisory_lock`)
//! held on a connection of its own. We chose the lock over a lease row:
//! PostgreSQL itself frees it the moment the holder's session ends (a
//! `kill -9` closes the socket: the standby takes over within one poll),
//! there is no clock to compare across machines and no row to renew.
//!
//! **Fencing.** The leader confirms its session every [`HEARTBEAT`] (a
//! `SELECT 1` bounded by [`CONFIRM_TIMEOUT`]). A failed confirmation (the
//! session is gone) ends the term at once; when confirmations only time out
//! (the database is unreachable), the term ends once [`FENCE_AFTER`] has
//! passed since the last one. Ending a term cancels the fence of its runtime
//! first, so no engine call of the term is sent after it (see
//! [`crate::owned_engine::Runtime::fenced`]). The lock connection sets
//! `idle_session_timeout` to [`SESSION_TIMEOUT`]: a session that sends
//! nothing for that long is ended by the server, which frees the lock; and
//! its TCP keepalive and user timeout so that the server's kernel does not
//! declare the peer dead sooner (see [`lock_session_settings`]). The
//! bound: the leader stops acting at most `FENCE_AFTER + CONFIRM_TIMEOUT +
//! HEARTBEAT` (3.5 s) after its last confirmed heartbeat; the server frees the
//! lock no earlier than `SESSION_TIMEOUT - CONFIRM_TIMEOUT` (5 s) after it.
//! So a leader cut off from the database has stopped acting before another
//! can be given the lock. A new leader builds a fresh controller context: it
//! starts from what the engine shows (labels, adoption), never from what the
//! old one meant to do.
//!
//! **Notifications.** Every write of the store sends a `NOTIFY` (see
//! [`crate::store::postgres`]); each server listens: the leader wakes the pod
//! written through another server, every server's change feed re-reads it.
//! A listener that lost its connection may have missed some: it refreshes
//! everything when it is back.
//!
//! **Views.** Only the leader observes the engine; it publishes each pod's
//! view (status and replicas) when it changes, and standbys show it.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::change::Change;
use crate::error::{Error, Result};
use crate::store::postgres::{CHANNEL, LEADER, PgStore};
use dubernetes_api::Pod;

/// What the leader code needs of its server, and nothing more: its terms
/// (begin, end, whether it leads), its change broadcast, the wakes of the
/// current term's controller and the pods' views to publish. The facade
/// implements it (`orchestrator/terms.rs`), so this module does not import
/// the facade that starts it.
pub(crate) trait Terms: Send + Sync {
    /// The instance's name (for the log).
    fn instance(&self) -> &str;
    /// Becomes the leader: a fresh controller context for the new term.
    fn begin_term(&self) -> impl Future<Output = ()> + Send;
    /// Stops leading: the term is fenced, then stopped within `wait`.
    fn end_term(&self, wait: Duration) -> impl Future<Output = ()> + Send;
    /// Whether this server leads now.
    fn leading(&self) -> bool;
    /// Tells of every change of [`Terms::leading`].
    fn leader_changes(&self) -> tokio::sync::watch::Receiver<bool>;
    /// Tells this server's watchers (the change feed) that something changed.
    fn notify(&self, change: Change);
    /// The current term's controller looks at every pod again.
    fn resync(&self) -> impl Future<Output = ()> + Send;
    /// A pod's spec was written through another server: the current term
    /// wakes its reconcile, the ingress sync and ACME.
    fn spec_written(&self, pod: &str);
    /// A certificate was written through another server: the current term
    /// wakes the ingress sync.
    fn certificate_written(&self);
    /// Every pod's view.
    fn list(&self) -> impl Future<Output = Result<Vec<Pod>>> + Send;
    /// One pod's view.
    fn get(&self, name: &str) -> impl Future<Output = Result<Pod>> + Send;
}

/// How often the leader confirms its lock, and a standby tries to take it.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// Longest wait for one confirmation.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// A leader that could not confirm its lock for this long stops acting.
pub const FENCE_AFTER: Duration = Duration::from_secs(2);

/// The lock connection's `idle_session_timeout`: the database frees the lock
/// of a leader it has not heard from for this long.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

// The fencing argument (module docs): a cut-off leader stops acting before
// the database can free its lock. Checked at compile time, so a change of
// one of these constants cannot break it unnoticed.
const _: () = assert!(
    FENCE_AFTER.as_millis() + CONFIRM_TIMEOUT.as_millis() + HEARTBEAT.as_millis()
        < SESSION_TIMEOUT.as_millis() - CONFIRM_TIMEOUT.as_millis()
);

/// Longest wait for the tasks of an ended term to stop (they are fenced already).
const TERM_STOP: Duration = Duration::from_secs(10);

/// Pause before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Sleeps `d`, or returns false at shutdown.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The settings of the lock connection's session (sent at connect, as
/// `-c` options). `idle_session_timeout` frees the lock of a leader the
/// database has not heard from for [`SESSION_TIMEOUT`]. The TCP settings
/// keep the database's own detection of a dead peer from freeing it
/// *sooner* than that (a server configured with fast keepalives, or a
/// `tcp_user_timeout`, would otherwise end the session of a cut-off leader
/// in about 2 s, before its fence): no keepalive probe before
/// [`SESSION_TIMEOUT`] of silence, and no giving up on unacknowledged data
/// before it either. Over a Unix socket the database ignores them.
fn lock_session_settings() -> [(&'static str, String); 5] {
    [
        ("idle_session_timeout", format!("{}ms", SESSION_TIMEOUT.as_millis())),
        // Whole seconds, rounded up: never sooner than the session timeout.
        (
            "tcp_keepalives_idle",
            SESSION_TIMEOUT.as_millis().div_ceil(1000).to_string(),
        ),
        ("tcp_keepalives_interval", "1".to_string()),
        ("tcp_keepalives_count", "1".to_string()),
        ("tcp_user_timeout", SESSION_TIMEOUT.as_millis().to_string()),
    ]
}

pub(crate) async fn lock_connection(options: &PgConnectOptions) -> std::result::Result<PgConnection, sqlx::Error> {
    let settings = lock_session_settings();
    let options = options
        .clone()
        .options(settings.iter().map(|(name, value)| (*name, value.as_str())));
    match tokio::time::timeout(CONFIRM_TIMEOUT * 5, PgConnection::connect_with(&options)).await {
        Ok(conn) => conn,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// Contends for leadership until shutdown: standby until the lock is taken,
/// then leader until it cannot be confirmed, then standby again.
pub(crate) async fn lead(server: impl Terms, options: PgConnectOptions, shutdown: CancellationToken) {
    loop {
        let mut conn = match lock_connection(&options).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "leadership: cannot connect to the store; standing by");
                if !pause(&shutdown, RETRY).await {
                    return;
                }
                continue;
            }
        };
        // Standby: try the lock every heartbeat.
        let acquired = loop {
            let attempt = tokio::time::timeout(
                CONFIRM_TIMEOUT,
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER)
                    .fetch_one(&mut conn),
            )
            .await;
            match attempt {
                Ok(Ok(true)) => break true,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leadership: the lock connection failed");
                    break false;
                }
                Err(_) => break false,
            }
            if !pause(&shutdown, HEARTBEAT).await {
                return;
            }
        };
        if !acquired {
            drop(conn);
            if !pause(&shutdown, RETRY).await {
                return;
            }
            continue;
        }
        tracing::info!(instance = %server.instance(), "this server leads the instance now; it acts on the engine");
        server.begin_term().await;
        let mut confirmed = Instant::now();
        loop {
            if !pause(&shutdown, HEARTBEAT).await {
                // Shutdown: the facade stops the controller, then this
                // connection (and the lock) goes when the task ends.
                return;
            }
            let check = tokio::time::timeout(
                CONFIRM_TIMEOUT,
                sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn),
            )
            .await;
            let lost = match check {
                Ok(Ok(_)) => {
                    confirmed = Instant::now();
                    false
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leadership: the lock's session is gone");
                    true
                }
                Err(_) => confirmed.elapsed() >= FENCE_AFTER,
            };
            if lost {
                tracing::warn!(
                    instance = %server.instance(),
                    "this server lost its leader lock: it stops acting on the engine and stands by"
                );
                server.end_term(TERM_STOP).await;
                break;
            }
        }
        drop(conn);
        // Contend again after a pause: another server gets the first chance.
        if !pause(&shutdown, RETRY).await {
            return;
        }
    }
}

/// Listens to the store's notifications until shutdown: wakes the leader's
/// controller for writes made through other servers, and every server's feed.
pub(crate) async fn listen(server: impl Terms, store: PgStore, shutdown: CancellationToken) {
    let mut listener = loop {
        let connected = async {
            let mut l = PgListener::connect_with(store.pool()).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match connected.await {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(error = %e, "store notifications: cannot listen; retrying");
                if !pause(&shutdown, RETRY).await {
                    return;
                }
            }
        }
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = listener.try_recv() => next,
        };
        match next {
            Ok(Some(n)) => on_notice(&server, n.payload()),
            Ok(None) => {
                // The connection was lost: notices may be missing. Refresh all.
                tracing::info!("store notifications: reconnected; refreshing every pod");
                server.notify(Change::Ingress);
                if server.leading() {
                    server.resync().await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "store notifications: the store is unreachable");
                if !pause(&shutdown, RETRY).await {
                    return;
                }
            }
        }
    }
}

fn on_notice(server: &impl Terms, payload: &str) {
    let Some((what, pod)) = payload.split_once(':') else {
        return;
    };
    let change = Change::Pod { name: pod.to_string() };
    match what {
        "spec" => {
            server.notify(change);
            if server.leading() {
                server.spec_written(pod);
            }
        }
        "certificate" if server.leading() => server.certificate_written(),
        "event" => server.notify(change),
        "view" if !server.leading() => server.notify(change),
        _ => {}
    }
}

/// While this server leads, publishes each pod's view when it changes, for
/// the standbys (they do not observe the engine).
pub(crate) async fn publish_views(
    server: impl Terms,
    store: PgStore,
    mut changes: broadcast::Receiver<Change>,
    shutdown: CancellationToken,
) {
    let mut last: HashMap<String, String> = HashMap::new();
    let mut leader = server.leader_changes();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = leader.changed() => {
                // A new term publishes everything afresh.
                last.clear();
                None
            }
            change = changes.recv() => match change {
                Ok(Change::Pod { name }) => Some(name),
                Ok(Change::Ingress) | Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !server.leading() {
            continue;
        }
        let mut names: Vec<String> = first.into_iter().collect();
        let mut all = names.is_empty();
        while let Ok(more) = changes.try_recv() {
            match more {
                Change::Pod { name } if !names.contains(&name) => names.push(name),
                Change::Pod { .. } => {}
                _ => all = true,
            }
        }
        if all {
            match server.list().await {
                Ok(pods) => {
                    names = pods.iter().map(|p| p.name.clone()).collect();
                    for gone in last.keys().filter(|k| !names.contains(k)).cloned().collect::<Vec<_>>() {
                        names.push(gone);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "publishing views: listing pods failed");
                    continue;
                }
            }
        }
        for name in names {
            publish_one(&server, &store, &mut last, &name).await;
        }
    }
}

async fn publish_one(server: &impl Terms, store: &PgStore, last: &mut HashMap<String, String>, name: &str) {
    let view = server.get(name).await;
    // Only a leader's views are published: a term that ended while this
    // batch ran would otherwise publish a standby's view (no probes, every
    // replica unready), which can land once the database is back, just
    // before the next term reads it to inherit readiness, and route nothing.
    if !server.leading() {
        return;
    }
    match view {
        Ok(pod) => {
            // The engine's status text ("Up 3 seconds") changes by itself.
            let mut key = pod.clone();
            for r in &mut key.replicas {
                r.status.clear();
            }
            let (Ok(key), Ok(json)) = (serde_json::to_string(&key), serde_json::to_string(&pod)) else {
                return;
            };
            if last.get(name) == Some(&key) {
                return;
            }
            match store.publish_view(name, &json).await {
                Ok(()) => {
                    last.insert(name.to_string(), key);
                }
                Err(e) => tracing::debug!(pod = name, error = %e, "publishing a view failed"),
            }
        }
        Err(Error::NotFound(_)) => {
            if store.forget_view(name).await.is_ok() {
                last.remove(name);
            }
        }
        Err(e) => tracing::debug!(pod = name, error = %e, "publishing a view: reading the pod failed"),
    }
}

// Its tests need a real PostgreSQL: tests/postgres/leadership.rs.

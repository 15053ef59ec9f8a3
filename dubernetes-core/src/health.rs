//! Readiness checks: one small task per running replica, checking the
//! replica's address on the instance network: an HTTP GET of `path`, or a
//! TCP connect (the default when a pod has no `health` block). A replica
//! becomes ready after `healthy_after` successes in a row and stops being
//! ready after `unhealthy_after` failures in a row; every flip calls back (the
//! controller wakes the pod and the ingress). The first check fires as soon
//! as the replica is seen running; until its first success a replica is
//! checked every [`STARTUP_POLL`] for [`STARTUP_FAST`], then less often
//! (doubling up to `interval`), so a replacement starts serving within a few
//! ms of listening (the app leads), not an interval later.
//! `type: none` has no task: a running replica is ready from the moment the
//! check is set up.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::Network;
use crate::spec::{CheckKind, HealthCheck};
use crate::sync::lock;

/// How often a replica that has never passed is re-checked at first.
const STARTUP_POLL: Duration = Duration::from_millis(15);

/// How long a replica that has never passed is checked every [`STARTUP_POLL`]
/// (most apps listen within this); then the pause doubles up to `interval`.
const STARTUP_FAST: Duration = Duration::from_secs(2);

/// What the checks of one replica say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeState {
    pub ready: bool,
    pub successes: u32,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Since when it has been ready without a break (None while not ready).
    pub ready_since: Option<Instant>,
}

struct Entry {
    pod: String,
    key: String,
    cancel: CancellationToken,
    state: Arc<Mutex<ProbeState>>,
}

/// The running checks, by container id.
pub(crate) struct Health {
    entries: Mutex<HashMap<String, Entry>>,
    /// How replicas are reached (the host's sockets for a real engine).
    network: Arc<dyn Network>,
}

/// A replica to check.
pub(crate) struct Target {
    pub id: String,
    pub ip: IpAddr,
    pub port: u16,
}

impl Health {
    /// No checks yet; checks reach replicas through `network`.
    pub(crate) fn new(network: Arc<dyn Network>) -> Health {
        Health {
            entries: Mutex::new(HashMap::new()),
            network,
        }
    }

    /// Makes the running checks of `pod` exactly one per target (restarting
    /// those whose check or address changed); stops the others.
    #[allow(clippy::too_many_arguments)] // Each is a distinct input; a struct would only rename them.
    pub(crate) fn sync(
        &self,
        pod: &str,
        check: Option<&HealthCheck>,
        host: &str,
        targets: &[Target],
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) {
        let mut entries = lock(&self.entries);
        let wanted: HashMap<&str, (&Target, String)> = match check {
            Some(check) => targets
                .iter()
                .map(|t| (t.id.as_str(), (t, format!("{}|{}|{check:?}", t.ip, t.port))))
                .collect(),
            None => HashMap::new(),
        };
        // A replica whose check changed (a new `health` block) keeps its
        // readiness until the new check says otherwise: a config change must
        // not make every replica look unready at once.
        let mut previous: HashMap<String, ProbeState> = HashMap::new();
        entries.retain(|id, entry| {
            let keep = entry.pod != pod || wanted.get(id.as_str()).is_some_and(|(_, key)| *key == entry.key);
            if !keep {
                entry.cancel.cancel();
                if wanted.contains_key(id.as_str()) {
                    let s = lock(&entry.state);
                    previous.insert(
                        id.clone(),
                        ProbeState {
                            ready: s.ready,
                            ready_since: s.ready_since,
                            ..ProbeState::default()
                        },
                    );
                }
            }
            keep
        });
        let Some(check) = check else { return };
        for (id, (target, key)) in wanted {
            if entries.contains_key(id) {
                continue;
            }
            let cancel = shutdown.child_token();
            let before = previous.remove(id).unwrap_or_default();
            if check.kind == CheckKind::None {
                let state = ProbeState {
                    ready: true,
                    ready_since: before.ready_since.or_else(|| Some(Instant::now())),
                    ..ProbeState::default()
                };
                entries.insert(
                    id.to_string(),
                    Entry {
                        pod: pod.to_string(),
                        key,
                        cancel,
                        state: Arc::new(Mutex::new(state)),
                    },
                );
                continue;
            }
            let state = Arc::new(Mutex::new(before));
            let port = check.port.unwrap_or(target.port);
            let addr = SocketAddr::new(target.ip, port);
            tasks.spawn(run(
                Arc::clone(&self.network),
                addr,
                check.clone(),
                host.to_string(),
                cancel.clone(),
                Arc::clone(&state),
                Arc::clone(&on_change),
            ));
            entries.insert(
                id.to_string(),
                Entry {
                    pod: pod.to_string(),
                    key,
                    cancel,
                    state,
                },
            );
        }
    }

    /// Stops every check of a pod.
    pub(crate) fn forget_pod(&self, pod: &str) {
        lock(&self.entries).retain(|_, entry| {
            if entry.pod == pod {
                entry.cancel.cancel();
            }
            entry.pod != pod
        });
    }

    /// The state of a replica's checks; None when it has none.
    pub(crate) fn state(&self, id: &str) -> Option<ProbeState> {
        lock(&self.entries).get(id).map(|e| lock(&e.state).clone())
    }
}

async fn run(
    network: Arc<dyn Network>,
    addr: SocketAddr,
    check: HealthCheck,
    host: String,
    cancel: CancellationToken,
    state: Arc<Mutex<ProbeState>>,
    on_change: Arc<dyn Fn() + Send + Sync>,
) {
    let mut pause = Duration::ZERO;
    let mut seen_success = false;
    let began = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        let started = Instant::now();
        let outcome = check_once(network.as_ref(), addr, &check, &host).await;
        seen_success |= outcome.is_ok();
        let flipped = record(&mut lock(&state), &check, outcome, Instant::now());
        if flipped {
            on_change();
        }
        // Until the first success, poll fast (a replica that is starting is
        // usually ready within a few hundred ms); then the check's interval.
        let cadence = if seen_success {
            check.interval
        } else if began.elapsed() < STARTUP_FAST {
            STARTUP_POLL.min(check.interval)
        } else {
            pause.saturating_mul(2).max(STARTUP_POLL).min(check.interval)
        };
        pause = cadence.saturating_sub(started.elapsed());
    }
}

/// One check of one replica.
async fn check_once(network: &dyn Network, addr: SocketAddr, check: &HealthCheck, host: &str) -> Result<(), String> {
    match check.kind {
        CheckKind::Http => match network.http_get(addr, &check.path, host, check.timeout).await {
            Ok((status, _)) if (200..400).contains(&status) => Ok(()),
            Ok((status, _)) => Err(format!("GET {} on {addr} answered {status}", check.path)),
            Err(e) => Err(format!("GET {} on {addr} failed: {e}", check.path)),
        },
        CheckKind::Tcp => match network.tcp_connect(addr, check.timeout).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(format!("TCP connect to {addr}: no answer within {:?}", check.timeout))
            }
            Err(e) => Err(format!("TCP connect to {addr} failed: {e}")),
        },
        CheckKind::None => Ok(()),
    }
}

/// Applies one check's outcome; returns whether readiness flipped.
fn record(s: &mut ProbeState, check: &HealthCheck, outcome: Result<(), String>, now: Instant) -> bool {
    let was = s.ready;
    match outcome {
        Ok(()) => {
            s.successes = s.successes.saturating_add(1);
            s.failures = 0;
            s.last_error = None;
            if s.successes >= check.healthy_after {
                s.ready = true;
            }
        }
        Err(e) => {
            s.failures = s.failures.saturating_add(1);
            s.successes = 0;
            s.last_error = Some(e);
            // Before the first success a replica is simply not ready yet.
            if s.failures >= check.unhealthy_after || !was {
                s.ready = false;
            }
        }
    }
    if s.ready && !was {
        s.ready_since = Some(now);
    } else if !s.ready {
        s.ready_since = None;
    }
    was != s.ready
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) until `cond` holds for the replica's state.
    async fn until(health: &Health, id: &str, cond: impl Fn(&ProbeState) -> bool) -> Duration {
        let started = Instant::now();
        while !health.state(id).is_some_and(|s| cond(&s)) {
            assert!(started.elapsed() < Duration::from_secs(10), "{:?}", health.state(id));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    }

    #[tokio::test]
    async fn tcp_check_is_ready_soon_after_the_port_opens_and_unready_after_it_closes() {
        // A free port on loopback, closed for now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let health = Health::new(std::sync::Arc::new(crate::engine::HostNetwork));
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let mut check = HealthCheck::new(CheckKind::Tcp);
        check.interval = Duration::from_secs(2);
        check.unhealthy_after = 1;
        let target = Target {
            id: "c1".into(),
            ip: "127.0.0.1".parse().expect("ip"),
            port,
        };
        let flips = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&flips);
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        health.sync("p", Some(&check), "h", &[target], &tasks, &shutdown, on_change);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = health.state("c1").expect("a check runs");
        assert!(!s.ready && s.ready_since.is_none());
        assert!(s.last_error.is_some_and(|e| e.contains("TCP connect")));

        // It opens: ready within a fast poll, not an interval later.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let took = until(&health, "c1", |s| s.ready).await;
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert!(health.state("c1").is_some_and(|s| s.ready_since.is_some()));
        assert_eq!(flips.load(std::sync::atomic::Ordering::SeqCst), 1);

        // It closes: unready after `unhealthy_after` failed checks.
        drop(listener);
        until(&health, "c1", |s| !s.ready).await;
        assert!(health.state("c1").is_some_and(|s| s.ready_since.is_none()));
        assert_eq!(flips.load(std::sync::atomic::Ordering::SeqCst), 2);

        // `type: none`: ready at once, no task; a changed check keeps readiness.
        health.sync(
            "p",
            Some(&HealthCheck::new(CheckKind::None)),
            "h",
            &[Target {
                id: "c1".into(),
                ip: "127.0.0.1".parse().expect("ip"),
                port,
            }],
            &tasks,
            &shutdown,
            Arc::new(|| {}),
        );
        assert!(health.state("c1").is_some_and(|s| s.ready));
        shutdown.cancel();
    }

    #[test]
    fn ready_since_follows_unbroken_readiness() {
        let check = HealthCheck::new(CheckKind::Tcp);
        let t0 = Instant::now();
        let mut s = ProbeState::default();
        assert!(record(&mut s, &check, Ok(()), t0));
        assert_eq!(s.ready_since, Some(t0));
        // A failure below `unhealthy_after` keeps it ready, since t0.
        assert!(!record(&mut s, &check, Err("x".into()), t0 + Duration::from_secs(1)));
        assert!(!record(&mut s, &check, Ok(()), t0 + Duration::from_secs(2)));
        assert_eq!(s.ready_since, Some(t0));
        for i in 0..3 {
            record(&mut s, &check, Err("x".into()), t0 + Duration::from_secs(3 + i));
        }
        assert!(!s.ready && s.ready_since.is_none());
    }
}

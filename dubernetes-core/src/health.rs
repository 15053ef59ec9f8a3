//! Readiness checks: one small task per running replica of a pod that has a
//! `health` check, GETting its path on the replica's address on the instance
//! network. A replica becomes ready after `healthy_after` successes in a row
//! and stops being ready after `unhealthy_after` failures in a row; every flip
//! calls back (the controller wakes the pod and the ingress).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::spec::HealthCheck;

/// What the checks of one replica say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeState {
    pub ready: bool,
    pub successes: u32,
    pub failures: u32,
    pub last_error: Option<String>,
}

struct Entry {
    pod: String,
    key: String,
    cancel: CancellationToken,
    state: Arc<Mutex<ProbeState>>,
}

/// The running checks, by container id.
#[derive(Default)]
pub(crate) struct Health {
    entries: Mutex<HashMap<String, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A replica to check.
pub(crate) struct Target {
    pub id: String,
    pub ip: IpAddr,
    pub port: u16,
}

impl Health {
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
        entries.retain(|id, entry| {
            let keep = entry.pod != pod || wanted.get(id.as_str()).is_some_and(|(_, key)| *key == entry.key);
            if !keep {
                entry.cancel.cancel();
            }
            keep
        });
        let Some(check) = check else { return };
        for (id, (target, key)) in wanted {
            if entries.contains_key(id) {
                continue;
            }
            let cancel = shutdown.child_token();
            let state = Arc::new(Mutex::new(ProbeState::default()));
            let port = check.port.unwrap_or(target.port);
            let addr = SocketAddr::new(target.ip, port);
            tasks.spawn(run(
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
    addr: SocketAddr,
    check: HealthCheck,
    host: String,
    cancel: CancellationToken,
    state: Arc<Mutex<ProbeState>>,
    on_change: Arc<dyn Fn() + Send + Sync>,
) {
    let mut interval = tokio::time::interval(check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let result = crate::probe::http_get(addr, &check.path, &host, check.timeout).await;
        let outcome = match result {
            Ok((status, _)) if (200..400).contains(&status) => Ok(()),
            Ok((status, _)) => Err(format!("GET {} on {addr} answered {status}", check.path)),
            Err(e) => Err(format!("GET {} on {addr} failed: {e}", check.path)),
        };
        let flipped = {
            let mut s = lock(&state);
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
            was != s.ready
        };
        if flipped {
            on_change();
        }
    }
}

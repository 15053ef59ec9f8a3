//! The engine's event stream: [`decode`] says what an event means for the
//! controller (pure, unit-tested); the loop does it (wake a pod, note why a
//! replica is dying, mark it exited) and reconnects with back-off.

use super::prelude::*;
use crate::engine::EngineEvent;

/// What one engine event means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Meaning {
    /// Nothing we act on.
    Ignore,
    /// A replica of `pod` exited (`die`, `oom`): mark it exited in the cache,
    /// wait until the engine agrees, then wake the pod. `cause`: why, when the
    /// event says (`oom`).
    Exited {
        pod: String,
        id: String,
        cause: Option<ExitCause>,
    },
    /// A replica is about to die of a signal (`kill`; the `die` follows).
    Killing {
        pod: String,
        id: String,
        signal: Option<i64>,
    },
    /// Something else happened to a container of `pod`: wake it.
    Changed { pod: String },
    /// A container that is not a replica (the ingress, a TCP listener) changed.
    Other { id: Option<String> },
}

/// Decodes one event. Docker's action strings can carry suffixes
/// (`exec_create: ...`, `health_status: healthy`): prefixes are matched.
pub(super) fn decode(event: &EngineEvent) -> Meaning {
    const RELEVANT: [&str; 9] = [
        "start",
        "die",
        "destroy",
        "stop",
        "kill",
        "oom",
        "pause",
        "unpause",
        "health_status",
    ];
    let action = event.action.as_str();
    if !RELEVANT.iter().any(|a| action.starts_with(a)) {
        return Meaning::Ignore;
    }
    let Some(pod) = event.attributes.get(LABEL_POD).cloned() else {
        return Meaning::Other { id: event.id.clone() };
    };
    // A one-off run (`dubectl run`) is no replica: its exit is no crash.
    if event.attributes.get(LABEL_ROLE).map(String::as_str) == Some(crate::labels::ROLE_RUN) {
        return Meaning::Ignore;
    }
    // A deploy hook's end is read by its pod's reconcile: wake it.
    if event.attributes.get(LABEL_ROLE).map(String::as_str) == Some(super::hooks::ROLE_HOOK) {
        return Meaning::Changed { pod };
    }
    match event.id.clone() {
        Some(id) if action.starts_with("kill") => Meaning::Killing {
            pod,
            id,
            signal: event.attributes.get("signal").and_then(|s| s.parse().ok()),
        },
        Some(id) if action.starts_with("oom") => Meaning::Exited {
            pod,
            id,
            cause: Some(ExitCause::Oom),
        },
        Some(id) if action.starts_with("die") => Meaning::Exited { pod, id, cause: None },
        _ => Meaning::Changed { pod },
    }
}

impl Context {
    /// Follows the engine's events; a dropped stream is reopened with
    /// back-off, and what happened meanwhile is caught by a resync.
    pub(super) async fn event_loop(self: Arc<Self>) {
        let mut streak = 0u32;
        loop {
            let mut events = self.runtime.events(&self.settings.instance);
            if streak > 0 {
                self.resync().await;
            }
            loop {
                let next = tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    next = events.next() => next,
                };
                match next {
                    Some(Ok(event)) => {
                        streak = 0;
                        tracing::debug!(
                            action = event.action,
                            pod = event.attributes.get(LABEL_POD).map(String::as_str),
                            "engine event"
                        );
                        self.on_event(decode(&event));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "engine event stream failed; reconnecting");
                        break;
                    }
                    None => break,
                }
            }
            streak = streak.saturating_add(1);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(error_backoff(streak)) => {}
            }
        }
    }

    fn on_event(self: &Arc<Self>, meaning: Meaning) {
        match meaning {
            Meaning::Ignore => return,
            // Not a replica (the ingress or a TCP listener container): the
            // next sync looks at the engine. As for a replica's `die`, the
            // engine's list may still show the container running: one more
            // sync once an inspect (which waits for the container's lock)
            // has returned, so an exited listener is replaced at once, not
            // at the next resync.
            Meaning::Other { id } => {
                self.wake_ingress_full();
                if let Some(id) = id {
                    let ctx = Arc::clone(self);
                    self.tasks.spawn(async move {
                        let _ = ctx.runtime.is_running(&id).await;
                        ctx.wake_ingress_full();
                    });
                }
                return;
            }
            // The engine reports `kill` (with the signal) before the `die` of
            // a `docker kill`, `docker stop` or `docker rm -f`; an app's own
            // exit has none. Our own stops are of draining replicas.
            Meaning::Killing { pod, id, signal } => {
                if !self.is_draining(&id) {
                    self.note_exit(&id, ExitCause::Killed(signal));
                }
                self.notify(Change::Pod { name: pod.clone() });
                self.wake(&pod);
            }
            Meaning::Exited { pod, id, cause } => {
                if let Some(cause) = cause {
                    self.note_exit(&id, cause);
                }
                // Watchers see the exited replica at once, before the
                // reconcile replaces it: the cache is marked from the event.
                lock(&self.observed).mark_exited(&pod, &id);
                self.notify(Change::Pod { name: pod.clone() });
                // The engine emits `die` before its container list shows the
                // container as exited; an inspect waits for the container's
                // lock, so after it the list agrees. Then wake the pod.
                let ctx = Arc::clone(self);
                self.tasks.spawn(async move {
                    let _ = ctx.runtime.is_running(&id).await;
                    ctx.wake(&pod);
                });
            }
            Meaning::Changed { pod } => {
                self.notify(Change::Pod { name: pod.clone() });
                self.wake(&pod);
            }
        }
        self.wake_ingress();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, pod: Option<&str>, extra: &[(&str, &str)]) -> EngineEvent {
        let mut attributes: HashMap<String, String> =
            extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(pod) = pod {
            attributes.insert(LABEL_POD.to_string(), pod.to_string());
        }
        EngineEvent {
            action: action.to_string(),
            id: Some("c1".into()),
            attributes,
        }
    }

    #[test]
    fn events_decode_by_prefix() {
        assert_eq!(
            decode(&event("exec_create: nginx -t", Some("web"), &[])),
            Meaning::Ignore
        );
        assert_eq!(decode(&event("create", Some("web"), &[])), Meaning::Ignore);
        assert_eq!(
            decode(&event("die", Some("web"), &[])),
            Meaning::Exited {
                pod: "web".into(),
                id: "c1".into(),
                cause: None
            }
        );
        assert_eq!(
            decode(&event("oom", Some("web"), &[])),
            Meaning::Exited {
                pod: "web".into(),
                id: "c1".into(),
                cause: Some(ExitCause::Oom)
            }
        );
        assert_eq!(
            decode(&event("kill", Some("web"), &[("signal", "9")])),
            Meaning::Killing {
                pod: "web".into(),
                id: "c1".into(),
                signal: Some(9)
            }
        );
        assert_eq!(
            decode(&event("health_status: healthy", Some("web"), &[])),
            Meaning::Changed { pod: "web".into() }
        );
        assert_eq!(
            decode(&event("start", None, &[])),
            Meaning::Other { id: Some("c1".into()) },
            "the ingress"
        );
    }
}

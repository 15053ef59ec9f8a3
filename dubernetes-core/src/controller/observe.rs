//! The observed state: what the engine last showed of each pod's replicas,
//! and their readiness (checks running, routed by the live config).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Context, PodRuntimeStatus, lock};
use crate::error::Result;
use crate::health::Target;
use crate::labels::LABEL_PORT;
use crate::owned_engine::{ContainerState, Observed};
use crate::spec::PodSpec;
use crate::status::{self, PodObservation};

/// What the engine last showed of this instance's replicas, by pod: every
/// container list the controller makes anyway (a reconcile lists its pod, an
/// ingress sync and a resync list the instance) refreshes it, so API reads
/// (`get`, `list`) never call the engine. Events wake reconciles, which list
/// again, so it lags the engine by at most one reconcile.
#[derive(Default)]
pub(super) struct ObservedCache {
    /// Replicas of each pod, with the sequence number of the list they come from.
    pods: HashMap<String, (u64, Arc<[Observed]>)>,
}

impl ObservedCache {
    /// Applies a list of one pod's replicas taken at `seq`; an older list
    /// never overwrites a newer one.
    pub(super) fn put_pod(&mut self, seq: u64, pod: &str, replicas: Vec<Observed>) {
        match self.pods.get(pod) {
            Some((newer, _)) if *newer > seq => {}
            // An empty list is kept (until the next full list) so that an
            // older list cannot bring removed containers back.
            _ => {
                self.pods.insert(pod.to_string(), (seq, replicas.into()));
            }
        }
    }

    /// Marks one replica exited (on its `die` event), ahead of the next list.
    pub(super) fn mark_exited(&mut self, pod: &str, id: &str) {
        if let Some((_, replicas)) = self.pods.get_mut(pod)
            && replicas.iter().any(|c| c.id == id && c.state != ContainerState::Exited)
        {
            let updated: Vec<Observed> = replicas
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    if c.id == id {
                        c.state = ContainerState::Exited;
                    }
                    c
                })
                .collect();
            *replicas = updated.into();
        }
    }

    /// Applies a list of the whole instance taken at `seq`.
    pub(super) fn put_all(&mut self, seq: u64, containers: &[Observed]) {
        let mut by_pod: HashMap<&str, Vec<Observed>> = HashMap::new();
        for c in containers.iter().filter(|c| c.role == "replica") {
            if let Some(pod) = c.pod.as_deref() {
                by_pod.entry(pod).or_default().push(c.clone());
            }
        }
        self.pods
            .retain(|pod, (at, _)| *at > seq || by_pod.contains_key(pod.as_str()));
        for (pod, replicas) in by_pod {
            self.put_pod(seq, pod, replicas);
        }
    }
}

impl Context {
    /// Lists every container of the instance (one engine call) and refreshes the cache.
    pub(crate) async fn list_instance(&self) -> Result<Vec<Observed>> {
        let seq = self.list_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let containers = self
            .runtime
            .list(&self.settings.instance, &self.settings.network, None)
            .await?;
        lock(&self.observed).put_all(seq, &containers);
        Ok(containers)
    }

    /// Lists one pod's replicas and its deploy hooks' containers (one engine
    /// call) and refreshes the cache (of replicas).
    pub(super) async fn list_pod(&self, pod: &str) -> Result<(Vec<Observed>, Vec<Observed>)> {
        let seq = self.list_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let (replicas, hooks): (Vec<Observed>, Vec<Observed>) = self
            .runtime
            .list(&self.settings.instance, &self.settings.network, Some(pod))
            .await?
            .into_iter()
            .filter(|c| c.role == "replica" || c.role == super::hooks::ROLE_HOOK)
            .partition(|c| c.role == "replica");
        lock(&self.observed).put_pod(seq, pod, replicas.clone());
        Ok((replicas, hooks))
    }

    /// Whether the last observation of a pod shows running replicas of more
    /// than one revision (a rollout step under way).
    pub(super) fn mixed_revisions(&self, pod: &str) -> bool {
        let replicas = self.observed_replicas(pod);
        let mut running = replicas
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.revision.as_deref());
        let first = running.next();
        running.any(|r| r != first.flatten())
    }

    /// Every replica of the instance as last observed (no engine call).
    pub(super) fn observed_all(&self) -> Vec<Observed> {
        lock(&self.observed)
            .pods
            .values()
            .flat_map(|(_, replicas)| replicas.iter().cloned())
            .collect()
    }

    /// The replicas of a pod as last observed (no engine call).
    pub(crate) fn observed_replicas(&self, pod: &str) -> Arc<[Observed]> {
        lock(&self.observed)
            .pods
            .get(pod)
            .map(|(_, r)| Arc::clone(r))
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    pub(crate) fn pod_status(&self, pod: &str) -> PodRuntimeStatus {
        lock(&self.book).status.get(pod).cloned().unwrap_or_default()
    }

    /// Running, on the network, not draining, and passing its readiness check
    /// (the pod's `health`, or a TCP connect to its port by default).
    pub(crate) fn is_serving(&self, c: &Observed, _spec: &PodSpec) -> bool {
        status::is_serving(c, &self.probe_of(&c.id))
    }

    pub(super) fn sync_probes(self: &Arc<Self>, pod: &str, spec: &PodSpec, observed: &[Observed]) {
        let targets: Vec<Target> = observed
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter_map(|c| {
                Some(Target {
                    id: c.id.clone(),
                    ip: c.ip.as_deref()?.parse().ok()?,
                    port: c.labels.get(LABEL_PORT)?.parse().ok()?,
                })
            })
            .collect();
        let ctx = Arc::clone(self);
        let pod_name = pod.to_string();
        // While replicas of two revisions run (a rollout step), the pod's
        // reconcile decides what the readiness change means, drains
        // included, and then syncs the ingress once: the new replica in and
        // the old one out in one endpoint write. Otherwise (a heal, a
        // scale) the ingress is woken at once, beside the pod.
        let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            ctx.wake(&pod_name);
            if !ctx.mixed_revisions(&pod_name) {
                ctx.wake_ingress();
            }
        });
        // The Host header of HTTP checks: the first exact host (a wildcard is no name).
        let host = spec
            .hosts()
            .into_iter()
            .find(|h| !h.starts_with('*'))
            .unwrap_or("localhost");
        let check = spec.readiness();
        self.health.sync(
            pod,
            Some(&check),
            host,
            &targets,
            &self.tasks,
            &self.shutdown,
            on_change,
        );
    }
}

impl Context {
    /// The read model of one pod (see [`PodObservation`]): a snapshot of the
    /// observed cache, the probes, the drain and the ingress, for the pure
    /// [`crate::status::pod_view`].
    pub(crate) fn observe_pod(&self, spec: &PodSpec) -> PodObservation {
        let routed = self.ingress.routed();
        let rejections = self.ingress.rejections();
        let listener_failures = self.ingress.listener_failures();
        let routes = status::Routes {
            routed: &routed,
            rejection: rejections.get(&spec.name).map(String::as_str),
            listener_failure: listener_failures.get(&spec.name).map(String::as_str),
        };
        let runtime = self.pod_status(&spec.name);
        let controller = status::ControllerStatus {
            observed_generation: runtime.observed_generation,
            restarts: runtime.restarts,
            last_exit_code: runtime.last_exit_code,
            reason: runtime.reason,
            message: runtime.message,
        };
        status::observe(
            spec,
            &self.observed_replicas(&spec.name),
            |id| self.probe_of(id),
            &routes,
            controller,
        )
    }

    /// Since when a replica the previous leader last saw ready counts as
    /// ready (long enough to be trusted: it served under that leader), until
    /// a probe of this term fails; None for any other replica.
    pub(super) fn inherited_since(&self, id: &str) -> Option<tokio::time::Instant> {
        let failed = self.health.state(id).is_some_and(|h| h.failures > 0);
        let routing = lock(&self.routing);
        let inherited = &routing.inherited_ready;
        if failed || !inherited.0.contains(id.get(..12).unwrap_or(id)) {
            return None;
        }
        Some(inherited.1)
    }

    /// What the probes and the drain know of one replica.
    fn probe_of(&self, id: &str) -> status::ReplicaProbe {
        let check = self.health.state(id);
        status::ReplicaProbe {
            ready: check.as_ref().is_some_and(|h| h.ready) || self.inherited_since(id).is_some(),
            last_error: check.and_then(|h| h.last_error),
            draining: self.is_draining(id),
        }
    }
}

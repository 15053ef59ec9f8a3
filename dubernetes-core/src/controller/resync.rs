//! The periodic resync: one container list for the whole instance, waking
//! every pod whose plan is not empty.

use super::prelude::*;
use crate::status;

impl Context {
    pub(super) async fn resync_loop(self: Arc<Self>) {
        loop {
            self.resync().await;
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.settings.resync) => {}
            }
        }
    }

    /// One container list for the whole instance; wakes every pod whose plan
    /// is not empty, and every pod that owns containers but is not stored.
    pub(crate) async fn resync(self: &Arc<Self>) {
        let (pods, containers) = match (self.store.list().await, self.list_instance().await) {
            (Ok(p), Ok(c)) => (p, c),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "resync failed");
                return;
            }
        };
        let mut by_pod: HashMap<&str, Vec<Observed>> = HashMap::new();
        for c in containers.iter().filter(|c| c.role == "replica") {
            if let Some(pod) = c.pod.as_deref() {
                by_pod.entry(pod).or_default().push(c.clone());
            }
        }
        for p in &pods {
            let observed = by_pod.remove(p.spec.name.as_str()).unwrap_or_default();
            let desired = Desired::of(&p.spec);
            // Not "converged" (see reconcile::converged): only "the planner has nothing to do".
            let idle = plan(Some(&desired), &observed).is_empty();
            if status::needs_reconcile(idle, self.pod_status(&p.spec.name).observed_generation, p.generation) {
                self.wake(&p.spec.name);
            }
        }
        for orphan in by_pod.keys() {
            self.wake(orphan);
        }
        self.warn_expiring_certificates(&pods).await;
        self.ingress.verify().await;
        self.wake_ingress_full();
    }
}

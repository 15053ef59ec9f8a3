//! Keeping the name responder in step with readiness: a pod's name lists
//! its ready replicas (running, passing their readiness check, not
//! draining), written whenever the ingress would be woken (a replica became
//! ready or left), before a drain (see `act.rs`), and checked at each resync.

use super::prelude::*;
use crate::names::NameTable;
use crate::owned_engine::ContainerState;

impl Context {
    /// Writes the names of every pod (their ready replicas' addresses) into
    /// the responder if they changed; `check`: also make sure it runs.
    pub(super) async fn sync_names(&self, check: bool) -> Result<()> {
        if self.names.address().is_none() {
            return Ok(());
        }
        let pods = self.store.list().await?;
        // Read under the responder's lock: a newer readiness always wins.
        self.names.sync(check, || self.name_table(&pods)).await.map(|_| ())
    }

    /// Every pod's ready addresses, from the observed cache and the probes.
    fn name_table(&self, pods: &[StoredPod]) -> NameTable {
        pods.iter()
            .map(|p| {
                let mut addrs: Vec<IpAddr> = self
                    .observed_replicas(&p.spec.name)
                    .iter()
                    .filter(|c| c.role == "replica" && c.state == ContainerState::Running)
                    .filter(|c| self.is_serving(c, &p.spec))
                    .filter_map(|c| c.ip.as_deref()?.parse().ok())
                    .collect();
                addrs.sort();
                addrs.dedup();
                (p.spec.name.clone(), addrs)
            })
            .collect()
    }

    /// Applies name changes as they are woken (bursts coalesce: a wake that
    /// arrives during a sync makes one more), and checks the responder's
    /// container at each resync period; a failure is retried with back-off.
    pub(super) async fn names_loop(self: Arc<Self>) {
        if self.names.address().is_none() {
            return;
        }
        let mut streak = 0u32;
        // The responder's container is looked at first, then at least every
        // resync period (also under a steady stream of wakes), and after a failure.
        let mut last_check: Option<Instant> = None;
        loop {
            let asked = self.names_check.swap(false, std::sync::atomic::Ordering::SeqCst);
            let check = asked || streak > 0 || last_check.is_none_or(|at| at.elapsed() >= self.settings.resync);
            match self.sync_names(check).await {
                Ok(()) => {
                    streak = 0;
                    if check {
                        last_check = Some(Instant::now());
                    }
                }
                Err(e) => {
                    streak = streak.saturating_add(1);
                    tracing::warn!(error = %e, "updating the pod names failed");
                }
            }
            let wait = if streak > 0 {
                error_backoff(streak)
            } else {
                self.settings.resync
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.names_wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

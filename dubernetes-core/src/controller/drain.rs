//! Draining: a running replica leaves the ingress first, then is stopped
//! with its grace period in the background, and its pod is woken.

use super::prelude::*;

impl Context {
    /// Lets nginx's old workers finish what they were sending to these
    /// (already unrouted) replicas, stops them gracefully, and wakes the pod.
    pub(super) async fn drain_and_stop(self: Arc<Self>, pod: &str, ids: Vec<String>, grace: Duration) {
        if !self.settings.drain.is_zero() {
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = tokio::time::sleep(self.settings.drain) => {}
            }
        }
        // The stop waits out the grace period without an engine slot (the
        // engine does the waiting); only the removal takes one.
        let ctx = &self;
        let stopped = join_all(ids.iter().map(|id| async move {
            ctx.runtime.stop(id, grace).await?;
            ctx.with_slot(ctx.runtime.remove(id)).await
        }))
        .await;
        {
            let mut book = lock(&self.book);
            let draining = &mut book.draining;
            for id in &ids {
                draining.remove(id);
            }
        }
        for e in stopped.into_iter().filter_map(Result::err) {
            tracing::warn!(pod, error = %e, "stopping a drained replica failed; the next reconcile retries");
        }
        self.wake(pod);
    }
}

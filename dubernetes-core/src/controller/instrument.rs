//! The controller's metrics around a reconcile: its duration and outcome,
//! and the series of a deleted pod dropped once it is gone.

use super::prelude::*;
use crate::metrics::ReconcileOutcome;

impl Context {
    /// [`Context::reconcile`], timed and counted by outcome (see `docs/metrics.md`).
    pub(super) async fn reconcile_measured(self: &Arc<Self>, pod: &str) -> Result<Next> {
        let started = std::time::Instant::now();
        let result = self.reconcile(pod).await;
        let outcome = match &result {
            Ok(Next::Done) => ReconcileOutcome::Done,
            Ok(Next::Requeue(_)) => ReconcileOutcome::Requeue,
            Ok(Next::Gone) => ReconcileOutcome::Gone,
            Err(_) => ReconcileOutcome::Error,
        };
        let metrics = self.runtime.metrics();
        metrics.reconciled(started.elapsed(), outcome);
        if outcome == ReconcileOutcome::Gone {
            metrics.forget_pod(pod);
        }
        result
    }
}

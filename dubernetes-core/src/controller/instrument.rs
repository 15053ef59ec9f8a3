//! The controller's metrics around a reconcile: its duration and outcome,
//! and the series of a deleted pod dropped once it is gone.

use super::prelude::*;
use tracing::Instrument as _;

use crate::metrics::ReconcileOutcome;

impl Context {
    /// [`Context::reconcile`], timed and counted by outcome (see `docs/metrics.md`).
    pub(super) async fn reconcile_measured(self: &Arc<Self>, pod: &str) -> Result<Next> {
        let started = std::time::Instant::now();
        // Every line the reconcile logs carries the pod (and, once known, the revision).
        let span = tracing::info_span!("reconcile", pod, revision = tracing::field::Empty);
        let result = self.reconcile(pod).instrument(span).await;
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

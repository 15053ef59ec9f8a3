//! The controller's metrics around a reconcile: its duration and outcome,
//! and the series of a deleted pod dropped once it is gone.

use super::prelude::*;
use tracing::Instrument as _;

use crate::metrics::ReconcileOutcome;

/// How often a reconcile that has not ended says so in the log.
const SLOW_RECONCILE: Duration = Duration::from_secs(15);

impl Context {
    /// [`Context::reconcile`], timed and counted by outcome (see `docs/metrics.md`).
    pub(super) async fn reconcile_measured(self: &Arc<Self>, pod: &str) -> Result<Next> {
        let started = std::time::Instant::now();
        // Every line the reconcile logs carries the pod (and, once known, the revision).
        let span = tracing::info_span!("reconcile", pod, revision = tracing::field::Empty);
        let reconcile = self.reconcile(pod).instrument(span.clone());
        tokio::pin!(reconcile);
        // A reconcile takes milliseconds (drains and hooks run beside it): one
        // still running after seconds is stuck on something, and says so
        // while it is, not only when (or if) it ends.
        let mut warn_at = Instant::now() + SLOW_RECONCILE;
        let result = loop {
            tokio::select! {
                result = &mut reconcile => break result,
                () = tokio::time::sleep_until(warn_at) => {
                    tracing::warn!(parent: &span, running = ?started.elapsed(), "a reconcile is still running");
                    warn_at += SLOW_RECONCILE;
                }
            }
        };
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

//! Rollout bookkeeping around the pure [`crate::rollout`] decisions: keeps
//! each pod's [`Progress`], completes a revision, or fails it and rolls back.

use super::prelude::*;
use crate::metrics::RolloutResult;
use crate::owned_engine::ContainerState;
use crate::rollout::{self, FailReason, Limits, Progress, RolloutObservation, Verdict};

impl Context {
    /// Rollout bookkeeping: completes the current revision once it is fully
    /// rolled out, and fails it (rolling back) when it made no progress for its
    /// deadline or its replicas exited `max_failures` times (see
    /// [`rollout::step`]). `Ok(when)` goes on (and looks again at `when`);
    /// `Err(next)` stops the reconcile here.
    pub(super) async fn track_rollout(
        self: &Arc<Self>,
        stored: &StoredPod,
        observed: &[Observed],
        obs: RolloutObservation,
    ) -> Result<std::result::Result<Option<Instant>, Next>> {
        let pod = stored.spec.name.as_str();
        if !stored.rollout.is_progressing() {
            lock(&self.book).rollouts.remove(pod);
            return Ok(Ok(None));
        }
        let number = stored.rollout.number;
        let strategy = stored.spec.update_strategy();
        let limits = Limits {
            progress_deadline: strategy.progress_deadline,
            max_failures: strategy.max_failures,
        };
        let now = Instant::now();
        let (verdict, state) = {
            let mut book = lock(&self.book);
            let rollouts = &mut book.rollouts;
            let r = rollouts
                .entry(pod.to_string())
                .or_insert_with(|| Progress::new(number, now));
            if r.number != number {
                *r = Progress::new(number, now);
            }
            (rollout::step(r, obs, limits, now), r.clone())
        };
        let reason = match verdict {
            Verdict::Continue { recheck } => return Ok(Ok(Some(recheck))),
            Verdict::Complete => {
                lock(&self.book).rollouts.remove(pod);
                // Started before the revision is marked complete, so a crash
                // in between starts it on the next completion, not never.
                self.start_hook(stored, super::hooks::POST_DEPLOY).await?;
                if self.store.complete_revision(pod, number).await? {
                    self.runtime.metrics().rollout(pod, RolloutResult::Complete);
                    self.event(
                        pod,
                        "Normal",
                        "RolloutComplete",
                        &format!("revision {number} is fully rolled out"),
                    )
                    .await;
                    self.notify(Change::Pod { name: pod.to_string() });
                }
                return Ok(Ok(None));
            }
            Verdict::Fail(reason) => reason,
        };
        lock(&self.book).rollouts.remove(pod);
        let message = match reason {
            FailReason::ProgressDeadlineExceeded => {
                let cause = self.failure_cause(&stored.spec, observed);
                format!(
                    "revision {number} made no progress for {}: {} of {} new replicas ready; {cause}",
                    humantime::format_duration(limits.progress_deadline),
                    obs.ready_new,
                    stored.spec.replicas
                )
            }
            FailReason::ReplicasExiting => format!(
                "revision {number} failed fast: its replicas exited {} times (update.max_failures is {}); \
                 the old replicas kept serving. Last: {}",
                state.failures,
                limits.max_failures,
                state.last_failure.as_deref().unwrap_or("unknown")
            ),
        };
        self.fail_rollout(pod, number, reason.as_str(), &message).await?;
        Ok(Err(Next::Requeue(Duration::ZERO)))
    }

    /// Fails revision `number` of `pod` for `reason` and rolls it back to the
    /// last complete revision (when there is one), with a Warning event.
    pub(super) async fn fail_rollout(
        self: &Arc<Self>,
        pod: &str,
        number: i64,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        lock(&self.book).rollouts.remove(pod);
        match self.store.fail_and_roll_back(pod, number, reason, message).await? {
            Some(good) => {
                self.runtime.metrics().rollout(pod, RolloutResult::RolledBack);
                // The failed revision's crash-loop state is not the rolled-back one's.
                {
                    let mut book = lock(&self.book);
                    let status = &mut book.status;
                    if let Some(s) = status.get_mut(pod) {
                        s.reason = None;
                        s.message = None;
                        s.next_allowed = None;
                    }
                }
                lock(&self.book).slots.remove(pod);
                self.event(
                    pod,
                    "Warning",
                    "RolledBack",
                    &format!("{}: {message}; rolled back to revision {}", reason, good.number),
                )
                .await;
            }
            None => {
                self.runtime.metrics().rollout(pod, RolloutResult::Failed);
                self.event(
                    pod,
                    "Warning",
                    "RolloutFailed",
                    &format!("{}: {message}; no earlier good revision to roll back to", reason),
                )
                .await;
            }
        }
        self.notify(Change::Pod { name: pod.to_string() });
        Ok(())
    }

    /// Why new replicas are not ready: the failing check or the last exit.
    pub(super) fn failure_cause(&self, spec: &PodSpec, observed: &[Observed]) -> String {
        let revision = spec.revision_hash();
        let check_error = observed
            .iter()
            .filter(|c| c.revision.as_deref() == Some(&revision))
            .find_map(|c| self.health.state(&c.id).and_then(|h| h.last_error));
        if let Some(e) = check_error {
            return format!("readiness check failing: {e}");
        }
        let status = self.pod_status(&spec.name);
        match status.last_exit_code {
            Some(code) => format!("replicas exit with code {code} ({} restarts)", status.restarts),
            None => {
                // Neither a failed check nor an exit: say how far they got.
                let new: Vec<&Observed> = observed
                    .iter()
                    .filter(|c| c.revision.as_deref() == Some(&revision))
                    .collect();
                let running = new.iter().filter(|c| c.state == ContainerState::Running).count();
                let addressed = new
                    .iter()
                    .filter(|c| c.state == ContainerState::Running && c.ip.is_some())
                    .count();
                format!(
                    "replicas did not become ready ({} created, {running} running, {addressed} with an address, none checked yet)",
                    new.len()
                )
            }
        }
    }
}

//! One pod's reconcile: observe → plan → act, returning when to look again,
//! and the error policy that decides when to retry a failed one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Change, Context, Next, error_backoff, lock, slot_of};
use crate::error::{Error, Result};
use crate::owned_engine::{ContainerState, Observed};
use crate::plan::{Action, Desired, RemoveReason, plan, plan_gated};
use crate::rollout::{RolloutObservation, gate};
use crate::spec::PodSpec;
use crate::status;

impl Context {
    /// The worker of one pod: one reconcile per wake (wakes coalesce), then
    /// what the reconcile (or the error policy) says: look again now, at a
    /// time (on the queue's timer), or never; a deleted pod's worker ends.
    pub(super) async fn worker(self: Arc<Self>, pod: String, mut rx: mpsc::Receiver<()>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                msg = rx.recv() => if msg.is_none() { return },
            }
            let next = match self.reconcile_measured(&pod).await {
                Ok(next) => {
                    if let Some(s) = lock(&self.book).status.get_mut(&pod) {
                        s.error_streak = 0;
                    }
                    next
                }
                Err(e) => self.error_policy(&pod, &e),
            };
            match next {
                Next::Done => self.queue.schedule(&pod, None),
                Next::Requeue(delay) if delay.is_zero() => {
                    self.queue.schedule(&pod, None);
                    self.wake(&pod);
                }
                Next::Requeue(delay) => self.queue.schedule(&pod, Some(Instant::now() + delay)),
                Next::Gone => {
                    if self.queue.retire(&pod, &rx) {
                        lock(&self.book).status.remove(&pod);
                        return;
                    }
                }
            }
        }
    }

    /// A failed reconcile is retried after a back-off that grows with the
    /// failures in a row ([`error_backoff`]); the pod's status says why.
    pub(super) fn error_policy(&self, pod: &str, e: &Error) -> Next {
        tracing::warn!(pod, error = %e, "reconcile failed");
        let streak = {
            let mut book = lock(&self.book);
            let status = &mut book.status;
            let s = status.entry(pod.to_string()).or_default();
            s.error_streak = s.error_streak.saturating_add(1);
            s.message = Some(e.to_string());
            s.error_streak
        };
        self.notify(Change::Pod { name: pod.to_string() });
        Next::Requeue(error_backoff(streak))
    }

    /// Makes one pod's containers match its spec, from whatever state they are in.
    pub(super) async fn reconcile(self: &Arc<Self>, pod: &str) -> Result<Next> {
        tracing::debug!(pod, "reconcile");
        let stored = self.store.get(pod).await?;
        let (observed, hooks) = self.list_pod(pod).await?;
        // The observed cache may have changed (e.g. a drained replica is gone):
        // the change feed re-reads the pod and publishes only if its view differs.
        self.notify(Change::Pod { name: pod.to_string() });
        // Replicas being drained are out of the ingress and about to stop: a
        // background task owns them (see `drain_and_stop`). The pod has not
        // landed until they are gone: that task wakes the pod when they are.
        let (being_drained, kept): (Vec<Observed>, Vec<Observed>) =
            observed.into_iter().partition(|c| self.is_draining(&c.id));
        let draining = !being_drained.is_empty();
        let mut observed = kept;
        let stopping = being_drained.len();
        let Some(stored) = stored else {
            return self.reconcile_deleted(pod, &hooks, &observed, draining).await;
        };
        let spec = &stored.spec;
        self.sync_probes(pod, spec, &observed);
        self.mark_ready(pod, spec, &mut observed);
        // A new revision's `pre_deploy` hook runs before any of its replicas.
        let hook_step = self.hooks_step(&stored, &hooks).await?;
        if let Some(next) = hook_step.hold {
            return Ok(next);
        }
        let strategy = spec.update_strategy();
        let revision = spec.revision_hash();
        tracing::Span::current().record("revision", revision.as_str());
        let now = Instant::now();
        {
            // Every container still there keeps its slot, exited ones too:
            // their exit is booked when they are removed.
            let live: Vec<&str> = observed.iter().map(slot_of).collect();
            let backoff = self.backoff_for(Some(spec));
            if let Some(slots) = lock(&self.book).slots.get_mut(pod) {
                slots.retain_live(&live, now, backoff);
            }
        }
        let is_new = |c: &Observed| c.revision.as_deref() == Some(revision.as_str());
        // What the rollout has achieved, by the checks alone...
        let checked_new = observed.iter().filter(|c| c.ready && is_new(c)).count();
        let running_new = observed
            .iter()
            .filter(|c| is_new(c) && c.state == ContainerState::Running)
            .count();
        // ...and what the planner may trust: while other revisions still run,
        // a new replica counts only once it has been ready for `min_ready`.
        let (untrusted_old, trust_at) = gate(
            &mut observed,
            &revision,
            |id| {
                self.health
                    .state(id)
                    .and_then(|h| h.ready_since)
                    .or_else(|| self.inherited_since(id))
            },
            strategy.min_ready,
            now,
        );
        let desired = Desired::of(spec);
        // The planner sees the replicas being drained as being removed: it
        // leaves them alone, and with `recreate` creates nothing new while
        // one of another revision is still stopping.
        let mut plan_input = observed.clone();
        plan_input.extend(being_drained.into_iter().map(|mut c| {
            c.state = ContainerState::Removing;
            c
        }));
        let actions = plan_gated(Some(&desired), &plan_input, &untrusted_old);
        // Old replicas still stopping do not hold the next step back, up to a bound.
        let actions = bound_stopping(actions, stopping, max_stopping(spec.desired_replicas()));
        // Nothing left to do, and every replica current, ready and alone.
        let converged = converged(&actions, spec, &observed);
        let progress = RolloutObservation {
            ready_new: checked_new,
            running_new,
            converged,
        };
        let recheck = match self.track_rollout(&stored, &observed, progress).await? {
            Ok(recheck) => recheck,
            Err(next) => return Ok(next),
        };
        // A rollout in progress is re-checked at its deadline, when a new
        // replica's stabilization window ends, and at a running post_deploy
        // hook's deadline, even without events.
        let at = [recheck, trust_at, hook_step.recheck].into_iter().flatten().min();
        let unaddressed = self.unaddressed(&observed);
        let at = match at {
            Some(at) if unaddressed => Some(at.min(Instant::now() + UNADDRESSED_RECHECK)),
            None if unaddressed => Some(Instant::now() + UNADDRESSED_RECHECK),
            at => at,
        };
        let requeue = |at: Option<Instant>| match at {
            Some(at) => Next::Requeue(at.saturating_duration_since(Instant::now()) + Duration::from_millis(20)),
            None => Next::Done,
        };
        if actions.is_empty() && draining {
            // The drain task wakes the pod when its replicas are gone; the
            // next step must not wait for that (an app that ignores SIGTERM
            // takes its whole grace period to stop).
            return Ok(requeue(at));
        }
        // A container the engine is still removing (ours raced another
        // removal, or a removal answered 409) is not gone yet: the pod lands
        // when it is. Its `destroy` event wakes the pod; the requeue is a
        // safety net.
        if actions.is_empty() && observed.iter().any(|c| c.state == ContainerState::Removing) {
            return Ok(Next::Requeue(Duration::from_secs(1)));
        }
        if actions.is_empty() {
            self.record_landed(pod, &stored);
            return Ok(requeue(at));
        }
        let next = self.execute(pod, Some(&stored), &observed, actions).await?;
        self.notify(Change::Pod { name: pod.to_string() });
        Ok(match next {
            Next::Done if unaddressed => Next::Requeue(UNADDRESSED_RECHECK),
            next => next,
        })
    }

    /// A pod deleted from the store: its bookkeeping forgotten, its hooks
    /// and containers removed; `Gone` once nothing is left.
    async fn reconcile_deleted(
        self: &Arc<Self>,
        pod: &str,
        hooks: &[Observed],
        observed: &[Observed],
        draining: bool,
    ) -> Result<Next> {
        self.health.forget_pod(pod);
        lock(&self.book).rollouts.remove(pod);
        lock(&self.book).slots.remove(pod);
        self.remove_hooks(hooks).await?;
        let actions = plan(None, observed);
        if actions.is_empty() {
            if !draining {
                self.forget_secret_files(pod).await;
            }
            return Ok(Next::Gone);
        }
        self.execute(pod, None, observed, actions).await?;
        self.notify(Change::Pod { name: pod.to_string() });
        Ok(Next::Requeue(Duration::ZERO))
    }

    /// Sets `ready` on each replica the planner may count, and wakes the
    /// ingress when what it routes is stale.
    fn mark_ready(&self, pod: &str, spec: &PodSpec, observed: &mut [Observed]) {
        let routed = self.ingress.routed();
        // A serving replica of a pod whose host the live config has is
        // routed by the next ingress sync: the planner may count it now, so
        // that a rollout step routes the new replica and unroutes the old
        // one in the same endpoint write (the drain below syncs before it
        // stops anything). The status view still counts only what is routed.
        let host_live = spec.host().is_some() && self.ingress.serves_pod(pod);
        let mut stale_route = false;
        for c in observed {
            let serving = self.is_serving(c, spec);
            let is_routed = routed.contains(&c.id);
            stale_route |= spec.host().is_some() && serving != is_routed;
            c.ready = serving && (spec.host().is_none() || is_routed || host_live);
        }
        // Readiness changes of a pod in a rollout wake only the pod (see
        // `sync_probes`): what the ingress must route now is its to apply.
        if stale_route {
            self.wake_ingress();
        }
    }

    /// Whether a running replica has no address yet or fails its check: the
    /// pod is looked at again soon.
    fn unaddressed(&self, observed: &[Observed]) -> bool {
        // A running replica whose address is not known yet cannot be probed,
        // and nothing on this engine says when it is: on the swarm backend a
        // task on another node gets its overlay address by gossip, after it
        // runs, with no event here (and an idle pod is not woken by the
        // resync). Looked at again soon, until every running one has one.
        let unaddressed = observed
            .iter()
            .any(|c| c.state == ContainerState::Running && c.ip.is_none());
        // So is one failing its readiness check: its node may be lost, which
        // the engine says only when it lists it (a task on a node Swarm has
        // marked down reads as exited), never by an event here.
        unaddressed
            || observed
                .iter()
                .any(|c| c.state == ContainerState::Running && self.health.state(&c.id).is_some_and(|h| h.failures > 0))
    }

    /// Nothing left to do: the generation is observed, a reason that no
    /// longer holds is cleared, and the pod's view republished if it changed.
    fn record_landed(&self, pod: &str, stored: &crate::store::StoredPod) {
        let changed = {
            let mut book = lock(&self.book);
            let status = &mut book.status;
            let s = status.entry(pod.to_string()).or_default();
            let changed = s.observed_generation != stored.generation || s.message.is_some();
            s.observed_generation = stored.generation;
            if s.next_allowed.is_none_or(|t| t <= Instant::now()) {
                s.reason = None;
                s.message = None;
            }
            changed
        };
        if changed {
            self.notify(Change::Pod { name: pod.to_string() });
        }
    }
}

/// How soon a pod with a running replica whose address is not known yet is
/// looked at again (see `reconcile`).
const UNADDRESSED_RECHECK: Duration = Duration::from_millis(500);

/// How many replicas of a pod may be stopping at once (out of the ingress,
/// waiting out their grace period) before a rolling update takes the next old
/// one out: `replicas`, at least 1. A stopping replica serves nobody, so the
/// rollout does not count it against `max_surge` (as Kubernetes does not count
/// terminating pods); the bound keeps back-to-back rollouts of an app that
/// ignores SIGTERM from piling up containers: at most `replicas + max_surge`
/// serve or start, and at most `replicas` more are stopping.
pub(crate) fn max_stopping(replicas: u32) -> usize {
    usize::try_from(replicas.max(1)).unwrap_or(usize::MAX)
}

/// Holds back the removals of running old-revision replicas (a rolling
/// update's step) past what `bound` leaves to the `stopping` ones. Every other
/// action (creates, scale-downs, a deleted pod, exited replicas) goes ahead.
pub(crate) fn bound_stopping(actions: Vec<Action>, stopping: usize, bound: usize) -> Vec<Action> {
    let mut room = bound.saturating_sub(stopping);
    actions
        .into_iter()
        .filter(|a| match a {
            Action::Remove {
                running: true,
                reason: RemoveReason::Outdated,
                ..
            } => {
                let fits = room > 0;
                room = room.saturating_sub(1);
                fits
            }
            _ => true,
        })
        .collect()
}

/// Whether a pod has landed, as the controller sees it: nothing left to do,
/// and its replica counts [`converged`](crate::ReplicaCounts::converged)
/// (every desired replica current and ready, none of another revision alive).
/// "Converged" itself is defined once, in `dubernetes-api`; the status view
/// asks the same question through [`crate::status::counts`].
pub(crate) fn converged(actions: &[Action], spec: &PodSpec, observed: &[Observed]) -> bool {
    actions.is_empty() && status::counts(spec, observed, |c| c.ready, |_| false).converged()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_replicas_past_the_stopping_bound_wait() {
        let remove = |id: &str, running, reason| Action::Remove {
            id: id.into(),
            running,
            reason,
        };
        let actions = vec![
            Action::Create { count: 1 },
            remove("o1", true, RemoveReason::Outdated),
            remove("o2", true, RemoveReason::Outdated),
            remove("x", false, RemoveReason::Outdated),
            remove("s", true, RemoveReason::ScaledDown),
        ];
        // Room for one more: the first old replica goes, the second waits.
        let kept = bound_stopping(actions.clone(), 2, 3);
        assert_eq!(
            kept,
            vec![
                Action::Create { count: 1 },
                remove("o1", true, RemoveReason::Outdated),
                remove("x", false, RemoveReason::Outdated),
                remove("s", true, RemoveReason::ScaledDown),
            ]
        );
        // Full: no old running replica is taken out; the rest goes ahead.
        assert_eq!(bound_stopping(actions.clone(), 3, 3).len(), 3);
        assert_eq!(bound_stopping(actions.clone(), 0, 3), actions);
        assert_eq!((max_stopping(0), max_stopping(5)), (1, 5));
    }

    #[test]
    pub(super) fn error_backoff_is_bounded() {
        assert_eq!(error_backoff(1), Duration::from_millis(500));
        assert_eq!(error_backoff(100), Duration::from_secs(30));
    }
}

//! Rollout decisions, as pure functions of (state, observation, `now`):
//! when a new replica is trusted (the stabilization window), and when a
//! rollout is complete, still going, or failed (no progress for its deadline,
//! or too many exits of the new revision). The controller feeds them what it
//! observes and carries out the verdict; [`plan`](crate::plan::plan) does the
//! rest with the readiness these functions give it.
//!
//! The capacity rule this buys (proved by the property test below): with
//! `max_unavailable: 0`, the replicas that are ready and routed never drop
//! below `replicas` during a rollout, whatever the new revision does (crash,
//! hang, refuse connections, serve and then die inside the window), because
//! an old replica is only removed for a new one that has been ready without a
//! break for `min_ready`.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::owned_engine::Observed;

/// The stabilization window, while replicas of more than one revision run
/// (a rollout, or a rollback, is under way; a heal or a scale-up needs no
/// window): a replica that passes its check but has not for `min_ready`
/// without a break is not trusted. New-revision ones are marked not ready
/// for the planner; old-revision ones are returned, for
/// [`plan_gated`](crate::plan::plan_gated), which neither counts nor removes
/// them as unready. They all still serve: routing uses the check alone.
/// Also returns when the first of them will be trusted, for a re-check then.
pub(crate) fn gate(
    observed: &mut [Observed],
    revision: &str,
    ready_since: impl Fn(&str) -> Option<Instant>,
    min_ready: Duration,
    now: Instant,
) -> (HashSet<String>, Option<Instant>) {
    let mut untrusted_old = HashSet::new();
    let rolling = observed
        .iter()
        .any(|c| c.revision.as_deref() != Some(revision) && c.state.is_live());
    if !rolling || min_ready.is_zero() {
        return (untrusted_old, None);
    }
    let mut next: Option<Instant> = None;
    for c in observed.iter_mut().filter(|c| c.ready) {
        let trusted_at = ready_since(&c.id).map(|since| since + min_ready);
        if trusted_at.is_some_and(|at| at <= now) {
            continue;
        }
        if let Some(at) = trusted_at {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if c.revision.as_deref() == Some(revision) {
            c.ready = false;
        } else {
            untrusted_old.insert(c.id.clone());
        }
    }
    (untrusted_old, next)
}

/// Why a rollout failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailReason {
    /// No new replica got ready (or started) for `progress_deadline`.
    ProgressDeadlineExceeded,
    /// Replicas of the new revision exited `max_failures` times.
    ReplicasExiting,
}

impl FailReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailReason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            FailReason::ReplicasExiting => "ReplicasExiting",
        }
    }
}

/// A rollout in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The revision number being rolled out.
    pub number: i64,
    pub last_progress: Instant,
    /// Most new-revision replicas seen ready (by their check) at once.
    pub best_ready: usize,
    /// Most new-revision replicas seen running at once: starting them is
    /// progress too (as in Kubernetes), so a slow engine does not fail a
    /// rollout whose replicas are still being created.
    pub best_running: usize,
    /// Exits (crashes, OOM kills; not kills from outside) of new replicas.
    pub failures: u32,
    /// What the last of them said (name, exit code, log tail).
    pub last_failure: Option<String>,
}

impl Progress {
    pub(crate) fn new(number: i64, now: Instant) -> Progress {
        Progress {
            number,
            last_progress: now,
            best_ready: 0,
            best_running: 0,
            failures: 0,
            last_failure: None,
        }
    }

    /// Counts one crash of a new-revision replica.
    pub(crate) fn record_failure(&mut self, what: String) {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(what);
    }
}

/// What the controller sees of the new revision in one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RolloutObservation {
    /// New-revision replicas passing their check (stable or not).
    pub ready_new: usize,
    pub running_new: usize,
    /// Exactly `replicas` new replicas, all trusted, and nothing else live.
    pub converged: bool,
}

/// The limits of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub progress_deadline: Duration,
    pub max_failures: u32,
}

/// What to do about a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep going; look again at this time even without events.
    Continue { recheck: Instant },
    /// Fully rolled out.
    Complete,
    /// Failed: roll back.
    Fail(FailReason),
}

/// Decides a rollout's fate from what was observed now.
pub(crate) fn step(state: &mut Progress, obs: RolloutObservation, limits: Limits, now: Instant) -> Verdict {
    if obs.converged {
        return Verdict::Complete;
    }
    if state.failures >= limits.max_failures.max(1) {
        return Verdict::Fail(FailReason::ReplicasExiting);
    }
    if obs.ready_new > state.best_ready || obs.running_new > state.best_running {
        state.best_ready = state.best_ready.max(obs.ready_new);
        state.best_running = state.best_running.max(obs.running_new);
        state.last_progress = now;
    }
    let deadline = state.last_progress + limits.progress_deadline;
    if now >= deadline {
        return Verdict::Fail(FailReason::ProgressDeadlineExceeded);
    }
    Verdict::Continue { recheck: deadline }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owned_engine::ContainerState;
    use crate::plan::{Action, Desired, plan_gated};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn replica(id: &str, revision: &str, ready: bool) -> Observed {
        Observed {
            id: id.into(),
            name: id.into(),
            role: "replica".into(),
            pod: Some("p".into()),
            revision: Some(revision.into()),
            state: ContainerState::Running,
            status: String::new(),
            ip: Some("10.0.0.1".into()),
            created: 0,
            labels: HashMap::new(),
            ready,
        }
    }

    #[test]
    fn a_new_replica_is_trusted_only_after_the_window() {
        let t0 = Instant::now() + Duration::from_secs(3600); // room to look back
        let window = Duration::from_secs(5);
        let since = |id: &str| match id {
            "n1" => Some(t0),
            "o1" => Some(t0 - Duration::from_secs(60)),
            _ => None,
        };
        let mut obs = [replica("o1", "r1", true), replica("n1", "r2", true)];
        let (untrusted, next) = gate(&mut obs, "r2", since, window, t0 + Duration::from_secs(2));
        assert!(!obs[1].ready && obs[0].ready && untrusted.is_empty());
        assert_eq!(next, Some(t0 + window));
        let mut obs = [replica("o1", "r1", true), replica("n1", "r2", true)];
        assert_eq!(gate(&mut obs, "r2", since, window, t0 + window).1, None);
        assert!(obs[1].ready);
        // Rolled back to r1: the failed revision's young replicas serve but are not trusted.
        let mut obs = [replica("o1", "r1", true), replica("n1", "r2", true)];
        let (untrusted, _) = gate(&mut obs, "r1", since, window, t0 + Duration::from_secs(2));
        assert!(obs[1].ready && untrusted.contains("n1"));
        // No other revision left: no window (a heal is not a rollout).
        let mut obs = [replica("n2", "r2", true)];
        gate(&mut obs, "r2", |_| None, window, t0);
        assert!(obs[0].ready);
    }

    #[test]
    fn exits_fail_fast_and_the_deadline_still_holds() {
        let t0 = Instant::now() + Duration::from_secs(3600); // room to look back
        let limits = Limits {
            progress_deadline: Duration::from_secs(60),
            max_failures: 3,
        };
        let obs = RolloutObservation {
            ready_new: 0,
            running_new: 1,
            converged: false,
        };
        let mut p = Progress::new(2, t0);
        assert!(matches!(step(&mut p, obs, limits, t0), Verdict::Continue { .. }));
        p.record_failure("a".into());
        p.record_failure("b".into());
        assert!(matches!(step(&mut p, obs, limits, t0), Verdict::Continue { .. }));
        p.record_failure("c".into());
        assert_eq!(
            step(&mut p, obs, limits, t0),
            Verdict::Fail(FailReason::ReplicasExiting)
        );

        let mut p = Progress::new(2, t0);
        assert_eq!(
            step(&mut p, obs, limits, t0),
            Verdict::Continue {
                recheck: t0 + limits.progress_deadline
            }
        );
        assert_eq!(
            step(&mut p, obs, limits, t0 + Duration::from_secs(60)),
            Verdict::Fail(FailReason::ProgressDeadlineExceeded)
        );
        let done = RolloutObservation { converged: true, ..obs };
        assert_eq!(step(&mut p, done, limits, t0), Verdict::Complete);
    }

    /// What a replica of the new revision does, in ticks after it starts.
    #[derive(Debug, Clone, Copy)]
    enum Behaviour {
        /// Ready after this many ticks, for good.
        Good(u32),
        /// Exits after this many ticks without ever being ready.
        Crash(u32),
        /// Runs but never passes its check (hangs, or refuses connections).
        Hang,
        /// Ready after `ready` ticks, exits `lives` ticks later (inside the window).
        ServeThenDie { ready: u32, lives: u32 },
    }

    fn behaviour() -> impl Strategy<Value = Behaviour> {
        prop_oneof![
            (0u32..8).prop_map(Behaviour::Good),
            (0u32..4).prop_map(Behaviour::Crash),
            Just(Behaviour::Hang),
            (0u32..3, 0u32..(WINDOW_TICKS - 1)).prop_map(|(ready, lives)| Behaviour::ServeThenDie { ready, lives }),
        ]
    }

    const TICK: Duration = Duration::from_millis(500);
    const WINDOW_TICKS: u32 = 4;

    struct Sim {
        id: String,
        revision: String,
        behaviour: Behaviour,
        age: u32,
        ready_since: Option<Instant>,
        exited: bool,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// With `max_unavailable: 0` the ready (routed) replicas never drop
        /// below `replicas` during a rollout, whatever the new revision does;
        /// and the pod ends on exactly `replicas` ready replicas of one
        /// revision: the new one, or the old one after a rollback.
        #[test]
        fn capacity_never_drops_below_replicas(
            replicas in 1u32..5,
            max_surge in 1u32..3,
            behaviours in proptest::collection::vec(behaviour(), 1..12),
            just_healed in 0u32..3,
        ) {
            let t0 = Instant::now() + Duration::from_secs(3600); // room to look back
            let limits = Limits { progress_deadline: Duration::from_secs(10), max_failures: 3 };
            let window = TICK * WINDOW_TICKS;
            let mut pod: Vec<Sim> = (0..replicas)
                .map(|i| Sim {
                    id: format!("old{i}"),
                    revision: "r1".into(),
                    behaviour: Behaviour::Good(0),
                    age: 100,
                    // Some old replicas may have been replaced (healed) just
                    // before the rollout: ready, but not for the window yet.
                    ready_since: Some(if i < just_healed { t0 } else { t0 - TICK * 100 }),
                    exited: false,
                })
                .collect();
            let mut desired = Desired { replicas, revision: "r2".into(), max_surge, max_unavailable: 0, recreate: false };
            let mut progress = Some(Progress::new(2, t0));
            let mut created = 0usize;
            let mut rolled_back = false;
            for tick in 1..400u32 {
                let now = t0 + TICK * tick;
                // The replicas act.
                for s in pod.iter_mut() {
                    s.age += 1;
                    let (ready, exit) = match s.behaviour {
                        Behaviour::Good(after) => (s.age > after, false),
                        Behaviour::Crash(after) => (false, s.age > after),
                        Behaviour::Hang => (false, false),
                        Behaviour::ServeThenDie { ready, lives } => {
                            (s.age > ready && s.age <= ready + 1 + lives, s.age > ready + 1 + lives)
                        }
                    };
                    if exit && !s.exited {
                        s.exited = true;
                    }
                    if s.exited || !ready {
                        s.ready_since = None;
                    } else if s.ready_since.is_none() {
                        s.ready_since = Some(now);
                    }
                }
                // Observe, gate, decide.
                let mut observed: Vec<Observed> = pod
                    .iter()
                    .map(|s| {
                        let mut o = replica(&s.id, &s.revision, s.ready_since.is_some());
                        if s.exited {
                            o.state = ContainerState::Exited;
                        }
                        o
                    })
                    .collect();
                let since: HashMap<String, Instant> =
                    pod.iter().filter_map(|s| Some((s.id.clone(), s.ready_since?))).collect();
                let raw_ready_new = observed
                    .iter()
                    .filter(|c| c.ready && c.revision.as_deref() == Some(desired.revision.as_str()))
                    .count();
                let running_new = observed
                    .iter()
                    .filter(|c| c.state.is_live() && c.revision.as_deref() == Some(desired.revision.as_str()))
                    .count();
                let (untrusted, _) = gate(&mut observed, &desired.revision, |id| since.get(id).copied(), window, now);
                let actions = plan_gated(Some(&desired), &observed, &untrusted);
                let trusted = observed
                    .iter()
                    .filter(|c| c.ready && c.revision.as_deref() == Some(desired.revision.as_str()))
                    .count();
                let converged = actions.is_empty()
                    && trusted == replicas as usize
                    && observed.iter().all(|c| c.revision.as_deref() == Some(desired.revision.as_str()));
                if let Some(p) = progress.as_mut() {
                    let obs = RolloutObservation { ready_new: raw_ready_new, running_new, converged };
                    match step(p, obs, limits, now) {
                        Verdict::Complete => progress = None,
                        Verdict::Continue { .. } => {}
                        Verdict::Fail(_) => {
                            prop_assert!(!rolled_back, "the rolled-back revision failed too");
                            rolled_back = true;
                            desired.revision = "r1".into();
                            progress = Some(Progress::new(3, now));
                            continue;
                        }
                    }
                }
                // Act: removals first (a drained replica is out of the ingress at once).
                for a in &actions {
                    match a {
                        Action::Remove { id, reason, .. } => {
                            if *reason == crate::plan::RemoveReason::Exited
                                && let Some(p) = progress.as_mut()
                            {
                                p.record_failure(id.clone());
                            }
                            pod.retain(|s| &s.id != id);
                        }
                        Action::Create { count } => {
                            for _ in 0..*count {
                                let behaviour = if desired.revision == "r2" {
                                    let b = behaviours[created % behaviours.len()];
                                    created += 1;
                                    b
                                } else {
                                    Behaviour::Good(1)
                                };
                                pod.push(Sim {
                                    id: format!("n{tick}-{}", pod.len()),
                                    revision: desired.revision.clone(),
                                    behaviour,
                                    age: 0,
                                    ready_since: None,
                                    exited: false,
                                });
                            }
                        }
                        Action::Start { .. } => {}
                    }
                }
                let ready = pod.iter().filter(|s| s.ready_since.is_some() && !s.exited).count();
                prop_assert!(
                    ready >= replicas as usize,
                    "tick {tick}: {ready} of {replicas} ready after {actions:?}"
                );
                if progress.is_none() {
                    break;
                }
            }
            prop_assert!(progress.is_none(), "the rollout neither completed nor failed");
            prop_assert_eq!(pod.len(), replicas as usize);
            prop_assert!(pod.iter().all(|s| s.revision == desired.revision && s.ready_since.is_some()));
        }
    }
}

//! The pure heart of the controller: given what a pod should be and what the
//! engine shows, decide what to do. No IO here, so it is tested exhaustively
//! without Docker.

use std::collections::HashSet;

use crate::owned_engine::{ContainerState, Observed};

/// What a pod should be, as far as the planner cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Desired {
    pub replicas: u32,
    pub revision: String,
    /// Replicas allowed above `replicas` during a rollout.
    pub max_surge: u32,
    /// Ready replicas allowed below `replicas` during a rollout.
    pub max_unavailable: u32,
    /// `update.strategy: recreate`: no replica of the current revision is
    /// created while any container of another revision is still there.
    pub recreate: bool,
}

impl Desired {
    /// What `spec` asks of the planner.
    pub(crate) fn of(spec: &crate::spec::PodSpec) -> Desired {
        let strategy = spec.update_strategy();
        Desired {
            replicas: spec.desired_replicas(),
            revision: spec.revision_hash(),
            max_surge: strategy.max_surge,
            max_unavailable: strategy.max_unavailable,
            recreate: strategy.strategy == crate::spec::Strategy::Recreate,
        }
    }
}

/// Why a container is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoveReason {
    /// The pod was deleted.
    PodDeleted,
    /// More replicas run than desired.
    ScaledDown,
    /// It runs an old revision and enough new ones are ready.
    Outdated,
    /// It exited or died and will be replaced.
    Exited,
}

impl RemoveReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RemoveReason::PodDeleted => "pod deleted",
            RemoveReason::ScaledDown => "scaled down",
            RemoveReason::Outdated => "replaced by a new revision",
            RemoveReason::Exited => "exited",
        }
    }
}

/// One step towards the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Create and start this many replicas of the current revision.
    Create { count: u32 },
    /// Start a container that was created but never started (e.g. the server died in between).
    Start { id: String },
    /// Remove a container; `running` ones are taken out of the ingress first.
    Remove {
        id: String,
        running: bool,
        reason: RemoveReason,
    },
}

/// Plans one pod. `observed` holds that pod's containers only, with `ready`
/// set by the caller (running, passing its check, routed).
///
/// The rules:
/// - a deleted pod loses every container;
/// - exited or dead containers are removed (the current revision's are replaced);
/// - extra replicas of the current revision are removed, unready and newest first;
/// - missing ones are created all at once, as far as `max_surge` allows while
///   old-revision replicas still run;
/// - old-revision replicas are removed when they are not ready, or when
///   enough replicas are ready that removing them keeps at least
///   `replicas - max_unavailable` ready;
/// - with `recreate`, every old-revision replica is removed at once, and no
///   replica of the current revision is created while any container of
///   another revision is still there, in any state (one being drained or
///   removed is passed in as [`ContainerState::Removing`]): the old and the
///   new revision never run together.
pub(crate) fn plan(desired: Option<&Desired>, observed: &[Observed]) -> Vec<Action> {
    plan_gated(desired, observed, &HashSet::new())
}

/// [`plan`], where the old-revision replicas in `untrusted` pass their check
/// but are not trusted yet (ready for less than the stabilization window,
/// see [`crate::rollout::gate`]): they serve, so they are not removed as
/// unready, but they do not count as available either; they go once the
/// others are enough.
pub(crate) fn plan_gated(desired: Option<&Desired>, observed: &[Observed], untrusted: &HashSet<String>) -> Vec<Action> {
    let remove = |c: &Observed, reason| Action::Remove {
        id: c.id.clone(),
        running: c.state == ContainerState::Running,
        reason,
    };
    let Some(desired) = desired else {
        return observed
            .iter()
            .filter(|c| c.state != ContainerState::Removing)
            .map(|c| remove(c, RemoveReason::PodDeleted))
            .collect();
    };
    let mut actions = Vec::new();
    let wanted = desired.replicas as usize;
    let (current, stale): (Vec<&Observed>, Vec<&Observed>) = observed
        .iter()
        .partition(|c| c.revision.as_deref() == Some(desired.revision.as_str()));

    let mut live_new: Vec<&Observed> = Vec::new();
    for c in current {
        if c.state.is_live() {
            live_new.push(c);
        } else if c.state != ContainerState::Removing {
            actions.push(remove(c, RemoveReason::Exited));
        }
    }
    let old_present = !stale.is_empty();
    let mut live_old: Vec<&Observed> = Vec::new();
    for c in stale {
        if c.state.is_live() {
            live_old.push(c);
        } else if c.state != ContainerState::Removing {
            actions.push(remove(c, RemoveReason::Outdated));
        }
    }

    if live_new.len() > wanted {
        // Keep ready, then running, then oldest; remove the rest, unready and newest first.
        live_new.sort_by_key(|c| (!c.ready, c.state != ContainerState::Running, c.created, c.id.clone()));
        let mut extra = live_new.split_off(wanted);
        extra.sort_by_key(|c| {
            (
                c.ready,
                c.state == ContainerState::Running,
                std::cmp::Reverse(c.created),
            )
        });
        for c in extra {
            actions.push(remove(c, RemoveReason::ScaledDown));
        }
    }
    for c in &live_new {
        if c.state == ContainerState::Created {
            actions.push(Action::Start { id: c.id.clone() });
        }
    }

    if desired.recreate {
        for c in &live_old {
            actions.push(remove(c, RemoveReason::Outdated));
        }
        let missing = wanted.saturating_sub(live_new.len());
        if missing > 0 && !old_present {
            actions.push(Action::Create { count: missing as u32 });
        }
        return actions;
    }

    // Old replicas that are not ready serve nobody: remove them at once.
    let (ready_old, unready_old): (Vec<&Observed>, Vec<&Observed>) = live_old.into_iter().partition(|c| c.ready);
    for c in &unready_old {
        actions.push(remove(c, RemoveReason::Outdated));
    }
    let (mut ready_old, untrusted_old): (Vec<&Observed>, Vec<&Observed>) =
        ready_old.into_iter().partition(|c| !untrusted.contains(&c.id));
    let ready_new = live_new.iter().filter(|c| c.ready).count();
    let min_available = wanted.saturating_sub(desired.max_unavailable as usize);
    let removable = (ready_new + ready_old.len())
        .saturating_sub(min_available)
        .min(ready_old.len());
    ready_old.sort_by_key(|c| (c.created, c.id.clone()));
    for c in ready_old.iter().take(removable) {
        actions.push(remove(c, RemoveReason::Outdated));
    }
    let mut old_left = ready_old.len() - removable;
    if ready_new + old_left >= min_available {
        for c in &untrusted_old {
            actions.push(remove(c, RemoveReason::Outdated));
        }
    } else {
        old_left += untrusted_old.len();
    }

    let missing = wanted.saturating_sub(live_new.len());
    let room = (wanted + desired.max_surge as usize).saturating_sub(live_new.len() + old_left);
    let create = missing.min(room);
    if create > 0 {
        actions.push(Action::Create { count: create as u32 });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn container(id: &str, revision: &str, state: ContainerState, created: i64) -> Observed {
        Observed {
            id: id.into(),
            name: id.into(),
            role: "replica".into(),
            pod: Some("p".into()),
            revision: Some(revision.into()),
            state,
            status: String::new(),
            ip: None,
            created,
            labels: HashMap::new(),
            ready: state == ContainerState::Running,
        }
    }

    fn unready(mut c: Observed) -> Observed {
        c.ready = false;
        c
    }

    fn desired(replicas: u32) -> Desired {
        Desired {
            replicas,
            revision: "r2".into(),
            max_surge: 1,
            max_unavailable: 0,
            recreate: false,
        }
    }

    fn recreate(replicas: u32) -> Desired {
        Desired {
            recreate: true,
            ..desired(replicas)
        }
    }

    use ContainerState::*;

    #[test]
    fn empty_pod_creates_all_replicas_at_once() {
        assert_eq!(plan(Some(&desired(30)), &[]), [Action::Create { count: 30 }]);
    }

    #[test]
    fn converged_pod_needs_nothing() {
        let observed = [container("a", "r2", Running, 1), container("b", "r2", Running, 2)];
        assert_eq!(plan(Some(&desired(2)), &observed), []);
    }

    #[test]
    fn scale_up_is_not_limited_by_surge() {
        let observed = [container("a", "r2", Running, 1)];
        assert_eq!(plan(Some(&desired(5)), &observed), [Action::Create { count: 4 }]);
    }

    #[test]
    fn zero_replicas_removes_everything() {
        let observed = [container("a", "r2", Running, 1), container("b", "r1", Running, 2)];
        let actions = plan(Some(&desired(0)), &observed);
        assert_eq!(actions.len(), 2);
        assert!(actions.iter().all(|a| matches!(a, Action::Remove { .. })));
    }

    #[test]
    fn scale_down_removes_unready_and_newest_first() {
        let observed = [
            container("old", "r2", Running, 1),
            container("new", "r2", Running, 5),
            container("unstarted", "r2", Created, 0),
        ];
        assert_eq!(
            plan(Some(&desired(1)), &observed),
            [
                Action::Remove {
                    id: "unstarted".into(),
                    running: false,
                    reason: RemoveReason::ScaledDown
                },
                Action::Remove {
                    id: "new".into(),
                    running: true,
                    reason: RemoveReason::ScaledDown
                },
            ]
        );
        let observed = [
            container("ready", "r2", Running, 5),
            unready(container("starting", "r2", Running, 1)),
        ];
        assert_eq!(
            plan(Some(&desired(1)), &observed),
            [Action::Remove {
                id: "starting".into(),
                running: true,
                reason: RemoveReason::ScaledDown
            }]
        );
    }

    #[test]
    fn exited_replicas_are_removed_and_replaced() {
        let observed = [container("a", "r2", Running, 1), container("dead", "r2", Exited, 2)];
        assert_eq!(
            plan(Some(&desired(2)), &observed),
            [
                Action::Remove {
                    id: "dead".into(),
                    running: false,
                    reason: RemoveReason::Exited
                },
                Action::Create { count: 1 },
            ]
        );
    }

    #[test]
    fn created_but_unstarted_replicas_are_started_not_duplicated() {
        let observed = [unready(container("a", "r2", Created, 1))];
        assert_eq!(plan(Some(&desired(1)), &observed), [Action::Start { id: "a".into() }]);
    }

    #[test]
    fn rolling_update_surges_one_and_never_drops_below_desired() {
        let d = desired(3);
        let old = |id: &str, t| container(id, "r1", Running, t);
        // Start: one surge replica.
        assert_eq!(
            plan(Some(&d), &[old("o1", 1), old("o2", 2), old("o3", 3)]),
            [Action::Create { count: 1 }]
        );
        // The new one is not ready yet: wait.
        let starting = unready(container("n1", "r2", Running, 4));
        assert_eq!(
            plan(Some(&d), &[old("o1", 1), old("o2", 2), old("o3", 3), starting.clone()]),
            []
        );
        // It is ready: the oldest old one goes, and the next new one is started.
        let n1 = container("n1", "r2", Running, 4);
        assert_eq!(
            plan(Some(&d), &[old("o1", 1), old("o2", 2), old("o3", 3), n1.clone()]),
            [
                Action::Remove {
                    id: "o1".into(),
                    running: true,
                    reason: RemoveReason::Outdated
                },
                Action::Create { count: 1 },
            ]
        );
        // All new ready: the last old one goes.
        let all_new = [
            container("n1", "r2", Running, 4),
            container("n2", "r2", Running, 5),
            container("n3", "r2", Running, 6),
        ];
        let mut with_old = all_new.to_vec();
        with_old.push(old("o3", 3));
        assert_eq!(
            plan(Some(&d), &with_old),
            [Action::Remove {
                id: "o3".into(),
                running: true,
                reason: RemoveReason::Outdated
            }]
        );
    }

    #[test]
    fn max_unavailable_without_surge_removes_first() {
        let d = Desired {
            replicas: 2,
            revision: "r2".into(),
            max_surge: 0,
            max_unavailable: 1,
            recreate: false,
        };
        let observed = [container("o1", "r1", Running, 1), container("o2", "r1", Running, 2)];
        assert_eq!(
            plan(Some(&d), &observed),
            [
                Action::Remove {
                    id: "o1".into(),
                    running: true,
                    reason: RemoveReason::Outdated
                },
                Action::Create { count: 1 }
            ]
        );
    }

    #[test]
    fn a_new_revision_that_never_gets_ready_keeps_the_old_serving() {
        let d = desired(2);
        let observed = [
            container("o1", "r1", Running, 1),
            container("o2", "r1", Running, 2),
            unready(container("n1", "r2", Running, 3)),
        ];
        assert_eq!(plan(Some(&d), &observed), []);
        let observed = [
            container("o1", "r1", Running, 1),
            container("o2", "r1", Running, 2),
            container("n1", "r2", Exited, 3),
        ];
        assert_eq!(
            plan(Some(&d), &observed),
            [
                Action::Remove {
                    id: "n1".into(),
                    running: false,
                    reason: RemoveReason::Exited
                },
                Action::Create { count: 1 }
            ]
        );
    }

    #[test]
    fn unready_old_replicas_go_at_once() {
        let observed = [
            unready(container("o1", "r1", Running, 1)),
            container("o2", "r1", Exited, 2),
        ];
        assert_eq!(
            plan(Some(&desired(1)), &observed),
            [
                Action::Remove {
                    id: "o2".into(),
                    running: false,
                    reason: RemoveReason::Outdated
                },
                Action::Remove {
                    id: "o1".into(),
                    running: true,
                    reason: RemoveReason::Outdated
                },
                Action::Create { count: 1 },
            ]
        );
    }

    #[test]
    fn deleted_pod_loses_everything() {
        let observed = [container("a", "r2", Running, 1), container("b", "r1", Exited, 2)];
        assert_eq!(
            plan(None, &observed),
            [
                Action::Remove {
                    id: "a".into(),
                    running: true,
                    reason: RemoveReason::PodDeleted
                },
                Action::Remove {
                    id: "b".into(),
                    running: false,
                    reason: RemoveReason::PodDeleted
                },
            ]
        );
    }

    #[test]
    fn containers_being_removed_are_left_alone() {
        let observed = [container("a", "r2", Removing, 1), container("b", "r1", Removing, 2)];
        assert_eq!(plan(Some(&desired(1)), &observed), [Action::Create { count: 1 }]);
        assert_eq!(plan(None, &observed), []);
    }

    #[test]
    fn recreate_removes_every_old_replica_before_creating_any() {
        let d = recreate(2);
        let old = |id: &str, t| container(id, "r1", Running, t);
        // Ready old replicas all go at once; nothing new yet.
        assert_eq!(
            plan(Some(&d), &[old("o1", 1), old("o2", 2)]),
            [
                Action::Remove {
                    id: "o1".into(),
                    running: true,
                    reason: RemoveReason::Outdated
                },
                Action::Remove {
                    id: "o2".into(),
                    running: true,
                    reason: RemoveReason::Outdated
                },
            ]
        );
        // One is still being drained or removed: it blocks the creates, and is left alone.
        assert_eq!(plan(Some(&d), &[container("o1", "r1", Removing, 1)]), []);
        // An exited old one is removed first, the creates wait for it to be gone.
        assert_eq!(
            plan(Some(&d), &[container("o1", "r1", Exited, 1)]),
            [Action::Remove {
                id: "o1".into(),
                running: false,
                reason: RemoveReason::Outdated
            }]
        );
        // Nothing of the old revision left: all new replicas at once, surge or not.
        assert_eq!(plan(Some(&d), &[]), [Action::Create { count: 2 }]);
        let n1 = unready(container("n1", "r2", Running, 3));
        assert_eq!(plan(Some(&d), std::slice::from_ref(&n1)), [Action::Create { count: 1 }]);
        // A new replica that exits is replaced as with rolling (same revision).
        assert_eq!(
            plan(Some(&d), &[n1, container("n2", "r2", Exited, 4)]),
            [
                Action::Remove {
                    id: "n2".into(),
                    running: false,
                    reason: RemoveReason::Exited
                },
                Action::Create { count: 1 }
            ]
        );
        // Scaling and a deleted pod work as with rolling.
        assert_eq!(
            plan(
                Some(&recreate(1)),
                &[container("a", "r2", Running, 1), container("b", "r2", Running, 2)]
            ),
            [Action::Remove {
                id: "b".into(),
                running: true,
                reason: RemoveReason::ScaledDown
            }]
        );
    }

    /// The recreate guarantee, over random mixes of states, with a simulated
    /// engine where a removal of a running replica takes a round (it drains):
    /// a live replica of the current revision never coexists with any
    /// container of another revision, and the plan converges.
    #[test]
    fn recreate_never_overlaps_revisions() {
        let states = [Created, Running, Exited, Dead, Restarting, Removing];
        let mut seed = 11u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..2000 {
            let d = recreate((next() % 5) as u32);
            let mut observed: Vec<Observed> = (0..next() % 6)
                .map(|i| container(&format!("o{i}"), "r1", states[next() % states.len()], i as i64))
                .collect();
            let mut fresh = 0;
            let mut rounds = 0;
            loop {
                // Containers being drained finish and go.
                observed.retain(|c| c.state != Removing);
                let actions = plan(Some(&d), &observed);
                if actions.is_empty() {
                    break;
                }
                rounds += 1;
                assert!(rounds < 10, "no convergence: {observed:?}");
                for action in actions {
                    match action {
                        Action::Create { count } => {
                            assert!(
                                observed.iter().all(|c| c.revision.as_deref() == Some("r2")),
                                "created beside an old container: {observed:?}"
                            );
                            for _ in 0..count {
                                fresh += 1;
                                observed.push(container(&format!("n{fresh}"), "r2", Running, 100 + fresh));
                            }
                        }
                        Action::Start { id } => {
                            if let Some(c) = observed.iter_mut().find(|c| c.id == id) {
                                c.state = Running;
                            }
                        }
                        Action::Remove { id, running: true, .. } => {
                            if let Some(c) = observed.iter_mut().find(|c| c.id == id) {
                                c.state = Removing;
                            }
                        }
                        Action::Remove { id, .. } => observed.retain(|c| c.id != id),
                    }
                }
                for c in observed.iter_mut().filter(|c| c.state == Restarting) {
                    c.state = Running;
                }
            }
            assert_eq!(observed.len(), d.replicas as usize, "{observed:?}");
        }
    }

    /// Properties, over random mixes of states and strategies, with a simulated
    /// engine where creates start running and become ready one round later:
    /// - ready replicas never drop below `replicas - max_unavailable` once they were there;
    /// - live replicas never exceed `replicas + max_surge` (plus the ones already above it);
    /// - it converges to exactly `replicas` ready replicas of the current revision.
    #[test]
    fn plans_converge_and_respect_the_strategy() {
        let states = [Created, Running, Exited, Dead, Restarting];
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..3000 {
            let replicas = (next() % 6) as u32;
            let max_surge = (next() % 3) as u32;
            let max_unavailable = if max_surge == 0 {
                1 + (next() % 2) as u32
            } else {
                (next() % 2) as u32
            };
            let d = Desired {
                replicas,
                revision: "r2".into(),
                max_surge,
                max_unavailable,
                recreate: false,
            };
            let mut observed: Vec<Observed> = (0..next() % 8)
                .map(|i| {
                    let revision = if next() % 2 == 0 { "r1" } else { "r2" };
                    container(&format!("c{i}"), revision, states[next() % states.len()], i as i64)
                })
                .collect();
            let floor = |obs: &[Observed]| obs.iter().filter(|c| c.ready).count();
            let min_available = (replicas.saturating_sub(max_unavailable)) as usize;
            let mut fresh = 100;
            let mut rounds = 0;
            loop {
                let actions = plan(Some(&d), &observed);
                if actions.is_empty() {
                    if observed.iter().any(|c| c.state == Restarting) {
                        // The engine finishes its own restarts; then look again.
                        for c in observed.iter_mut().filter(|c| c.state == Restarting) {
                            c.state = Running;
                            c.ready = true;
                        }
                        continue;
                    }
                    break;
                }
                rounds += 1;
                assert!(rounds < 40, "no convergence: {observed:?}");
                let ready_before = floor(&observed);
                let live_before = observed.iter().filter(|c| c.state.is_live()).count();
                // New containers from the previous round become ready.
                for c in observed.iter_mut() {
                    if c.state == Restarting || c.state == Created {
                        c.state = Running;
                    }
                }
                for action in actions {
                    match action {
                        Action::Create { count } => {
                            for _ in 0..count {
                                fresh += 1;
                                observed.push(unready(container(&format!("n{fresh}"), "r2", Running, fresh)));
                            }
                        }
                        Action::Start { id } => {
                            if let Some(c) = observed.iter_mut().find(|c| c.id == id) {
                                c.state = Running;
                            }
                        }
                        Action::Remove { id, .. } => observed.retain(|c| c.id != id),
                    }
                }
                let ready_after = floor(&observed);
                assert!(
                    ready_after >= min_available.min(ready_before),
                    "ready dropped from {ready_before} to {ready_after} (floor {min_available}): {observed:?}"
                );
                let live_after = observed.iter().filter(|c| c.state.is_live()).count();
                let ceiling = (replicas + max_surge) as usize;
                assert!(
                    live_after <= ceiling.max(live_before),
                    "{live_after} live > {ceiling}: {observed:?}"
                );
                for c in observed.iter_mut() {
                    c.ready = c.state == Running;
                }
            }
            assert_eq!(observed.len(), replicas as usize, "{observed:?}");
            assert!(observed.iter().all(|c| c.revision.as_deref() == Some("r2") && c.ready));
        }
    }
}

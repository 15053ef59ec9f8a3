//! The pure heart of the controller: given what a pod should be and what the
//! engine shows, decide what to do. No IO here, so it is tested exhaustively
//! without Docker.

use crate::runtime::{ContainerState, Observed};

/// What a pod should be, as far as the planner cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Desired {
    pub replicas: u32,
    pub revision: String,
}

/// Why a container is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoveReason {
    /// The pod was deleted.
    PodDeleted,
    /// More replicas run than desired.
    ScaledDown,
    /// It runs an old revision and enough new ones are running.
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

/// Plans one pod. `observed` holds that pod's containers only.
///
/// The rules:
/// - a deleted pod loses every container;
/// - exited or dead containers are removed (the current revision's are replaced);
/// - missing replicas of the current revision are created all at once;
/// - extra ones are removed, never-started and newest first;
/// - containers of an old revision keep serving until as many current ones
///   run as are desired, then they are removed.
pub(crate) fn plan(desired: Option<&Desired>, observed: &[Observed]) -> Vec<Action> {
    let remove = |c: &Observed, reason| Action::Remove {
        id: c.id.clone(),
        running: c.state == ContainerState::Running,
        reason,
    };
    let Some(desired) = desired else {
        return observed.iter().map(|c| remove(c, RemoveReason::PodDeleted)).collect();
    };
    let mut actions = Vec::new();
    let (current, stale): (Vec<&Observed>, Vec<&Observed>) = observed
        .iter()
        .partition(|c| c.revision.as_deref() == Some(desired.revision.as_str()));

    let mut live: Vec<&Observed> = Vec::new();
    for c in current {
        if c.state.is_live() {
            live.push(c);
        } else if c.state != ContainerState::Removing {
            actions.push(remove(c, RemoveReason::Exited));
        }
    }
    let wanted = desired.replicas as usize;
    if live.len() > wanted {
        // Keep running, oldest first: remove never-started and newest first.
        live.sort_by_key(|c| (c.state != ContainerState::Running, c.created, c.id.clone()));
        let mut extra = live.split_off(wanted);
        extra.sort_by_key(|c| (c.state == ContainerState::Running, std::cmp::Reverse(c.created)));
        for c in extra {
            actions.push(remove(c, RemoveReason::ScaledDown));
        }
    }
    for c in &live {
        if c.state == ContainerState::Created {
            actions.push(Action::Start { id: c.id.clone() });
        }
    }
    if live.len() < wanted {
        actions.push(Action::Create {
            count: (wanted - live.len()) as u32,
        });
    }
    let running_current = live.iter().filter(|c| c.state == ContainerState::Running).count();
    for c in stale {
        if c.state == ContainerState::Removing {
            continue;
        }
        if c.state != ContainerState::Running || running_current >= wanted {
            actions.push(remove(c, RemoveReason::Outdated));
        }
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
        }
    }

    fn desired(replicas: u32) -> Desired {
        Desired {
            replicas,
            revision: "r2".into(),
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
    fn zero_replicas_removes_everything_but_keeps_nothing_running() {
        let observed = [container("a", "r2", Running, 1), container("b", "r1", Running, 2)];
        let actions = plan(Some(&desired(0)), &observed);
        assert_eq!(actions.len(), 2);
        assert!(actions.iter().all(|a| matches!(a, Action::Remove { .. })));
    }

    #[test]
    fn scale_down_removes_newest_and_unstarted_first() {
        let observed = [
            container("old", "r2", Running, 1),
            container("new", "r2", Running, 5),
            container("unstarted", "r2", Created, 0),
        ];
        let actions = plan(Some(&desired(1)), &observed);
        assert_eq!(
            actions,
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
        let observed = [container("a", "r2", Created, 1)];
        assert_eq!(plan(Some(&desired(1)), &observed), [Action::Start { id: "a".into() }]);
    }

    #[test]
    fn stale_replicas_serve_until_the_new_revision_runs() {
        let observed = [container("o1", "r1", Running, 1), container("o2", "r1", Running, 2)];
        assert_eq!(plan(Some(&desired(2)), &observed), [Action::Create { count: 2 }]);
        let observed = [
            container("o1", "r1", Running, 1),
            container("o2", "r1", Running, 2),
            container("n1", "r2", Running, 3),
            container("n2", "r2", Created, 4),
        ];
        assert_eq!(plan(Some(&desired(2)), &observed), [Action::Start { id: "n2".into() }]);
        let observed = [
            container("o1", "r1", Running, 1),
            container("o2", "r1", Exited, 2),
            container("n1", "r2", Running, 3),
            container("n2", "r2", Running, 4),
        ];
        assert_eq!(
            plan(Some(&desired(2)), &observed),
            [
                Action::Remove {
                    id: "o1".into(),
                    running: true,
                    reason: RemoveReason::Outdated
                },
                Action::Remove {
                    id: "o2".into(),
                    running: false,
                    reason: RemoveReason::Outdated
                },
            ]
        );
    }

    #[test]
    fn stopped_stale_replicas_are_removed_at_once() {
        let observed = [container("o1", "r1", Exited, 1)];
        assert_eq!(
            plan(Some(&desired(1)), &observed),
            [
                Action::Create { count: 1 },
                Action::Remove {
                    id: "o1".into(),
                    running: false,
                    reason: RemoveReason::Outdated
                }
            ]
        );
    }

    #[test]
    fn deleted_pod_loses_everything() {
        let observed = [container("a", "r2", Running, 1), container("b", "r1", Exited, 2)];
        let actions = plan(None, &observed);
        assert_eq!(
            actions,
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
    }

    /// Property: applying the plan to the observed set (a simulated engine
    /// where creates succeed and start running) converges in at most three
    /// rounds to exactly `replicas` running containers of the current revision.
    #[test]
    fn plans_converge_from_any_mix() {
        let states = [Created, Running, Exited, Dead, Restarting];
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..2000 {
            let replicas = (next() % 6) as u32;
            let mut observed: Vec<Observed> = (0..next() % 8)
                .map(|i| {
                    let revision = if next() % 2 == 0 { "r1" } else { "r2" };
                    container(&format!("c{i}"), revision, states[next() % states.len()], i as i64)
                })
                .collect();
            let mut fresh = 100;
            for _round in 0..3 {
                let actions = plan(Some(&desired(replicas)), &observed);
                for action in actions {
                    match action {
                        Action::Create { count } => {
                            for _ in 0..count {
                                fresh += 1;
                                observed.push(container(&format!("n{fresh}"), "r2", Running, fresh));
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
                for c in observed.iter_mut().filter(|c| c.state == Restarting) {
                    c.state = Running;
                }
            }
            assert_eq!(plan(Some(&desired(replicas)), &observed), [], "{observed:?}");
            assert_eq!(observed.len(), replicas as usize, "{observed:?}");
            assert!(
                observed
                    .iter()
                    .all(|c| c.revision.as_deref() == Some("r2") && c.state == Running)
            );
        }
    }
}

//! A pod's status, in one place: a pure function from what the store, the
//! engine, the probes, the ingress and the controller know of a pod to the
//! [`Pod`] view the API shows.
//!
//! "Converged" itself is [`ReplicaCounts::converged`] (in `dubernetes-api`,
//! because `dubectl` asks it of the views it receives); this module counts
//! what it is decided on, and everything in the core that asks whether a pod
//! is converged asks it through here.

use std::collections::HashSet;

use dubernetes_api::{
    Condition, ConditionType, ContainerState, Phase, Pod, PodSpec, PodStatus, Replica, ReplicaCounts, RolloutOutcome,
};

use crate::owned_engine::Observed;
use crate::store::StoredPod;

/// What the probes and the drain know of one replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReplicaProbe {
    /// Its readiness check passes.
    pub ready: bool,
    /// The last failure of its readiness check.
    pub last_error: Option<String>,
    /// It is being drained (out of the ingress, on its way out).
    pub draining: bool,
}

/// What the controller knows of a pod beyond the engine's list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ControllerStatus {
    /// The generation the controller last reconciled.
    pub observed_generation: i64,
    /// Replicas that exited and were replaced.
    pub restarts: u32,
    /// Exit code of the last replica that exited.
    pub last_exit_code: Option<i64>,
    /// Why the pod is failing (e.g. `CrashLoopBackOff`).
    pub reason: Option<String>,
    /// Details, for people.
    pub message: Option<String>,
}

/// What the ingress says of a pod's routes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routes<'a> {
    /// Ids of the replicas the live config routes to (only pods with a host need it).
    pub routed: &'a HashSet<String>,
    /// Why nginx rejected this pod's route, if it did (the other pods' routes
    /// were applied without it).
    pub rejection: Option<&'a str>,
    /// Why one of the pod's TCP listeners (`expose`) could not start, if one
    /// could not (it is retried with back-off).
    pub listener_failure: Option<&'a str>,
}

/// What the facade may read of one pod: one snapshot of what the controller
/// observed (no engine call, no lock held), the only input of [`pod_view`]
/// besides the stored pod. Built by [`observe`].
#[derive(Debug, Clone, Default)]
pub(crate) struct PodObservation {
    /// The pod's replicas as last listed (other pods' and the ingress left out).
    pub replicas: Vec<ReplicaObservation>,
    /// What the controller recorded (generation seen, restarts, reason).
    pub controller: ControllerStatus,
    /// nginx rejected the pod's route, with nginx's words.
    pub ingress_rejection: Option<String>,
    /// A TCP listener of the pod could not start, and why.
    pub listener_failure: Option<String>,
}

/// One replica in a [`PodObservation`].
#[derive(Debug, Clone)]
pub(crate) struct ReplicaObservation {
    /// The container as the engine listed it.
    pub container: Observed,
    /// Serving (see [`is_serving`]) and, when the pod has a host, routed by
    /// the live config.
    pub ready: bool,
    /// Out of the ingress and about to stop.
    pub draining: bool,
    /// What its readiness check last said, when it failed.
    pub check_error: Option<String>,
}

/// The snapshot of one pod: `containers` are the observed containers (only
/// this pod's replicas are kept), `probe(id)` what the probes and the drain
/// know of a replica, `routes` what the ingress says, `controller` what the
/// controller recorded.
pub(crate) fn observe(
    spec: &PodSpec,
    containers: &[Observed],
    probe: impl Fn(&str) -> ReplicaProbe,
    routes: &Routes<'_>,
    controller: ControllerStatus,
) -> PodObservation {
    let has_host = spec.host().is_some();
    let replicas = containers
        .iter()
        .filter(|c| is_replica_of(c, &spec.name))
        .map(|c| {
            let probe = probe(&c.id);
            ReplicaObservation {
                ready: is_serving(c, &probe) && (!has_host || routes.routed.contains(&c.id)),
                draining: probe.draining,
                check_error: probe.last_error,
                container: c.clone(),
            }
        })
        .collect();
    PodObservation {
        replicas,
        controller,
        ingress_rejection: routes.rejection.map(str::to_string),
        listener_failure: routes.listener_failure.map(str::to_string),
    }
}

/// Replica counts of a pod, the input of [`ReplicaCounts::converged`]:
/// `containers` are its observed replicas (other pods' and the ingress are
/// ignored), `ready(c)` says whether a replica is ready, `draining(id)`
/// whether one is being drained (it counts until it is gone, even once it
/// exited: the pod is not converged while it still exists).
pub(crate) fn counts(
    spec: &PodSpec,
    containers: &[Observed],
    ready: impl Fn(&Observed) -> bool,
    draining: impl Fn(&str) -> bool,
) -> ReplicaCounts {
    tally(
        spec,
        containers
            .iter()
            .filter(|c| is_replica_of(c, &spec.name))
            .map(|c| (c, ready(c), draining(&c.id))),
    )
}

/// Counts `(replica, ready, draining)` of one pod.
fn tally<'a>(spec: &PodSpec, replicas: impl Iterator<Item = (&'a Observed, bool, bool)>) -> ReplicaCounts {
    let revision = spec.revision_hash();
    let mut counts = ReplicaCounts {
        desired: spec.desired_replicas(),
        ready: 0,
        updated: 0,
        current: 0,
    };
    for (c, ready, draining) in replicas {
        let up_to_date = c.revision.as_deref() == Some(revision.as_str());
        counts.ready += u32::from(up_to_date && ready);
        counts.updated += u32::from(up_to_date && c.state.is_live());
        counts.current += u32::from(c.state.is_live() || draining);
    }
    counts
}

/// Whether a replica serves: running, on the network, not draining, and
/// passing its readiness check (routing by the ingress comes on top).
pub(crate) fn is_serving(c: &Observed, probe: &ReplicaProbe) -> bool {
    c.state == ContainerState::Running && c.ip.is_some() && !probe.draining && probe.ready
}

/// Whether the periodic resync must wake a pod: its plan is not empty, or the
/// controller has not reconciled its current generation yet.
pub(crate) fn needs_reconcile(plan_is_empty: bool, observed_generation: i64, generation: i64) -> bool {
    !plan_is_empty || observed_generation != generation
}

/// The view of a pod, from what is stored and one [`PodObservation`]: the
/// one function that computes a pod's status.
pub(crate) fn pod_view(stored: StoredPod, observation: PodObservation) -> Pod {
    let revision = stored.spec.revision_hash();
    let counts = tally(
        &stored.spec,
        observation.replicas.iter().map(|r| (&r.container, r.ready, r.draining)),
    );
    let status = pod_status(
        &stored,
        counts,
        revision.clone(),
        Ingress {
            rejection: observation.ingress_rejection.as_deref(),
            listener_failure: observation.listener_failure.as_deref(),
        },
        &observation.controller,
    );
    let mut replicas: Vec<Replica> = observation
        .replicas
        .into_iter()
        .map(|r| {
            let c = r.container;
            Replica {
                up_to_date: c.revision.as_deref() == Some(revision.as_str()),
                id: c.id.chars().take(12).collect(),
                name: c.name,
                state: c.state,
                status: c.status,
                revision: c.revision.unwrap_or_default(),
                ready: r.ready,
                check_error: r.check_error,
                ip: c.ip,
                created: c.created,
            }
        })
        .collect();
    replicas.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Pod {
        name: stored.spec.name.clone(),
        generation: stored.generation,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
        status,
        spec: stored.spec,
        replicas,
    }
}

/// What the ingress says against a pod, for its status.
#[derive(Debug, Clone, Copy, Default)]
struct Ingress<'a> {
    rejection: Option<&'a str>,
    listener_failure: Option<&'a str>,
}

/// A pod's status from its replica counts, its latest revision, the ingress's
/// rejection of its route or failure of its TCP listeners, and what the
/// controller recorded.
fn pod_status(
    stored: &StoredPod,
    counts: ReplicaCounts,
    revision: String,
    ingress: Ingress<'_>,
    controller: &ControllerStatus,
) -> PodStatus {
    let ingress_rejection = ingress.rejection;
    let ReplicaCounts {
        desired,
        ready,
        updated,
        current,
    } = counts;
    let phase = if controller.reason.is_some() || ingress_rejection.is_some() || ingress.listener_failure.is_some() {
        Phase::Failing
    } else if !counts.converged() || controller.observed_generation != stored.generation {
        Phase::Progressing
    } else if stored.spec.is_cron() {
        Phase::Scheduled
    } else if desired == 0 {
        Phase::Stopped
    } else {
        Phase::Running
    };
    let rollout = &stored.rollout;
    let failed = rollout.outcome == Some(RolloutOutcome::Failed);
    let rolled_back = rollout.reason.as_deref() == Some("Rollback");
    let (reason, message) = match &controller.reason {
        Some(r) => (Some(r.clone()), controller.message.clone()),
        None if ingress_rejection.is_some() => (
            Some("IngressRejected".to_string()),
            ingress_rejection.map(|m| format!("nginx rejected this pod's route: {m}")),
        ),
        None if ingress.listener_failure.is_some() => (
            Some("ListenerFailed".to_string()),
            ingress.listener_failure.map(str::to_string),
        ),
        None if failed => (
            Some(
                rollout
                    .reason
                    .clone()
                    .unwrap_or_else(|| "ProgressDeadlineExceeded".to_string()),
            ),
            rollout.message.clone(),
        ),
        None if rolled_back => (Some("RolledBack".to_string()), rollout.message.clone()),
        // A complete rollout whose post_deploy hook failed: it stays complete, and says so.
        None if rollout.reason.as_deref() == Some("PostDeployHookFailed") => {
            (rollout.reason.clone(), rollout.message.clone())
        }
        None => (None, controller.message.clone()),
    };
    let min_available = desired.saturating_sub(stored.spec.update_strategy().max_unavailable);
    let available = ready >= min_available;
    let progressing = match rollout.outcome {
        Some(RolloutOutcome::Failed) => Condition {
            kind: ConditionType::Progressing,
            status: false,
            reason: rollout
                .reason
                .clone()
                .unwrap_or_else(|| "ProgressDeadlineExceeded".to_string()),
            message: rollout.message.clone().unwrap_or_default(),
        },
        Some(RolloutOutcome::Complete) => Condition {
            kind: ConditionType::Progressing,
            status: true,
            reason: "RolloutComplete".into(),
            message: format!("revision {} is fully rolled out", rollout.number),
        },
        _ => Condition {
            kind: ConditionType::Progressing,
            status: true,
            reason: if rolled_back {
                "RollingBack"
            } else {
                "NewRevisionProgressing"
            }
            .into(),
            message: format!(
                "revision {}: {updated} of {desired} replicas updated, {ready} ready",
                rollout.number
            ),
        },
    };
    let conditions = vec![
        Condition {
            kind: ConditionType::Available,
            status: available,
            reason: if available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            }
            .into(),
            message: format!("{ready} of {desired} replicas ready (at least {min_available} needed)"),
        },
        progressing,
    ];
    PodStatus {
        observed_generation: controller.observed_generation,
        desired_replicas: desired,
        ready_replicas: ready,
        updated_replicas: updated,
        current_replicas: current,
        revision,
        revision_number: rollout.number,
        phase,
        reason,
        message,
        restarts: controller.restarts,
        last_exit_code: controller.last_exit_code,
        tls: None,
        conditions,
        warnings: stored.spec.warnings(),
    }
}

fn is_replica_of(c: &Observed, pod: &str) -> bool {
    c.role == "replica" && c.pod.as_deref() == Some(pod)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use dubernetes_api::RolloutState;

    use super::*;

    /// The view through the snapshot, as the facade computes it.
    fn view(
        stored: StoredPod,
        containers: &[Observed],
        probe: impl Fn(&str) -> ReplicaProbe,
        routes: &Routes<'_>,
        controller: &ControllerStatus,
    ) -> Pod {
        let observation = observe(&stored.spec, containers, probe, routes, controller.clone());
        pod_view(stored, observation)
    }

    fn stored(spec: PodSpec, generation: i64, outcome: Option<RolloutOutcome>) -> StoredPod {
        StoredPod {
            spec,
            generation,
            created_at: 1,
            updated_at: 2,
            rollout: RolloutState {
                number: 1,
                outcome,
                reason: None,
                message: None,
            },
        }
    }

    fn replica(id: &str, pod: &str, revision: &str, state: ContainerState, created: i64) -> Observed {
        Observed {
            id: id.into(),
            name: format!("dub-t-{pod}-{id}"),
            role: "replica".into(),
            pod: Some(pod.into()),
            revision: Some(revision.into()),
            state,
            status: String::new(),
            ip: Some("10.0.0.2".into()),
            created,
            labels: HashMap::new(),
            ready: false,
        }
    }

    fn probes(ready: &[&str], draining: &[&str]) -> impl Fn(&str) -> ReplicaProbe + use<> {
        let map: HashMap<String, ReplicaProbe> = ready
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    ReplicaProbe {
                        ready: true,
                        ..ReplicaProbe::default()
                    },
                )
            })
            .chain(draining.iter().map(|id| {
                (
                    id.to_string(),
                    ReplicaProbe {
                        ready: true,
                        draining: true,
                        ..ReplicaProbe::default()
                    },
                )
            }))
            .collect();
        move |id| map.get(id).cloned().unwrap_or_default()
    }

    fn routes(routed: &HashSet<String>) -> Routes<'_> {
        Routes {
            routed,
            rejection: None,
            listener_failure: None,
        }
    }

    fn controller(generation: i64) -> ControllerStatus {
        ControllerStatus {
            observed_generation: generation,
            ..ControllerStatus::default()
        }
    }

    #[test]
    fn every_ready_current_replica_is_running_and_converged() {
        let spec = PodSpec::new("web", "img:v1").with_replicas(2);
        let rev = spec.revision_hash();
        let containers = [
            replica("b", "web", &rev, ContainerState::Running, 20),
            replica("a", "web", &rev, ContainerState::Running, 10),
            replica("x", "other", &rev, ContainerState::Running, 5),
        ];
        let pod = view(
            stored(spec, 3, Some(RolloutOutcome::Complete)),
            &containers,
            probes(&["a", "b", "x"], &[]),
            &routes(&HashSet::new()),
            &controller(3),
        );
        assert_eq!(pod.status.phase, Phase::Running);
        assert!(pod.is_converged());
        assert_eq!(
            pod.replicas.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"],
            "only its own replicas, oldest first"
        );
        assert_eq!(pod.status.conditions[1].reason, "RolloutComplete");
        assert!(pod.status.conditions[0].status);
    }

    #[test]
    fn a_lagging_generation_is_progressing_though_the_counts_converged() {
        let spec = PodSpec::new("web", "img:v1");
        let rev = spec.revision_hash();
        let containers = [replica("a", "web", &rev, ContainerState::Running, 1)];
        let pod = view(
            stored(spec, 2, Some(RolloutOutcome::Progressing)),
            &containers,
            probes(&["a"], &[]),
            &routes(&HashSet::new()),
            &controller(1),
        );
        assert!(pod.status.counts().converged());
        assert_eq!(pod.status.phase, Phase::Progressing);
        assert!(!pod.is_converged());
    }

    #[test]
    fn a_draining_old_replica_keeps_the_pod_progressing_even_once_exited() {
        let spec = PodSpec::new("web", "img:v2");
        let rev = spec.revision_hash();
        let containers = [
            replica("new", "web", &rev, ContainerState::Running, 2),
            replica("old", "web", "oldrev", ContainerState::Exited, 1),
        ];
        let view = |draining: &[&str]| {
            view(
                stored(spec.clone(), 1, Some(RolloutOutcome::Progressing)),
                &containers,
                probes(&["new"], draining),
                &routes(&HashSet::new()),
                &controller(1),
            )
        };
        let pod = view(&["old"]);
        assert_eq!(pod.status.current_replicas, 2);
        assert_eq!(pod.status.phase, Phase::Progressing);
        let pod = view(&[]);
        assert_eq!(
            pod.status.current_replicas, 1,
            "an exited replica not draining does not count"
        );
        assert_eq!(pod.status.phase, Phase::Running);
    }

    #[test]
    fn a_pod_with_a_host_needs_its_replicas_routed() {
        let spec = PodSpec::new("web", "img:v1").with_host("web.local");
        let rev = spec.revision_hash();
        let containers = [replica("a", "web", &rev, ContainerState::Running, 1)];
        let view = |routed: &HashSet<String>| {
            view(
                stored(spec.clone(), 1, None),
                &containers,
                probes(&["a"], &[]),
                &routes(routed),
                &controller(1),
            )
        };
        let unrouted = view(&HashSet::new());
        assert_eq!((unrouted.status.ready_replicas, unrouted.replicas[0].ready), (0, false));
        assert_eq!(unrouted.status.phase, Phase::Progressing);
        let routed = view(&HashSet::from(["a".to_string()]));
        assert_eq!(routed.status.ready_replicas, 1);
        assert_eq!(routed.status.phase, Phase::Running);
    }

    #[test]
    fn zero_replicas_is_stopped_and_a_controller_reason_is_failing() {
        let spec = PodSpec::new("web", "img:v1").with_replicas(0);
        let pod = view(
            stored(spec.clone(), 1, None),
            &[],
            probes(&[], &[]),
            &routes(&HashSet::new()),
            &controller(1),
        );
        assert_eq!(pod.status.phase, Phase::Stopped);
        let failing = ControllerStatus {
            reason: Some("CrashLoopBackOff".into()),
            message: Some("exit 1".into()),
            ..controller(1)
        };
        let pod = view(
            stored(spec, 1, None),
            &[],
            probes(&[], &[]),
            &routes(&HashSet::new()),
            &failing,
        );
        assert_eq!(pod.status.phase, Phase::Failing);
        assert_eq!(pod.status.reason.as_deref(), Some("CrashLoopBackOff"));
    }

    #[test]
    fn a_rejected_route_is_failing_with_nginx_s_reason() {
        let spec = PodSpec::new("web", "img:v1").with_replicas(0);
        let none = HashSet::new();
        let routes = Routes {
            routed: &none,
            rejection: Some("invalid server name"),
            listener_failure: None,
        };
        let pod = view(stored(spec, 1, None), &[], probes(&[], &[]), &routes, &controller(1));
        assert_eq!(pod.status.phase, Phase::Failing);
        assert_eq!(pod.status.reason.as_deref(), Some("IngressRejected"));
        assert_eq!(
            pod.status.message.as_deref(),
            Some("nginx rejected this pod's route: invalid server name")
        );
    }

    #[test]
    fn a_listener_that_cannot_start_is_failing_with_its_reason() {
        let spec = PodSpec::new("db", "img:v1").with_replicas(0);
        let none = HashSet::new();
        let why = "the TCP listener on 127.0.0.1:15432 could not start (2 tries; retrying): address already in use";
        let routes = Routes {
            routed: &none,
            rejection: None,
            listener_failure: Some(why),
        };
        let pod = view(stored(spec, 1, None), &[], probes(&[], &[]), &routes, &controller(1));
        assert_eq!(pod.status.phase, Phase::Failing);
        assert_eq!(pod.status.reason.as_deref(), Some("ListenerFailed"));
        assert_eq!(pod.status.message.as_deref(), Some(why));
    }

    #[test]
    fn a_failed_rollout_reports_its_reason_and_a_false_progressing_condition() {
        let spec = PodSpec::new("web", "img:v1");
        let mut stored = stored(spec, 1, Some(RolloutOutcome::Failed));
        stored.rollout.message = Some("no replica ready in 10s".into());
        let pod = view(stored, &[], probes(&[], &[]), &routes(&HashSet::new()), &controller(1));
        assert_eq!(pod.status.reason.as_deref(), Some("ProgressDeadlineExceeded"));
        let progressing = &pod.status.conditions[1];
        assert_eq!(
            (progressing.kind, progressing.status),
            (ConditionType::Progressing, false)
        );
        assert_eq!(progressing.message, "no replica ready in 10s");
        assert!(!pod.status.conditions[0].status, "0 of 1 ready is not available");
    }

    #[test]
    fn a_running_replica_without_a_passing_check_or_address_does_not_serve() {
        let c = replica("a", "web", "r", ContainerState::Running, 1);
        let ok = ReplicaProbe {
            ready: true,
            ..ReplicaProbe::default()
        };
        assert!(is_serving(&c, &ok));
        assert!(!is_serving(&c, &ReplicaProbe::default()));
        assert!(!is_serving(
            &c,
            &ReplicaProbe {
                draining: true,
                ..ok.clone()
            }
        ));
        let no_ip = Observed { ip: None, ..c.clone() };
        assert!(!is_serving(&no_ip, &ok));
        let exited = Observed {
            state: ContainerState::Exited,
            ..c
        };
        assert!(!is_serving(&exited, &ok));
    }

    #[test]
    fn resync_wakes_on_a_plan_or_a_lagging_generation() {
        assert!(!needs_reconcile(true, 4, 4));
        assert!(needs_reconcile(false, 4, 4));
        assert!(needs_reconcile(true, 3, 4));
    }
}

//! A pod as the API shows it: its spec, bookkeeping, status and replicas.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::PodSpec;

/// A pod: its spec, bookkeeping, and what the engine shows of it right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pod {
    /// The pod's name.
    pub name: String,
    /// The desired state.
    pub spec: PodSpec,
    /// Increases on every change of the spec.
    pub generation: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Observed status.
    pub status: PodStatus,
    /// The pod's containers, as the engine reports them.
    pub replicas: Vec<Replica>,
}

impl Pod {
    /// True when the current generation is fully rolled out and routed:
    /// the controller observed this generation and the replica counts are
    /// [converged](ReplicaCounts::converged).
    pub fn is_converged(&self) -> bool {
        self.status.observed_generation == self.generation && self.status.counts().converged()
    }
}

/// How many replicas a pod has of each kind: what "converged" is decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaCounts {
    /// `replicas` of the spec.
    pub desired: u32,
    /// Replicas of the current revision that are ready (and routed).
    pub ready: u32,
    /// Live replicas of the current revision.
    pub updated: u32,
    /// Live replicas of any revision, and any still being drained.
    pub current: u32,
}

impl ReplicaCounts {
    /// The one definition of "converged": exactly the desired number of
    /// replicas, all of the current revision, all ready, and nothing else left.
    pub fn converged(&self) -> bool {
        self.ready == self.desired && self.updated == self.desired && self.current == self.desired
    }
}

/// Where a pod stands, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Converged, with at least one replica.
    Running,
    /// Changing towards its spec (or the controller has not caught up yet).
    Progressing,
    /// Converged at 0 replicas.
    Stopped,
    /// A cron pod (`schedule`), converged: no replicas, runs at its ticks.
    Scheduled,
    /// Something keeps going wrong: `reason` says what, e.g. `CrashLoopBackOff`.
    Failing,
}

impl Phase {
    /// The word as sent: `Running`, `Progressing`, `Stopped`, `Scheduled` or `Failing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Progressing => "Progressing",
            Phase::Stopped => "Stopped",
            Phase::Scheduled => "Scheduled",
            Phase::Failing => "Failing",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The observed status of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PodStatus {
    /// The generation the controller last converged to.
    pub observed_generation: i64,
    /// `replicas` of the spec (0 for a cron pod).
    pub desired_replicas: u32,
    /// Replicas running the current revision and routed.
    pub ready_replicas: u32,
    /// Replicas (in any live state) of the current revision.
    pub updated_replicas: u32,
    /// Live replicas of any revision.
    pub current_replicas: u32,
    /// The current revision hash.
    pub revision: String,
    /// `Running`, `Progressing`, `Stopped` (0 replicas), `Scheduled` (a cron pod), or `Failing`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phase: Phase,
    /// A machine-readable reason when something is wrong, e.g. `CrashLoopBackOff`.
    pub reason: Option<String>,
    /// What is wrong, for people.
    pub message: Option<String>,
    /// The number of the latest revision (see `Dubernetes::history`).
    pub revision_number: i64,
    /// `Available` and `Progressing`, like a Kubernetes Deployment's.
    pub conditions: Vec<Condition>,
    /// How many times replicas exited and were replaced.
    pub restarts: u32,
    /// Exit code of the last replica that exited.
    pub last_exit_code: Option<i64>,
    /// The HTTPS certificate of the pod's host, when `access.tls` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// Risks the spec takes (on purpose or by mistake), e.g. several replicas
    /// or a rolling update sharing a named volume: what the apply answered in
    /// `warnings` and a `SharedVolume` event said, for as long as the spec
    /// says it. `get pods` marks them, `describe` prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The certificate a pod's host is served with (`access.tls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsStatus {
    /// `acme` or `secret`.
    pub source: String,
    /// Whether the ingress serves the host over HTTPS (a certificate is there);
    /// false: plain HTTP until one is issued.
    pub serving: bool,
    /// The certificate's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// End of validity, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// Why the host is not served as it should be: the last ACME attempt
    /// failed (it is retried with back-off), the secret is gone, nginx
    /// rejected the route, or the ingress has no HTTPS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The certificate expires within 14 days, or has expired (it is still
    /// served: replace the secret). Also a Warning event, and `get pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl PodStatus {
    /// The replica counts this status reports.
    pub fn counts(&self) -> ReplicaCounts {
        ReplicaCounts {
            desired: self.desired_replicas,
            ready: self.ready_replicas,
            updated: self.updated_replicas,
            current: self.current_replicas,
        }
    }
}

/// Which aspect of a pod a [`Condition`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    /// Enough replicas are ready (at least `replicas - max_unavailable`).
    Available,
    /// The latest revision is rolling out, rolled out, or failed to.
    Progressing,
}

impl ConditionType {
    /// `Available` or `Progressing`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Available => "Available",
            ConditionType::Progressing => "Progressing",
        }
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One aspect of a pod's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Condition {
    /// `Available` or `Progressing`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: ConditionType,
    /// Whether the condition holds.
    pub status: bool,
    /// A CamelCase reason, e.g. `RolloutComplete` or `ProgressDeadlineExceeded`.
    pub reason: String,
    /// Details, for people.
    pub message: String,
}

/// The state of a container as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the engine.
    Restarting,
    /// Exited.
    Exited,
    /// Being removed.
    Removing,
    /// Dead (failed removal).
    Dead,
    /// Anything else.
    Unknown,
}

impl ContainerState {
    /// True for states in which the container is (or will be) running.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ContainerState::Created | ContainerState::Running | ContainerState::Restarting | ContainerState::Paused
        )
    }
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Replica {
    /// Container name.
    pub name: String,
    /// Short container id.
    pub id: String,
    /// Engine state.
    pub state: ContainerState,
    /// Engine status text, e.g. `Up 3 minutes`.
    pub status: String,
    /// Revision hash it runs.
    pub revision: String,
    /// Runs the current revision.
    pub up_to_date: bool,
    /// Running, passing its readiness check, and routed by the ingress.
    pub ready: bool,
    /// The last failure of its readiness check, if it is failing.
    pub check_error: Option<String>,
    /// Address on the instance network.
    pub ip: Option<String>,
    /// Unix seconds.
    pub created: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converged_needs_every_count_at_desired() {
        let at = |ready, updated, current| ReplicaCounts {
            desired: 3,
            ready,
            updated,
            current,
        };
        assert!(at(3, 3, 3).converged());
        assert!(!at(2, 3, 3).converged(), "a replica not ready yet");
        assert!(!at(3, 3, 4).converged(), "an old replica still live or draining");
        assert!(
            !at(3, 2, 3).converged(),
            "an old replica counted as ready cannot happen, but is not converged"
        );
        assert!(ReplicaCounts::default().converged(), "0 of 0 is converged");
    }

    #[test]
    fn words_are_the_wire_format() {
        for p in [
            Phase::Running,
            Phase::Progressing,
            Phase::Stopped,
            Phase::Scheduled,
            Phase::Failing,
        ] {
            assert_eq!(serde_json::to_value(p).expect("json"), serde_json::json!(p.as_str()));
        }
        for c in [ConditionType::Available, ConditionType::Progressing] {
            assert_eq!(serde_json::to_value(c).expect("json"), serde_json::json!(c.as_str()));
        }
    }
}

//! Revisions and rollouts as the store records them, and what an apply did.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseEnumError;
use crate::pod::Pod;
use crate::spec::PodSpec;

/// How the rollout of a revision stands. Stored and sent as the lowercase word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutOutcome {
    /// Its replicas are being rolled out.
    Progressing,
    /// Every replica runs it, ready and routed.
    Complete,
    /// It missed its progress deadline or crashed too often (and was rolled back).
    Failed,
    /// A newer revision was applied before it finished.
    Superseded,
}

impl RolloutOutcome {
    /// The word as stored and sent: `progressing`, `complete`, `failed`, `superseded`.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutOutcome::Progressing => "progressing",
            RolloutOutcome::Complete => "complete",
            RolloutOutcome::Failed => "failed",
            RolloutOutcome::Superseded => "superseded",
        }
    }
}

impl fmt::Display for RolloutOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RolloutOutcome {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RolloutOutcome::Progressing,
            RolloutOutcome::Complete,
            RolloutOutcome::Failed,
            RolloutOutcome::Superseded,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| ParseEnumError::new("rollout outcome", s))
    }
}

/// The latest revision of a pod and how its rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RolloutState {
    /// The latest revision's number (0 if none).
    pub number: i64,
    /// How its rollout stands; `None` while the pod has no revision.
    pub outcome: Option<RolloutOutcome>,
    /// e.g. `Rollback` for an automatic rollback.
    pub reason: Option<String>,
    /// Details, for people.
    pub message: Option<String>,
}

impl RolloutState {
    /// True while the latest revision is being rolled out.
    pub fn is_progressing(&self) -> bool {
        self.outcome == Some(RolloutOutcome::Progressing)
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ApplyOutcome {
    /// The pod did not exist.
    Created,
    /// The pod existed with another spec.
    Configured,
    /// The pod existed with the same spec; nothing changed.
    Unchanged,
}

impl ApplyOutcome {
    /// The word kubectl prints: `created`, `configured`, `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// The answer to an apply.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplyResponse {
    /// `created`, `configured` or `unchanged`.
    pub outcome: ApplyOutcome,
    /// True when nothing was stored (`?dry_run=true`).
    #[serde(default)]
    pub dry_run: bool,
    /// The pod after the apply (absent on dry runs of new pods).
    pub pod: Option<Pod>,
    /// What the spec risks, e.g. several writers on one volume (see `PodSpec::warnings`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One revision of a pod: what its containers ran, and how the rollout ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revision {
    /// 1, 2, 3... per pod.
    pub number: i64,
    /// The revision hash (labels the containers).
    pub hash: String,
    /// The spec as applied.
    pub spec: PodSpec,
    /// Unix milliseconds.
    pub created_at: i64,
    /// `progressing`, `complete`, `failed` or `superseded`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outcome: RolloutOutcome,
    /// Why it ended that way, e.g. `ProgressDeadlineExceeded`, or `Rollback`.
    pub reason: Option<String>,
    /// Details, for people.
    pub message: Option<String>,
    /// When the rollout ended, unix milliseconds.
    pub finished_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_what_they_write() {
        for o in [
            RolloutOutcome::Progressing,
            RolloutOutcome::Complete,
            RolloutOutcome::Failed,
            RolloutOutcome::Superseded,
        ] {
            assert_eq!(o.as_str().parse::<RolloutOutcome>(), Ok(o));
            assert_eq!(serde_json::to_value(o).expect("json"), serde_json::json!(o.as_str()));
        }
        assert!("done".parse::<RolloutOutcome>().is_err());
    }
}

//! `update` and `restart_backoff`: how a new revision replaces the old
//! one, and how a crashing replica is restarted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, one, three};

/// How the replicas of a new revision take over from the old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// New replicas start while the old ones serve; an old one goes once a
    /// new one is ready (`max_surge`, `max_unavailable`). No downtime.
    #[default]
    Rolling,
    /// Every old replica is stopped (and gone) before any new one starts:
    /// never two revisions at once (one writer on a volume), at the price of
    /// a gap in service. `max_surge` and `max_unavailable` do not apply.
    Recreate,
}

impl Strategy {
    fn is_rolling(&self) -> bool {
        *self == Strategy::Rolling
    }
}

/// How a new revision replaces the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateStrategy {
    /// `rolling` (the default) or `recreate`.
    #[serde(default, skip_serializing_if = "Strategy::is_rolling")]
    pub strategy: Strategy,
    /// How many replicas may run above `replicas` during a rollout.
    #[serde(default = "one")]
    pub max_surge: u32,
    /// How many replicas below `replicas` may be ready during a rollout.
    #[serde(default)]
    pub max_unavailable: u32,
    /// A rollout that makes no progress for this long fails and is rolled back.
    #[serde(default = "default_progress_deadline", with = "duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s"))]
    pub progress_deadline: Duration,
    /// How long a new replica must stay ready, without a break, before it
    /// counts as available and an old replica may be removed for it (like
    /// Kubernetes' `minReadySeconds`, Swarm's `update-monitor`).
    #[serde(default = "default_min_ready", with = "duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s"))]
    pub min_ready: Duration,
    /// A rollout fails at once (and rolls back) when replicas of the new
    /// revision exit (on their own, or OOM) this many times.
    #[serde(default = "three")]
    pub max_failures: u32,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        UpdateStrategy {
            strategy: Strategy::Rolling,
            max_surge: 1,
            max_unavailable: 0,
            progress_deadline: default_progress_deadline(),
            min_ready: default_min_ready(),
            max_failures: 3,
        }
    }
}

/// Crash-loop back-off overrides; unset fields take the server's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RestartBackoff {
    /// Delay before the second quick restart in a row; doubles after that.
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub initial_delay: Option<Duration>,
    /// Longest delay.
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub max_delay: Option<Duration>,
    /// A replica that ran this long before it exited resets the back-off.
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub reset_after: Option<Duration>,
}

fn default_progress_deadline() -> Duration {
    Duration::from_secs(120)
}

/// The default stabilization window of a rollout.
pub const DEFAULT_MIN_READY: Duration = Duration::from_secs(5);

fn default_min_ready() -> Duration {
    DEFAULT_MIN_READY
}

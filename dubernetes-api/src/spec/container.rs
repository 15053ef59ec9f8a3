//! What the engine gives each replica's container: resource limits
//! (`resources`), log rotation (`logging`), privileges (`security`).

use serde::{Deserialize, Serialize};

/// Limits the engine enforces on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Resources {
    /// Memory limit: bytes, or a number with a unit `k`, `m`, `g` (powers of 1000) or `Ki`, `Mi`, `Gi` (powers of 1024), e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Most processes (and threads) per replica (default 1024; `0` for no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

/// Most processes a pod may allow per replica (`resources.pids`).
pub const MAX_PIDS: u32 = 4_194_304;

/// How the engine keeps a replica's log: the `json-file` driver, rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Logging {
    /// Largest log file before it is rotated, e.g. `10Mi` (default 10Mi; 1Ki to 1Ti).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
    /// Log files kept, the current one included (default 3; 1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
}

/// Privilege settings of a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Security {
    /// `no-new-privileges`: no process can gain privileges through a setuid
    /// binary (default `true`). Set `false` only for an image that needs `sudo` or `ping` as a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
}

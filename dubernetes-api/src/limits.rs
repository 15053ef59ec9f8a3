//! What a replica may take from its host: log rotation, a pids limit,
//! `no-new-privileges`. Pure data; the engine implementation applies it.

use serde::{Deserialize, Serialize};

/// Default largest size of one container log file before the engine rotates it.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of log files the engine keeps per container (the current one included).
pub const DEFAULT_LOG_MAX_FILES: u32 = 3;
/// Default most processes (and threads) a container may run at once.
pub const DEFAULT_PIDS_LIMIT: u32 = 1024;

/// Settings that protect the host from a container: a bounded, rotated log
/// (`json-file` driver with `max-size` and `max-file`), a pids limit (a fork
/// bomb stops at it) and `no-new-privileges` (no setuid binary can raise a
/// process's privileges). Replicas take them from their spec (`logging`,
/// `resources.pids`, `security`), the ingress from its settings; the defaults
/// are on unless overridden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerLimits {
    /// Largest log file before rotation, in bytes.
    pub log_max_bytes: u64,
    /// Log files kept, the current one included.
    pub log_max_files: u32,
    /// Most processes; `None` means no limit.
    pub pids: Option<u32>,
    /// Sets `no-new-privileges`.
    pub no_new_privileges: bool,
}

impl Default for ContainerLimits {
    fn default() -> Self {
        ContainerLimits {
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_max_files: DEFAULT_LOG_MAX_FILES,
            pids: Some(DEFAULT_PIDS_LIMIT),
            no_new_privileges: true,
        }
    }
}

impl ContainerLimits {
    /// Log rotation: files of at most `max_bytes`, `max_files` of them kept.
    pub fn with_log(mut self, max_bytes: u64, max_files: u32) -> Self {
        self.log_max_bytes = max_bytes;
        self.log_max_files = max_files;
        self
    }

    /// The pids limit; `None` for none.
    pub fn with_pids(mut self, pids: Option<u32>) -> Self {
        self.pids = pids;
        self
    }

    /// Whether `no-new-privileges` is set.
    pub fn with_no_new_privileges(mut self, on: bool) -> Self {
        self.no_new_privileges = on;
        self
    }
}

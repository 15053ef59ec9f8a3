//! `volumes`: named volumes of the instance and tmpfs mounts.

use serde::{Deserialize, Serialize};

use super::parse_memory;

/// Most entries of `volumes` per pod.
pub const MAX_VOLUMES: usize = 16;

/// Size of a tmpfs without `size`.
pub const DEFAULT_TMPFS_BYTES: u64 = 64 * 1024 * 1024;

/// Largest tmpfs `size`. It is a cap, not a reservation: what is written
/// there is memory, counted against the replica's memory limit.
pub const MAX_TMPFS_BYTES: u64 = 1 << 40;

/// Longest volume `path` or `tmpfs` path, in bytes.
pub const MAX_MOUNT_PATH_BYTES: usize = 1024;

/// One entry of `volumes`: `{name: NAME, path: PATH}`, a named volume of the
/// instance mounted at `path` (created on first use, never deleted with a
/// pod: `dubectl delete volume NAME`), or `{tmpfs: PATH, size: SIZE}`,
/// scratch space in memory, empty whenever a replica starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Volume {
    /// The named volume (a DNS label, e.g. `pgdata`); every pod naming it shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the named volume appears in the container: an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Mounts a tmpfs at this absolute path instead (no `name`, no `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<String>,
    /// The tmpfs's size limit, e.g. `64Mi` (default 64Mi; 1Mi to 1Ti).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

/// What one valid entry of `volumes` mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeMount {
    /// The instance's named volume `name` at `path`.
    Named {
        /// The volume's name as the pod gives it.
        name: String,
        /// The absolute path in the container.
        path: String,
    },
    /// A tmpfs of `bytes` at `path`.
    Tmpfs {
        /// The absolute path in the container.
        path: String,
        /// Its size limit.
        bytes: u64,
    },
}

impl Volume {
    /// The named volume `name` at `path`.
    pub fn named(name: impl Into<String>, path: impl Into<String>) -> Volume {
        Volume {
            name: Some(name.into()),
            path: Some(path.into()),
            ..Volume::default()
        }
    }

    /// A tmpfs at `path`, `size` (e.g. `64Mi`) or the default.
    pub fn tmpfs(path: impl Into<String>, size: Option<&str>) -> Volume {
        Volume {
            tmpfs: Some(path.into()),
            size: size.map(str::to_string),
            ..Volume::default()
        }
    }

    /// What it mounts; `None` for an entry [`PodSpec::validate`](super::PodSpec::validate) refuses.
    pub fn mount(&self) -> Option<VolumeMount> {
        match (&self.name, &self.path, &self.tmpfs) {
            (Some(name), Some(path), None) if self.size.is_none() => Some(VolumeMount::Named {
                name: name.clone(),
                path: path.clone(),
            }),
            (None, None, Some(path)) => {
                let bytes = match &self.size {
                    Some(size) => parse_memory(size).ok()?,
                    None => DEFAULT_TMPFS_BYTES,
                };
                Some(VolumeMount::Tmpfs {
                    path: path.clone(),
                    bytes,
                })
            }
            _ => None,
        }
    }
}

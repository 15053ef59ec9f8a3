//! Named volumes of an instance, as the API answers them (`GET /v1/volumes`).

use serde::{Deserialize, Serialize};

/// A named volume of the instance: made when a pod first mounts it, kept when
/// pods go, removed only by `DELETE /v1/volumes/{name}` (`dubectl delete volume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct NamedVolume {
    /// The name pods give it in `volumes[].name`.
    pub name: String,
    /// The engine's name for it (`dub-<instance>_<name>`), e.g. for `docker volume inspect`.
    pub engine_name: String,
    /// Bytes on disk, where the engine knows (Docker's disk-usage data; absent on other engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// When the engine made it (RFC 3339), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The pods whose spec mounts it (a delete is refused while there are any).
    #[serde(default)]
    pub used_by: Vec<String>,
}

impl NamedVolume {
    /// A view of a volume.
    pub fn new(
        name: String,
        engine_name: String,
        size_bytes: Option<u64>,
        created_at: Option<String>,
        used_by: Vec<String>,
    ) -> Self {
        NamedVolume {
            name,
            engine_name,
            size_bytes,
            created_at,
            used_by,
        }
    }
}

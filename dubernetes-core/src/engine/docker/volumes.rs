//! Docker's volumes as [`VolumeInfo`]: their labels and, when asked, their sizes.

use std::collections::HashMap;

use super::CALL_TIMEOUT;
use crate::engine::VolumeInfo;

pub(super) fn volume_info(v: bollard::models::Volume) -> VolumeInfo {
    VolumeInfo {
        name: v.name,
        labels: v.labels,
        created_at: v.created_at.map(|t| t.to_string()),
        size: v.usage_data.and_then(|u| u64::try_from(u.size).ok()),
    }
}

/// The sizes of volumes from the engine's disk-usage data (`GET /system/df`),
/// by name. bollard models that answer as API 1.52 has it (`VolumeUsage`);
/// Docker 20.10 (API 1.41) answers with a `Volumes` array it does not read,
/// so this one GET is made by hand, over the local socket only. Empty when
/// the engine is not local or does not answer in time: sizes are a courtesy.
pub(super) async fn volume_sizes(version: &str) -> HashMap<String, u64> {
    #[derive(serde::Deserialize)]
    struct DiskUsage {
        #[serde(rename = "Volumes", default)]
        volumes: Option<Vec<bollard::models::Volume>>,
    }
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => path.to_string(),
            None => return HashMap::new(),
        },
        _ => "/var/run/docker.sock".to_string(),
    };
    let get = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::UnixStream::connect(&socket).await?;
        let request = format!("GET /v{version}/system/df HTTP/1.0\r\nHost: docker\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        // Bounded: a few hundred bytes per image, container and volume.
        stream.take(64 * 1024 * 1024).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let Ok(Ok(answer)) = tokio::time::timeout(CALL_TIMEOUT, get).await else {
        return HashMap::new();
    };
    let Some(body_at) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return HashMap::new();
    };
    let Ok(usage) = serde_json::from_slice::<DiskUsage>(&answer[body_at + 4..]) else {
        return HashMap::new();
    };
    usage
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.name, u64::try_from(v.usage_data?.size).ok()?)))
        .collect()
}

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
    // Docker answers 500 ("a disk usage operation is already running") to a
    // second `/system/df` while one runs (another server of this engine, or
    // `docker system df`): a few short retries, then no sizes.
    let mut body = None;
    for attempt in 0..5u64 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
        }
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
        let ok = answer.split(|&b| b == b'\n').next().is_some_and(|status| {
            std::str::from_utf8(status).is_ok_and(|s| s.split_whitespace().nth(1) == Some("200"))
        });
        if !ok {
            continue;
        }
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            body = Some(answer[at + 4..].to_vec());
        }
        break;
    }
    let Some(body) = body else {
        return HashMap::new();
    };
    let Ok(usage) = serde_json::from_slice::<DiskUsage>(&body) else {
        return HashMap::new();
    };
    usage
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.name, u64::try_from(v.usage_data?.size).ok()?)))
        .collect()
}

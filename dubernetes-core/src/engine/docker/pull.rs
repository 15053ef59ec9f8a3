//! A failed pull as the error a user can act on.

use bollard::errors::Error as DockerError;

use crate::error::{Error, PullFailure};

/// A failed pull as the pod's status and event say it: why (from the
/// registry's or the engine's words), the engine's message escaped and cut.
pub(super) fn pull_error(image: &str, e: &DockerError) -> Error {
    let text = match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    };
    let lower = text.to_ascii_lowercase();
    let reason = if [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        PullFailure::Unauthorized
    } else if ["manifest unknown", "not found", "does not exist", "name unknown"]
        .iter()
        .any(|w| lower.contains(w))
    {
        PullFailure::NotFound
    } else if [
        "connection refused",
        "no such host",
        "timeout",
        "i/o timeout",
        "dial tcp",
        "network is unreachable",
        "http response to https",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        PullFailure::Unreachable
    } else {
        PullFailure::Other
    };
    let message: String = text.escape_debug().take(512).collect();
    Error::ImagePull {
        image: image.to_string(),
        reason,
        message,
    }
}

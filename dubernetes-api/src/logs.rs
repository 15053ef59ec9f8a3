//! Log lines, as `GET /v1/pods/{name}/logs` sends them (one JSON object a line).

use serde::{Deserialize, Serialize};

/// Which output a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Longest log line passed on, in bytes: a longer line is cut here, marked
/// [`LogLine::truncated`], and the rest of it (up to its newline) is skipped
/// without being buffered. Docker's own log drivers split lines at 16 KiB too.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// One line of a replica's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// The replica (its container name without the `dub-<instance>-` prefix).
    pub replica: String,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The line, without its newline: at most [`MAX_LOG_LINE_BYTES`] bytes.
    pub line: String,
    /// True when the line was longer than [`MAX_LOG_LINE_BYTES`] and `line`
    /// is only its beginning. Absent (false) otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

//! A pod's logs: every replica's log, interleaved line by line as the engine
//! delivers them, each line tagged with the replica it came from (like
//! `kubectl logs -l app=x --prefix` or `docker service logs`).
//!
//! Backpressure: the result is a pull-based stream. Nothing reads a replica's
//! log ahead of the consumer; a slow HTTP client stops the polling of the
//! engine's streams, and the engine's socket buffer fills instead of memory.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::engine::{LogChunk, LogRequest, LogSource};
use crate::error::Result;

/// What part of a pod's logs to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Keep streaming new lines until the replicas stop or the reader goes away.
    pub follow: bool,
    /// Only the last this many lines of each replica.
    pub tail: Option<usize>,
    /// Only lines written in this last stretch of time.
    pub since: Option<Duration>,
}

impl LogOptions {
    /// Everything written so far, without following.
    pub fn new() -> Self {
        LogOptions::default()
    }

    /// Follow the logs.
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Only the last `n` lines of each replica.
    pub fn tail(mut self, n: usize) -> Self {
        self.tail = Some(n);
        self
    }

    /// Only lines newer than `ago`.
    pub fn since(mut self, ago: Duration) -> Self {
        self.since = Some(ago);
        self
    }
}

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

/// One line of a replica's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct LogLine {
    /// The replica (its container name without the `dub-<instance>-` prefix).
    pub replica: String,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The line, without its newline.
    pub line: String,
}

/// Splits a chunked log into lines; a line split across chunks is joined.
struct Lines {
    replica: String,
    pending: [Vec<u8>; 2],
}

impl Lines {
    fn feed(&mut self, chunk: LogChunk) -> Vec<LogLine> {
        let (stream, bytes) = match chunk.source {
            LogSource::Stderr => (LogStream::Stderr, chunk.bytes),
            LogSource::Stdout => (LogStream::Stdout, chunk.bytes),
        };
        let buffer = &mut self.pending[stream as usize];
        buffer.extend_from_slice(&bytes);
        let mut lines = Vec::new();
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let rest = buffer.split_off(end + 1);
            let mut line = std::mem::replace(buffer, rest);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(LogLine {
                replica: self.replica.clone(),
                stream,
                line: String::from_utf8_lossy(&line).into_owned(),
            });
        }
        lines
    }

    fn finish(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for (i, buffer) in self.pending.iter_mut().enumerate() {
            if !buffer.is_empty() {
                lines.push(LogLine {
                    replica: self.replica.clone(),
                    stream: if i == 0 { LogStream::Stdout } else { LogStream::Stderr },
                    line: String::from_utf8_lossy(&std::mem::take(buffer)).into_owned(),
                });
            }
        }
        lines
    }
}

/// A boxed stream of log lines.
pub type LogLines = Pin<Box<dyn Stream<Item = Result<LogLine>> + Send>>;

/// One replica's log as lines.
pub(crate) fn replica_lines(
    runtime: &crate::runtime::Runtime,
    id: &str,
    replica: String,
    options: &LogOptions,
) -> LogLines {
    let since = options.since.map(|ago| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(now.saturating_sub(ago).as_secs()).unwrap_or(i64::MAX)
    });
    let chunks = runtime.engine().logs(
        id,
        LogRequest {
            follow: options.follow,
            tail: options.tail,
            since,
        },
    );
    let mut splitter = Lines {
        replica,
        pending: [Vec::new(), Vec::new()],
    };
    // `None` marks the end of the engine's stream, so the last partial line is flushed.
    let lines = chunks
        .map(Some)
        .chain(futures::stream::iter([None]))
        .flat_map(move |chunk| {
            let out: Vec<Result<LogLine>> = match chunk {
                // (A replica removed while we read it simply ends its part of the log.)
                Some(Ok(chunk)) => splitter.feed(chunk).into_iter().map(Ok).collect(),
                Some(Err(e)) => vec![Err(e)],
                None => splitter.finish().into_iter().map(Ok).collect(),
            };
            futures::stream::iter(out)
        });
    Box::pin(lines)
}

/// Interleaves the replicas' logs as lines arrive.
pub(crate) fn merge(streams: Vec<LogLines>) -> LogLines {
    Box::pin(futures::stream::select_all(streams))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> LogChunk {
        LogChunk {
            source: LogSource::Stdout,
            bytes: bytes::Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut l = Lines {
            replica: "r".into(),
            pending: [Vec::new(), Vec::new()],
        };
        assert!(l.feed(out("hel")).is_empty());
        let lines = l.feed(out("lo\r\nwor"));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, "hello");
        let rest = l.finish();
        assert_eq!(rest[0].line, "wor");
        assert_eq!(rest[0].stream, LogStream::Stdout);
    }
}

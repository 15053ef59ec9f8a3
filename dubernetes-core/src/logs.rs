//! A pod's logs: every replica's log, interleaved line by line as the engine
//! delivers them, each line tagged with the replica it came from (like
//! `kubectl logs -l app=x --prefix` or `docker service logs`).
//!
//! Backpressure: the result is a pull-based stream. Nothing reads a replica's
//! log ahead of the consumer; a slow HTTP client stops the polling of the
//! engine's streams, and the engine's socket buffer fills instead of memory.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};

use crate::engine::{LogChunk, LogRequest, LogSource};
use crate::error::{Error, Result};
pub use dubernetes_api::{LogLine, LogStream, MAX_LOG_LINE_BYTES};

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
    /// Caps on followed streams (none: unlimited, for embedders that bound it themselves).
    pub limits: Option<FollowLimits>,
    /// Only this one-off run's log (`dubectl logs POD --run NAME`).
    pub run: Option<String>,
}

/// Default of [`FollowLimits`]' server-wide cap: replica log streams followed at once.
pub const DEFAULT_MAX_LOG_FOLLOWS: usize = 256;
/// Default of [`FollowLimits`]' per-request cap: replicas one follow request reads.
pub const DEFAULT_MAX_LOG_FOLLOW_REPLICAS: usize = 64;

/// Caps on followed logs: each followed replica holds one engine connection
/// for as long as the reader stays, so they are counted. Shared by clones.
#[derive(Debug, Clone)]
pub struct FollowLimits {
    total: Arc<tokio::sync::Semaphore>,
    max_total: usize,
    per_request: usize,
}

impl FollowLimits {
    /// At most `max_total` replica streams followed at once across all
    /// requests sharing these limits, and `per_request` in one request.
    pub fn new(max_total: usize, per_request: usize) -> Self {
        let max_total = max_total.min(tokio::sync::Semaphore::MAX_PERMITS);
        FollowLimits {
            total: Arc::new(tokio::sync::Semaphore::new(max_total)),
            max_total,
            per_request,
        }
    }

    /// Replica streams followed right now.
    pub fn in_use(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    /// Takes `streams` places for one request of `pod`'s logs; released when
    /// the returned permit drops (the stream ends or the reader goes away).
    pub(crate) fn acquire(&self, pod: &str, streams: usize) -> Result<tokio::sync::OwnedSemaphorePermit> {
        if streams > self.per_request {
            return Err(Error::Limit {
                field: "follow".into(),
                message: format!(
                    "pod {pod:?} has {streams} replicas and one request follows at most {} (--max-log-follow-replicas); \
                     read without follow, or with --tail, or raise the limit",
                    self.per_request
                ),
            });
        }
        let n = u32::try_from(streams).unwrap_or(u32::MAX);
        Arc::clone(&self.total).try_acquire_many_owned(n).map_err(|_| {
            Error::TooManyStreams(format!(
                "{} replica log streams are followed already and the server follows at most {} at once \
                 (--max-log-follows); this request needs {streams}: stop another `logs -f` or retry later",
                self.in_use(),
                self.max_total
            ))
        })
    }
}

impl PartialEq for FollowLimits {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.total, &other.total) && self.per_request == other.per_request
    }
}

impl Eq for FollowLimits {}

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

    /// Counts a followed read against these limits (refused past them).
    pub fn limits(mut self, limits: FollowLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Only the log of this one-off run.
    pub fn run(mut self, run: impl Into<String>) -> Self {
        self.run = Some(run.into());
        self
    }
}

/// One output's partial line.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The current line was already passed on, cut: drop bytes up to its newline.
    skipping: bool,
}

/// Splits a chunked log into lines; a line split across chunks is joined.
/// Memory is bounded: at most [`MAX_LOG_LINE_BYTES`] per output are kept,
/// whatever a replica writes; each chunk is scanned once.
struct Lines {
    replica: String,
    pending: [Pending; 2],
}

impl Lines {
    fn new(replica: String) -> Lines {
        Lines {
            replica,
            pending: [Pending::default(), Pending::default()],
        }
    }

    fn line(&self, stream: LogStream, bytes: &[u8], truncated: bool) -> LogLine {
        let mut bytes = bytes;
        if bytes.last() == Some(&b'\r') {
            bytes = &bytes[..bytes.len() - 1];
        }
        // A cut in the middle of a UTF-8 sequence drops the incomplete character.
        if truncated
            && let Err(e) = std::str::from_utf8(bytes)
            && e.error_len().is_none()
        {
            bytes = &bytes[..e.valid_up_to()];
        }
        LogLine {
            replica: self.replica.clone(),
            stream,
            line: String::from_utf8_lossy(bytes).into_owned(),
            truncated,
        }
    }

    fn feed(&mut self, chunk: LogChunk) -> Vec<LogLine> {
        let (stream, bytes) = match chunk.source {
            LogSource::Stderr => (LogStream::Stderr, chunk.bytes),
            LogSource::Stdout => (LogStream::Stdout, chunk.bytes),
        };
        let mut lines = Vec::new();
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let newline = rest.iter().position(|b| *b == b'\n');
            let (piece, ends_line) = match newline {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            rest = match newline {
                Some(at) => &rest[at + 1..],
                None => &[],
            };
            let pending = &mut self.pending[stream as usize];
            if pending.skipping {
                pending.skipping = !ends_line;
                continue;
            }
            let room = MAX_LOG_LINE_BYTES - pending.bytes.len();
            if piece.len() > room {
                // Longer than the limit: pass the beginning on now, drop the rest.
                let mut cut = std::mem::take(&mut pending.bytes);
                cut.extend_from_slice(&piece[..room.min(piece.len())]);
                pending.skipping = !ends_line;
                lines.push(self.line(stream, &cut, true));
            } else if ends_line {
                let line = if pending.bytes.is_empty() {
                    self.line(stream, piece, false)
                } else {
                    let mut whole = std::mem::take(&mut pending.bytes);
                    whole.extend_from_slice(piece);
                    self.line(stream, &whole, false)
                };
                lines.push(line);
            } else {
                pending.bytes.extend_from_slice(piece);
            }
        }
        lines
    }

    fn finish(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for (i, stream) in [LogStream::Stdout, LogStream::Stderr].into_iter().enumerate() {
            let bytes = std::mem::take(&mut self.pending[i].bytes);
            if !bytes.is_empty() {
                lines.push(self.line(stream, &bytes, false));
            }
        }
        lines
    }
}

/// A boxed stream of log lines.
pub type LogLines = Pin<Box<dyn Stream<Item = Result<LogLine>> + Send>>;

/// One replica's log as lines.
pub(crate) fn replica_lines(
    runtime: &crate::owned_engine::Runtime,
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
    let mut splitter = Lines::new(replica);
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

/// Interleaves the replicas' logs as lines arrive. `permit` (the place of a
/// followed read in [`FollowLimits`]) is released when the stream drops.
pub(crate) fn merge(streams: Vec<LogLines>, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> LogLines {
    Box::pin(futures::stream::select_all(streams).map(move |line| {
        let _held = &permit;
        line
    }))
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
        let mut l = Lines::new("r".into());
        assert!(l.feed(out("hel")).is_empty());
        let lines = l.feed(out("lo\r\nwor"));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, "hello");
        assert!(!lines[0].truncated);
        let rest = l.finish();
        assert_eq!(rest[0].line, "wor");
        assert_eq!(rest[0].stream, LogStream::Stdout);
    }

    #[test]
    fn long_lines_are_cut_marked_and_not_buffered() {
        let mut l = Lines::new("r".into());
        // 40 KiB without a newline, in 1 KiB chunks, then the newline and a short line.
        let mut got = Vec::new();
        for _ in 0..40 {
            got.extend(l.feed(out(&"x".repeat(1024))));
            assert!(l.pending[0].bytes.len() <= MAX_LOG_LINE_BYTES);
        }
        // The cut beginning is passed on as soon as it is complete.
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].line.len(), MAX_LOG_LINE_BYTES);
        assert!(got[0].truncated);
        assert!(l.pending[0].bytes.is_empty());
        let next = l.feed(out("yyy\nshort\n"));
        assert_eq!(next.len(), 1, "{next:?}");
        assert_eq!(next[0].line, "short");
        assert!(!next[0].truncated);
        // One chunk holding a long line and more lines.
        let chunk = format!("{}\nafter\n", "z".repeat(3 * MAX_LOG_LINE_BYTES));
        let lines = l.feed(out(&chunk));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].truncated && lines[0].line.len() == MAX_LOG_LINE_BYTES);
        assert_eq!(lines[1].line, "after");
        // Exactly the limit is not cut.
        let exact = l.feed(out(&format!("{}\n", "e".repeat(MAX_LOG_LINE_BYTES))));
        assert_eq!(exact.len(), 1);
        assert!(!exact[0].truncated);
        // Nor when its newline comes in the next chunk.
        assert!(l.feed(out(&"f".repeat(MAX_LOG_LINE_BYTES))).is_empty());
        let exact = l.feed(out("\n"));
        assert!(!exact[0].truncated && exact[0].line.len() == MAX_LOG_LINE_BYTES);
        assert!(l.finish().is_empty());
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut l = Lines::new("r".into());
        let text = format!("a{}\n", "é".repeat(MAX_LOG_LINE_BYTES));
        let lines = l.feed(out(&text));
        assert!(lines[0].truncated);
        assert!(!lines[0].line.contains('\u{fffd}'));
        assert_eq!(lines[0].line.len(), MAX_LOG_LINE_BYTES - 1);
    }

    #[test]
    fn stdout_and_stderr_are_split_separately() {
        let mut l = Lines::new("r".into());
        assert!(l.feed(out("o1")).is_empty());
        let e = l.feed(LogChunk {
            source: LogSource::Stderr,
            bytes: bytes::Bytes::from_static(b"e1\n"),
        });
        assert_eq!((e[0].stream, e[0].line.as_str()), (LogStream::Stderr, "e1"));
        assert_eq!(l.feed(out("\n"))[0].line, "o1");
    }
}

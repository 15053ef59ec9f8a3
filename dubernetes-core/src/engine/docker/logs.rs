//! Container logs from Docker: the options of a request, a crashed replica's
//! last lines, and the stream of chunks `dubectl logs` prints.

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{LogsOptions, LogsOptionsBuilder};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{CALL_TIMEOUT, LOG_TAIL_MAX_BYTES, bounded, wrap};
use crate::engine::{LogChunk, LogRequest, LogSource};
use crate::error::Result;

/// Query of the last `tail` lines, stdout and stderr.
pub(in crate::engine) fn tail_options(tail: usize) -> LogsOptions {
    LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail(&tail.to_string())
        .build()
}

/// Query of a log read.
pub(in crate::engine) fn log_options(request: LogRequest) -> LogsOptions {
    let tail = request.tail.map_or_else(|| "all".to_string(), |n| n.to_string());
    let mut options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(request.follow)
        .tail(&tail);
    if let Some(since) = request.since {
        options = options.since(i32::try_from(since).unwrap_or(i32::MAX));
    }
    options.build()
}

/// The last [`LOG_TAIL_MAX_BYTES`] of a finite log stream, as text.
pub(in crate::engine) async fn read_tail(
    logs: impl futures::Stream<Item = Result<LogOutput, DockerError>>,
) -> Result<String> {
    // A line without a newline can be any length: read at most
    // LOG_TAIL_MAX_BYTES, keeping the end (the last lines are the point).
    let read = async {
        let mut logs = std::pin::pin!(logs);
        let mut tail: Vec<u8> = Vec::new();
        while let Some(chunk) = logs.next().await {
            tail.extend_from_slice(&chunk?.into_bytes());
            if tail.len() > 2 * LOG_TAIL_MAX_BYTES {
                tail.drain(..tail.len() - LOG_TAIL_MAX_BYTES);
            }
        }
        if tail.len() > LOG_TAIL_MAX_BYTES {
            tail.drain(..tail.len() - LOG_TAIL_MAX_BYTES);
        }
        Ok(tail)
    };
    let tail = bounded("reading logs", CALL_TIMEOUT, read).await?;
    Ok(String::from_utf8_lossy(&tail).into_owned())
}

/// A bollard log stream in our words; a container (or service) removed while
/// it is read simply ends its log.
pub(in crate::engine) fn log_chunks(
    logs: impl futures::Stream<Item = Result<LogOutput, DockerError>> + Send + 'static,
    what: String,
) -> BoxStream<'static, Result<LogChunk>> {
    logs.take_while(|chunk| {
        let gone = matches!(
            chunk,
            Err(DockerError::DockerResponseServerError { status_code: 404, .. })
        );
        futures::future::ready(!gone)
    })
    .map(move |chunk| match chunk {
        Ok(LogOutput::StdErr { message }) => Ok(LogChunk {
            source: LogSource::Stderr,
            bytes: message,
        }),
        Ok(other) => Ok(LogChunk {
            source: LogSource::Stdout,
            bytes: other.into_bytes(),
        }),
        Err(e) => Err(wrap(&what, e)),
    })
    .boxed()
}

//! `POST /v1/pods/{name}/exec`: a command in a running replica, over the
//! request's own connection, upgraded.
//!
//! Why an HTTP upgrade (`Upgrade: dubernetes-exec.v1`) and not a WebSocket:
//! it is what Docker's own exec and attach do; the client is plain reqwest
//! (`Response::upgrade`), with the same TLS settings and token as every other
//! call, and the server is plain hyper, so neither needs a WebSocket library
//! (axum's `ws` would add a second tokio-tungstenite next to the tests'); and
//! a 5-byte frame header ([`dubernetes_core::dubernetes_api::run`]) is all the
//! framing both ways need. Errors found before the upgrade (no such pod, no
//! ready replica, a bad body) are ordinary JSON answers, at once.
//!
//! After the `101`, the client sends stdin, end-of-stdin and resize frames;
//! the server sends stdout and stderr frames, then one exit (or error) frame,
//! and closes. A client that goes away, and a server that shuts down, end
//! the command's processes (see [`dubernetes_core::ExecControl::kill`]).

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dubernetes_core::dubernetes_api::ExecRequest;
use dubernetes_core::dubernetes_api::run::{
    EXEC_PROTOCOL, FRAME_HEADER, FrameKind, MAX_FRAME_PAYLOAD, decode_header, encode_frame,
};
use dubernetes_core::{Exec, ExecOptions, LogSource};
use futures::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::error::{ApiError, ErrorCode};

/// The connection's upgrade, if the client asked for ours.
pub(crate) struct Upgrade(Option<OnUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let asked = parts
            .headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(EXEC_PROTOCOL));
        Ok(Upgrade(if asked {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        }))
    }
}

/// Runs a command in a ready replica of the pod (or the one named), with
/// the connection upgraded to `dubernetes-exec.v1` (send `Connection:
/// Upgrade` and `Upgrade: dubernetes-exec.v1`; a request without them is 400
/// `bad_request`). A pod with no ready replica is 409 `conflict` (field
/// `replica`) at once. The frames are documented in docs/api.md.
#[utoipa::path(post, path = "/v1/pods/{name}/exec", tag = "pods", security(("bearer" = [])),
    params(("name" = String, Path, description = "pod name")),
    request_body = ExecRequest,
    responses(
        (status = 101, description = "switching to dubernetes-exec.v1; the header x-dubernetes-replica names the replica"),
        (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 422, body = ApiError), (status = 503, body = ApiError)))]
pub(crate) async fn exec(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Upgrade(upgrade): Upgrade,
    Json(body): Json<ExecRequest>,
) -> Result<Response, ApiError> {
    let Some(upgrade) = upgrade else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!(
                "this route upgrades the connection: send `Connection: Upgrade` and `Upgrade: {EXEC_PROTOCOL}` (dubectl exec does)"
            ),
        ));
    };
    let exec = state
        .orchestrator
        .exec(
            &name,
            ExecOptions {
                command: body.command,
                replica: body.replica,
                tty: body.tty,
                stdin: body.stdin,
                size: body.width.zip(body.height),
            },
        )
        .await?;
    let replica = HeaderValue::from_str(&exec.replica).unwrap_or(HeaderValue::from_static(""));
    tokio::spawn(session(upgrade, exec, state.shutdown));
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static(EXEC_PROTOCOL)),
        ],
        [("x-dubernetes-replica", replica)],
    )
        .into_response())
}

/// Carries one exec over the upgraded connection until the command ends,
/// the client goes away, or the server shuts down.
async fn session(upgrade: OnUpgrade, exec: Exec, shutdown: CancellationToken) {
    let Exec {
        mut output,
        mut input,
        control,
        ..
    } = exec;
    let upgraded = match upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "exec: the upgrade failed");
            control.kill().await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
    let inbound = async {
        loop {
            let mut header = [0u8; FRAME_HEADER];
            if rd.read_exact(&mut header).await.is_err() {
                return;
            }
            let Ok((kind, len)) = decode_header(header) else { return };
            let mut payload = vec![0u8; len];
            if rd.read_exact(&mut payload).await.is_err() {
                return;
            }
            match kind {
                // A command that closed its stdin: what else the client sends is dropped.
                FrameKind::Stdin => {
                    let _ = input.write_all(&payload).await;
                    let _ = input.flush().await;
                }
                FrameKind::StdinEof => {
                    let _ = input.shutdown().await;
                }
                FrameKind::Resize if payload.len() == 4 => {
                    let width = u16::from_be_bytes([payload[0], payload[1]]);
                    let height = u16::from_be_bytes([payload[2], payload[3]]);
                    if let Err(e) = control.resize(width, height).await {
                        tracing::debug!(error = %e, "exec: resize failed");
                    }
                }
                _ => return,
            }
        }
    };
    let outbound = async {
        while let Some(chunk) = output.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = send(&mut wr, FrameKind::Error, e.to_string().as_bytes()).await;
                    return false;
                }
            };
            let kind = match chunk.source {
                LogSource::Stdout => FrameKind::Stdout,
                LogSource::Stderr => FrameKind::Stderr,
            };
            if send(&mut wr, kind, &chunk.bytes).await.is_err() {
                return true;
            }
        }
        let sent = match control.exit_code().await {
            Ok(code) => send(&mut wr, FrameKind::Exit, &code.to_be_bytes()).await,
            Err(e) => send(&mut wr, FrameKind::Error, e.to_string().as_bytes()).await,
        };
        let _ = wr.shutdown().await;
        sent.is_err()
    };
    let abandoned = tokio::select! {
        gone = outbound => gone,
        () = inbound => true,
        () = shutdown.cancelled() => true,
    };
    if abandoned {
        control.kill().await;
    }
}

/// Writes one frame per [`MAX_FRAME_PAYLOAD`] bytes of `bytes`.
async fn send<W: AsyncWrite + Unpin>(w: &mut W, kind: FrameKind, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        w.write_all(&encode_frame(kind, bytes)).await?;
    }
    for part in bytes.chunks(MAX_FRAME_PAYLOAD) {
        w.write_all(&encode_frame(kind, part)).await?;
    }
    w.flush().await
}

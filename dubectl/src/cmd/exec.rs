//! `dubectl exec`: a command in a running replica of a pod, its output
//! streamed, its exit code ours.
//!
//! `exec` speaks `dubernetes-exec.v1` over the upgraded connection (frames:
//! `dubernetes_api::run`). With `-t` and a terminal on stdin, the terminal is
//! put in raw mode (restored on every way out), so keys, Ctrl-C included,
//! go to the command's own terminal; its size is sent at the start and on
//! every SIGWINCH. Without `-t`, Ctrl-C closes the connection, and the server
//! ends the command's processes.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use dubernetes_api::ExecRequest;
use dubernetes_api::run::{FRAME_HEADER, FrameKind, MAX_FRAME_PAYLOAD, decode_header, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client::Client;

/// The arguments of `dubectl exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct Exec {
    /// The pod's name.
    name: String,
    /// The replica to run in (as `dubectl get pod NAME -o wide` and `dubectl logs` name it).
    #[arg(long)]
    replica: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long = "stdin")]
    stdin: bool,
    /// Give the command a terminal (raw mode and resizes when stdin is one).
    #[arg(short, long)]
    tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl Exec {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Exec {
            name,
            replica,
            stdin,
            tty,
            command,
        } = self;
        let code = exec(client, &name, replica, stdin, tty, command).await?;
        Ok(ExitCode::from((code & 0xff) as u8))
    }
}

/// Exit status when Ctrl-C ended the command (as a shell reports SIGINT).
pub(super) const INTERRUPTED: i32 = 130;
/// Exit status when the connection ended without an exit code.
pub(super) const LOST: i32 = 255;

/// The terminal in raw mode while this lives.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enable() -> anyhow::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin().as_fd(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// The terminal's size (columns, rows), if stdout (or stdin) is a terminal.
fn terminal_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout().as_fd())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin().as_fd()))
        .ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// The terminal's size as a resize frame.
fn resize_frame() -> Option<Vec<u8>> {
    let (width, height) = terminal_size()?;
    let mut payload = width.to_be_bytes().to_vec();
    payload.extend_from_slice(&height.to_be_bytes());
    Some(encode_frame(FrameKind::Resize, &payload))
}

/// Runs `dubectl exec`; returns the exit status (the command's, else ours).
async fn exec(
    client: &Client,
    pod: &str,
    replica: Option<String>,
    stdin: bool,
    tty: bool,
    command: Vec<String>,
) -> anyhow::Result<i32> {
    let size = tty.then(terminal_size).flatten();
    let request = ExecRequest {
        command,
        replica,
        tty,
        stdin,
        width: size.map(|s| s.0),
        height: size.map(|s| s.1),
    };
    let (upgraded, _replica) = client.exec(pod, &request).await?;
    let (mut rd, mut wr) = tokio::io::split(upgraded);
    let raw = if tty && std::io::stdin().is_terminal() {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    });
    if tty {
        let resizes = frames.clone();
        tokio::spawn(async move {
            let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some(frame) = resize_frame()
                    && resizes.send(frame).await.is_err()
                {
                    return;
                }
            }
        });
    }
    if stdin {
        // A thread of its own: a blocking read of stdin must not hold up the
        // runtime's shutdown (the process exits without waiting for it).
        let input = frames.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; MAX_FRAME_PAYLOAD];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = input.blocking_send(encode_frame(FrameKind::StdinEof, &[]));
                        return;
                    }
                    Ok(n) => {
                        if input.blocking_send(encode_frame(FrameKind::Stdin, &buf[..n])).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(frames);
    let read = async {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        loop {
            let mut header = [0u8; FRAME_HEADER];
            if rd.read_exact(&mut header).await.is_err() {
                return Err(anyhow!("the connection to the server closed before the command ended"));
            }
            let (kind, len) = decode_header(header).map_err(|e| anyhow!("the server sent a bad frame: {e}"))?;
            let mut payload = vec![0u8; len];
            rd.read_exact(&mut payload)
                .await
                .context("the connection to the server closed mid-frame")?;
            match kind {
                FrameKind::Stdout => {
                    out.write_all(&payload)?;
                    out.flush()?;
                }
                FrameKind::Stderr => {
                    err.write_all(&payload)?;
                    err.flush()?;
                }
                FrameKind::Exit => {
                    let code = <[u8; 8]>::try_from(payload.as_slice())
                        .map(i64::from_be_bytes)
                        .map_err(|_| anyhow!("the server sent a bad exit frame"))?;
                    return Ok(i32::try_from(code).unwrap_or(LOST));
                }
                FrameKind::Error => {
                    return Err(anyhow!(
                        "the exec failed on the server: {}",
                        crate::escape::line(&String::from_utf8_lossy(&payload))
                    ));
                }
                _ => return Err(anyhow!("the server sent an unexpected frame")),
            }
        }
    };
    let result = if raw.is_some() {
        // Ctrl-C is a key for the command's terminal, not a signal for us.
        read.await
    } else {
        tokio::select! {
            r = read => r,
            _ = tokio::signal::ctrl_c() => Ok(INTERRUPTED),
        }
    };
    writer.abort();
    drop(raw);
    if let Err(e) = &result
        && e.to_string().contains("closed before")
    {
        eprintln!("error: {e}");
        return Ok(LOST);
    }
    result
}

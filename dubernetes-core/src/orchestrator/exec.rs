//! `dubectl exec`: a command run in a running replica, attached.
//!
//! An exec'd process does not end when its attach connection closes (the
//! engine keeps it, and a TTY's master stays open in the engine, so no
//! SIGHUP either). So every exec carries a marker in its env,
//! `DUBERNETES_EXEC=<random>`, inherited by its children; [`ExecControl::kill`]
//! runs a second exec that signals every process of the container whose env
//! holds the marker (TERM, then KILL after [`KILL_GRACE`]). That needs `sh`,
//! `tr`, `grep` and `kill` in the image (busybox or any distribution); in an
//! image without them a process left by a dropped connection runs on until it
//! ends by itself (logged). Nothing the user sends reaches that shell: the
//! marker is ours, passed as an argument.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncWrite;

use crate::engine::{Engine, ExecRequest, LogChunk};
use crate::error::{Error, Result};
use crate::orchestrator::Dubernetes;

/// The env variable that marks an exec's processes.
pub const EXEC_MARKER_ENV: &str = "DUBERNETES_EXEC";
/// Time the processes of an abandoned exec get between TERM and KILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
pub use dubernetes_api::run::{MAX_EXEC_ARGS, MAX_EXEC_COMMAND_BYTES};

/// What to exec, and where.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command and its arguments (no shell).
    pub command: Vec<String>,
    /// A replica's name (`web-abc123`, or the container's full name); None: any ready one.
    pub replica: Option<String>,
    /// With a terminal.
    pub tty: bool,
    /// Attach standard input.
    pub stdin: bool,
    /// With `tty`: the terminal's size (columns, rows), set right after the start.
    pub size: Option<(u16, u16)>,
}

/// An exec, started: its output, its input, and its control.
pub struct Exec {
    /// The replica it runs in (as `dubectl logs` names it).
    pub replica: String,
    /// Its output; ends when it exits.
    pub output: BoxStream<'static, Result<LogChunk>>,
    /// Its standard input (shut it down for end of input).
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    /// Resize, exit code, kill.
    pub control: ExecControl,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exec")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// What can be done to a running exec besides talking to it.
#[derive(Clone)]
pub struct ExecControl {
    engine: Arc<dyn Engine>,
    container: String,
    exec: String,
    marker: String,
}

impl std::fmt::Debug for ExecControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecControl")
            .field("exec", &self.exec)
            .finish_non_exhaustive()
    }
}

impl ExecControl {
    /// Resizes its terminal (no-op without one).
    pub async fn resize(&self, width: u16, height: u16) -> Result<()> {
        if width == 0 || height == 0 {
            return Ok(());
        }
        self.engine.exec_resize(&self.exec, width, height).await
    }

    /// Its exit code, once its output has ended: the engine books the exit a
    /// moment after the stream ends, so this waits (at most a few seconds).
    pub async fn exit_code(&self) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let status = self.engine.exec_status(&self.exec).await?;
            if !status.running
                && let Some(code) = status.exit_code
            {
                return Ok(code);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout("the exec's exit code".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends every process of the exec (the client went away, or the server
    /// shuts down): TERM, then KILL after [`KILL_GRACE`] to what is left.
    pub async fn kill(&self) {
        if !self.running().await {
            return;
        }
        self.signal("TERM").await;
        let deadline = tokio::time::Instant::now() + KILL_GRACE;
        while tokio::time::Instant::now() < deadline {
            if !self.running().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.signal("KILL").await;
    }

    async fn running(&self) -> bool {
        self.engine
            .exec_status(&self.exec)
            .await
            .map(|s| s.running)
            .unwrap_or(false)
    }

    async fn signal(&self, signal: &str) {
        let script = "for p in /proc/[0-9]*; do \
            if tr '\\0' '\\n' < \"$p/environ\" 2>/dev/null | grep -qx \"$1=$2\"; then kill -s \"$3\" \"${p#/proc/}\" 2>/dev/null; fi; \
            done; true";
        let cmd = ["sh", "-c", script, "sh", EXEC_MARKER_ENV, &self.marker, signal];
        if let Err(e) = self.engine.exec(&self.container, &cmd).await {
            tracing::warn!(exec = %self.exec, error = %e, "could not end an abandoned exec's processes (does the image have sh?)");
        }
    }
}

/// The command refused before anything runs: present, bounded, no NUL.
pub(crate) fn check_command(command: &[String], field: &str) -> Result<()> {
    let invalid = |message: String| Error::InvalidInput {
        field: field.to_string(),
        message,
    };
    if command.is_empty() || command[0].is_empty() {
        return Err(invalid("give a command to run".into()));
    }
    if command.len() > MAX_EXEC_ARGS {
        return Err(invalid(format!("at most {MAX_EXEC_ARGS} arguments")));
    }
    if command.iter().map(String::len).sum::<usize>() > MAX_EXEC_COMMAND_BYTES {
        return Err(invalid(format!("at most {MAX_EXEC_COMMAND_BYTES} bytes in all")));
    }
    if command.iter().any(|a| a.contains('\0')) {
        return Err(invalid("an argument contains a NUL byte".into()));
    }
    Ok(())
}

impl Dubernetes {
    /// Starts `options.command` in a ready replica of `pod` (or the one
    /// named), attached. A pod that does not exist is [`Error::NotFound`];
    /// one with no ready replica (or not the one named) is
    /// [`Error::NoReadyReplica`], at once.
    pub async fn exec(&self, pod: &str, options: ExecOptions) -> Result<Exec> {
        check_command(&options.command, "command")?;
        let view = self.get(pod).await?;
        let prefix = format!("dub-{}-", self.handle.settings.instance);
        let short = |name: &str| name.trim_start_matches('/').trim_start_matches(&prefix).to_string();
        let replica = match &options.replica {
            Some(wanted) => {
                let wanted = short(wanted);
                view.replicas
                    .iter()
                    .find(|r| short(&r.name) == wanted)
                    .filter(|r| r.ready)
                    .ok_or_else(|| {
                        Error::NoReadyReplica(format!(
                            "replica: pod {pod:?} has no ready replica named {wanted:?}; `dubectl get {pod}` lists them"
                        ))
                    })?
            }
            None => view.replicas.iter().find(|r| r.ready).ok_or_else(|| {
                Error::NoReadyReplica(format!(
                    "pod {pod:?} has no ready replica to exec in ({} replica(s), none ready); wait for it (`dubectl get {pod}`) and retry",
                    view.replicas.len()
                ))
            })?,
        };
        let name = short(&replica.name);
        let containers = self.containers(Some(pod)).await?;
        let container = containers
            .iter()
            .find(|c| c.role == "replica" && short(&c.name) == name)
            .ok_or_else(|| Error::NoReadyReplica(format!("replica {name:?} of pod {pod:?} is gone; retry")))?;
        let marker: String = (0..24)
            .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16usize)]))
            .collect();
        let engine = self.handle.runtime.engine_arc();
        let request = ExecRequest {
            cmd: options.command.clone(),
            tty: options.tty,
            stdin: options.stdin,
            env: vec![format!("{EXEC_MARKER_ENV}={marker}")],
        };
        let session = engine.exec_attach(&container.id, &request).await?;
        // Engine API 1.41 takes no size with the exec: set it at once (a
        // command that asks in its first moments may still see 0x0).
        if let (true, Some((width, height))) = (options.tty, options.size)
            && width > 0
            && height > 0
            && let Err(e) = engine.exec_resize(&session.id, width, height).await
        {
            tracing::debug!(error = %e, "exec: the first resize failed");
        }
        // On Swarm the exec ran in the task's container: kill through it too.
        let target = container.id.clone();
        Ok(Exec {
            replica: name,
            output: session.output.boxed(),
            input: session.input,
            control: ExecControl {
                engine,
                container: target,
                exec: session.id,
                marker,
            },
        })
    }
}

//! `dubectl run`: a one-off container of a pod's current revision; its output printed, its exit
//! code ours.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::anyhow;
use dubernetes_api::{LogLine, LogStream, RunExit};
use futures::StreamExt;

use super::exec::{INTERRUPTED, LOST};
use crate::client::Client;

/// The arguments of `dubectl run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Run {
    /// The pod's name.
    name: String,
    /// Start it and return at once with its name (its output: `dubectl logs POD --run NAME`).
    #[arg(short, long)]
    detach: bool,
    /// On a terminal too, print its output as written, control characters included.
    #[arg(long)]
    raw: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl Run {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Run {
            name,
            detach,
            raw,
            command,
        } = self;
        let code = run(client, &name, detach, raw, command).await?;
        Ok(ExitCode::from((code & 0xff) as u8))
    }
}

/// Runs `dubectl run`; returns the exit status.
async fn run(client: &Client, pod: &str, detach: bool, raw: bool, command: Vec<String>) -> anyhow::Result<i32> {
    if detach {
        let run = client.run_detached(pod, command).await?;
        println!(
            "run/{} started; its output: dubectl logs {pod} --run {}",
            run.name, run.name
        );
        return Ok(0);
    }
    let mut items = Box::pin(client.run_attached(pod, command).await?);
    let escape_out = !raw && std::io::stdout().is_terminal();
    let escape_err = !raw && std::io::stderr().is_terminal();
    let name: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
    let read = async {
        while let Some(item) = items.next().await {
            let value = item?;
            if let Ok(exit) = serde_json::from_value::<RunExit>(value.clone()) {
                return Ok(i32::try_from(exit.exit_code).unwrap_or(LOST));
            }
            let line: LogLine = serde_json::from_value(value).map_err(|e| anyhow!("unexpected answer: {e}"))?;
            name.borrow_mut().get_or_insert_with(|| line.replica.clone());
            let (escape, text) = match line.stream {
                LogStream::Stdout => (escape_out, &line.line),
                LogStream::Stderr => (escape_err, &line.line),
            };
            let text = if escape {
                crate::escape::escape_control(text, false)
            } else {
                std::borrow::Cow::Borrowed(text.as_str())
            };
            match line.stream {
                LogStream::Stdout => println!("{text}"),
                LogStream::Stderr => eprintln!("{text}"),
            }
        }
        Err(anyhow!("the connection to the server closed before the run ended"))
    };
    tokio::select! {
        r = read => r,
        _ = tokio::signal::ctrl_c() => {
            // Closing the connection removes the run; say so at once too.
            let run = name.borrow().clone();
            if let Some(run) = run {
                let _ = client.delete_run(pod, &run).await;
            }
            Ok(INTERRUPTED)
        }
    }
}

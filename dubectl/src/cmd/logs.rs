//! `dubectl logs`: a pod's logs, every replica's and run's, interleaved and prefixed.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;

use crate::client::Client;
use crate::{escape, parse_duration, style};

/// The arguments of `dubectl logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Logs {
    /// The pod's name.
    name: String,
    /// Keep printing new lines.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines of each replica.
    #[arg(long)]
    tail: Option<usize>,
    /// Only lines newer than this, e.g. 30s, 5m, 1h.
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// Only this one-off run's output (`dubectl run --detach` prints its name).
    #[arg(long)]
    run: Option<String>,
    /// Print lines without the replica prefix.
    #[arg(long)]
    no_prefix: bool,
    /// On a terminal too, print lines as the replicas wrote them, control
    /// characters (colours, cursor moves) included. By default they are
    /// shown escaped on a terminal (`\x1b[31m`) and passed through to pipes and files.
    #[arg(long)]
    raw: bool,
}

impl Logs {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Logs {
            name,
            follow,
            tail,
            since,
            run,
            no_prefix,
            raw,
        } = self;
        let since = since.map(|d| format!("{}s", d.as_secs().max(1)));
        let mut lines = Box::pin(
            client
                .logs(&name, follow, tail, since.as_deref(), run.as_deref())
                .await?,
        );
        let on = style::enabled(false);
        // What replicas write reaches a terminal only escaped (see escape.rs).
        let escape = !raw && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let cut = style::paint(
            on,
            33,
            &format!(" [line cut at {} bytes]", dubernetes_api::MAX_LOG_LINE_BYTES),
        );
        while let Some(line) = lines.next().await {
            let line = line?;
            let text = if escape {
                escape::escape_control(&line.line, false)
            } else {
                std::borrow::Cow::Borrowed(line.line.as_str())
            };
            let marker = if line.truncated { cut.as_str() } else { "" };
            if no_prefix {
                println!("{text}{marker}");
            } else {
                let prefix = format!("[{}]", line.replica);
                println!(
                    "{} {text}{marker}",
                    style::paint(on, style::colour_of(&line.replica), &prefix),
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

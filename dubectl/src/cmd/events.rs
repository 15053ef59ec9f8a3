//! `dubectl events`: recent events, of one pod or all; `-w` keeps watching.

use std::process::ExitCode;

use dubernetes_api::WatchKind;
use futures::StreamExt;

use crate::client::Client;
use crate::output;

/// The arguments of `dubectl events`.
#[derive(Debug, clap::Args)]
pub(crate) struct Events {
    /// Only this pod.
    name: Option<String>,
    /// After listing, print new events as they happen (uses the watch API).
    #[arg(short, long)]
    watch: bool,
}

impl Events {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Events { name, watch } = self;
        let (events, version) = client.events(name.as_deref()).await?;
        let widths = output::print_events(&events, !watch);
        if watch {
            let mut last_id = events.last().map(|e| e.id).unwrap_or(0);
            let mut widths = widths;
            let mut since = version;
            loop {
                let mut changes = Box::pin(client.watch(Some(since)).await?);
                while let Some(change) = changes.next().await {
                    let change = change?;
                    since = change.version;
                    if change.kind != WatchKind::Event {
                        continue;
                    }
                    let Some(event) = change.event else { continue };
                    if event.id <= last_id || name.as_deref().is_some_and(|n| n != event.pod) {
                        continue;
                    }
                    last_id = event.id;
                    widths = output::print_event_row(&event, widths);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

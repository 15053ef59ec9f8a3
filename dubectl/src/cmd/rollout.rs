//! `dubectl rollout`: status, history and undo of a pod's rollouts.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::client::Client;
use crate::{output, parse_duration, progress};

#[derive(Debug, Subcommand)]
pub(crate) enum RolloutCommand {
    /// Wait for a pod's rollout to finish, with live progress; exit non-zero if it fails or times out.
    #[command(after_help = "Example:\n  dubectl rollout status whoami --timeout 2m")]
    Status {
        /// The pod's name.
        name: String,
        /// How long to wait.
        #[arg(long, default_value = "300s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// List a pod's revisions.
    #[command(after_help = "Example:\n  dubectl rollout history whoami")]
    History {
        /// The pod's name.
        name: String,
    },
    /// Go back to an earlier revision (by default the previous one).
    #[command(after_help = "Examples:\n  dubectl rollout undo whoami\n  dubectl rollout undo whoami --to-revision 2")]
    Undo {
        /// The pod's name.
        name: String,
        /// The revision to go back to.
        #[arg(long)]
        to_revision: Option<i64>,
    },
}

impl RolloutCommand {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        match self {
            RolloutCommand::Status { name, timeout } => {
                let pod = client.get(&name).await?;
                let target = progress::Target {
                    name: name.clone(),
                    min_generation: pod.generation,
                    revision: pod.status.revision_number,
                };
                let pod = progress::wait(client, &target, timeout).await?;
                println!(
                    "pod/{name} successfully rolled out (revision {})",
                    pod.status.revision_number
                );
                Ok(ExitCode::SUCCESS)
            }
            RolloutCommand::History { name } => {
                output::print_history(&client.history(&name).await?);
                Ok(ExitCode::SUCCESS)
            }
            RolloutCommand::Undo { name, to_revision } => {
                let pod = client.undo(&name, to_revision).await?;
                println!(
                    "pod/{name} rolled back (now revision {}, image {})",
                    pod.status.revision_number, pod.spec.image
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

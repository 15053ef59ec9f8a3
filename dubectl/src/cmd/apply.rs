//! `dubectl apply`: create or update pods from files, and optionally wait for their rollouts.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use crate::client::Client;
use crate::{compose, escape, parse_duration, progress, specs, style};

/// The arguments of `dubectl apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct Apply {
    /// File, directory or `-`; repeat for several.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Validate on the server without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Wait until every applied pod is fully rolled out (live progress on a terminal); fails with
    /// the reason of a failed rollout (ProgressDeadlineExceeded, ReplicasExiting, HookFailed).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 90s, 5m.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// For a compose file: published HTTP ports are served as SERVICE.DOMAIN.
    #[arg(long, default_value = "localhost")]
    domain: String,
}

impl Apply {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Apply {
            files,
            dry_run,
            wait,
            timeout,
            domain,
        } = self;
        let specs = specs::read_specs_with(&files, &compose::Options { domain }, true)?;
        if specs.is_empty() {
            bail!("no pod specs found in {}", files.join(", "));
        }
        let mut targets = Vec::new();
        for spec in specs {
            let response = client.apply(&spec, dry_run).await?;
            let suffix = if dry_run { " (server dry run)" } else { "" };
            println!("pod/{} {}{suffix}", spec.name, response.outcome.as_str());
            for warning in &response.warnings {
                eprintln!(
                    "{} pod/{}: {}",
                    style::paint(style::enabled(true), 33, "warning:"),
                    spec.name,
                    escape::line(warning)
                );
            }
            if let Some(pod) = response.pod {
                targets.push(progress::Target {
                    name: spec.name,
                    min_generation: pod.generation,
                    revision: pod.status.revision_number,
                });
            }
        }
        if wait && !dry_run {
            for target in targets {
                progress::wait(client, &target, timeout).await?;
                println!("pod/{} ready", target.name);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

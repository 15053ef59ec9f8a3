//! `dubectl diff`: what `apply` would change, as a unified diff.

use std::process::ExitCode;

use anyhow::bail;

use crate::client::{self, Client};
use crate::{specs, style};

/// The arguments of `dubectl diff`.
#[derive(Debug, clap::Args)]
pub(crate) struct Diff {
    /// File, directory or `-`; repeat for several.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
}

impl Diff {
    /// Exit 0: no changes, 1: changes (errors are 2, see `main`).
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Diff { files } = self;
        let specs = specs::read_specs(&files)?;
        if specs.is_empty() {
            bail!("no pod specs found in {}", files.join(", "));
        }
        let mut changed = false;
        for spec in specs {
            // The server validates (and checks the host is free) first: an invalid file is an error, not a diff.
            client.dry_run_outcome(&spec).await?;
            let live = match client.get(&spec.name).await {
                Ok(pod) => Some(pod.spec),
                Err(e) if client::is_not_found(&e) => None,
                Err(e) => return Err(e),
            };
            if let Some(text) = crate::diff::unified(&spec.name, live.as_ref(), &spec, style::enabled(false))? {
                print!("{text}");
                changed = true;
            }
        }
        Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
    }
}

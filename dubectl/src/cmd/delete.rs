//! `dubectl delete`: pods (by name or by file), TLS secrets, or volumes and their data.

use std::process::ExitCode;

use anyhow::bail;

use crate::client::{self, Client};
use crate::{Kind, escape, specs, style};

/// The arguments of `dubectl delete`.
#[derive(Debug, clap::Args)]
pub(crate) struct Delete {
    /// Resource kind and names: `pod NAME...`, `secret NAME...` or `volume NAME...`.
    #[arg(required_unless_present = "files")]
    kind: Option<Kind>,
    /// Pod names.
    names: Vec<String>,
    /// Delete the pods defined in these files.
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// Succeed even when a pod does not exist.
    #[arg(long)]
    ignore_not_found: bool,
}

impl Delete {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Delete {
            kind,
            names,
            files,
            ignore_not_found,
        } = self;
        match kind {
            Some(Kind::Secrets) => {
                if !files.is_empty() {
                    bail!("-f deletes pods; delete secrets by name: `dubectl delete secret NAME`");
                }
                if names.is_empty() {
                    bail!("name the secrets to delete: `dubectl delete secret NAME`");
                }
                Ok(delete_each("secret", names, ignore_not_found, |name| async move {
                    client.delete_secret(&name).await
                })
                .await)
            }
            Some(Kind::Nodes) => bail!(
                "nodes belong to the swarm: drain or remove one with `docker node update --availability drain NODE` or `docker node rm NODE`"
            ),
            Some(Kind::Volumes) => {
                if !files.is_empty() {
                    bail!("-f deletes pods; delete volumes by name: `dubectl delete volume NAME`");
                }
                if names.is_empty() {
                    bail!("name the volumes to delete: `dubectl delete volume NAME`");
                }
                Ok(delete_each("volume", names, ignore_not_found, |name| async move {
                    client.delete_volume(&name).await
                })
                .await)
            }
            Some(Kind::Runs) => super::runs_are_listed(),
            Some(Kind::Pods) | None => {
                let mut targets = names;
                targets.extend(specs::read_specs(&files)?.into_iter().map(|s| s.name));
                if targets.is_empty() {
                    bail!("name the pods to delete (`dubectl delete pod NAME`) or give -f FILE");
                }
                Ok(delete_each("pod", targets, ignore_not_found, |name| async move {
                    client.delete(&name).await
                })
                .await)
            }
        }
    }
}

/// Deletes each named object, printing `KIND/NAME deleted` or the error; fails if any failed.
async fn delete_each<F, Fut>(kind: &str, names: Vec<String>, ignore_not_found: bool, delete: F) -> ExitCode
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut failed = false;
    for name in names {
        match delete(name.clone()).await {
            Ok(()) => println!("{kind}/{} deleted", escape::line(&name)),
            Err(e) if ignore_not_found && client::is_not_found(&e) => {}
            Err(e) => {
                eprintln!("{} {e:#}", style::paint(style::enabled(true), 31, "error:"));
                failed = true;
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

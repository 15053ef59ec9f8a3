//! `dubectl describe`: a pod in detail (spec, status, conditions, replicas, recent events), or a
//! secret, volume or node.

use std::process::ExitCode;

use anyhow::bail;

use crate::client::Client;
use crate::{Format, Kind, escape, output};

/// The arguments of `dubectl describe`.
#[derive(Debug, clap::Args)]
pub(crate) struct Describe {
    /// `pod` (or `secret`, `volume`, `node`).
    kind: Kind,
    /// The pod's name (a node's: its host name or id).
    name: String,
}

impl Describe {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Describe { kind, name } = self;
        match kind {
            Kind::Secrets => {
                output::print_secrets(&[client.secret(&name).await?], Format::Yaml, true)?;
                Ok(ExitCode::SUCCESS)
            }
            Kind::Nodes => {
                let nodes = super::get::nodes_named(client, Some(&name)).await?;
                output::print_nodes(&nodes, Format::Yaml, true)?;
                Ok(ExitCode::SUCCESS)
            }
            Kind::Volumes => {
                let volumes: Vec<_> = client.volumes().await?.into_iter().filter(|v| v.name == name).collect();
                if volumes.is_empty() {
                    bail!(
                        "volume {} not found; `dubectl get volumes` lists them",
                        escape::line(&name)
                    );
                }
                output::print_volumes(&volumes, Format::Yaml, true)?;
                Ok(ExitCode::SUCCESS)
            }
            Kind::Runs => super::runs_are_listed(),
            Kind::Pods => {
                let pod = client.get(&name).await?;
                let (events, _) = client.events(Some(&name)).await?;
                output::describe(&pod, &events)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

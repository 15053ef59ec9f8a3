//! `dubectl scale`: set the number of replicas of a pod.

use std::process::ExitCode;

use anyhow::bail;

use crate::Kind;
use crate::client::Client;

/// The arguments of `dubectl scale`.
#[derive(Debug, clap::Args)]
pub(crate) struct Scale {
    /// `pod`.
    kind: Kind,
    /// The pod's name.
    name: String,
    /// New number of replicas.
    #[arg(long)]
    replicas: u32,
}

impl Scale {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Scale { kind, name, replicas } = self;
        match kind {
            Kind::Secrets | Kind::Volumes | Kind::Nodes => {
                bail!("only pods scale: `dubectl scale pod NAME --replicas N`")
            }
            Kind::Runs => super::runs_are_listed(),
            Kind::Pods => {
                // Conditional on the generation read: a concurrent change of the
                // pod is a 409 stale_generation, not silently overwritten.
                let mut pod = client.get(&name).await?;
                pod.spec.replicas = replicas;
                client.apply_if(&pod.spec, Some(pod.generation)).await?;
                println!("pod/{name} scaled");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

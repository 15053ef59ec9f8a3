//! `dubectl get`: pods, secrets, volumes, nodes or a pod's runs as a table, JSON or YAML; `-w`
//! keeps watching pods.

use std::process::ExitCode;

use anyhow::bail;
use dubernetes_api::WatchKind;
use futures::StreamExt;

use crate::client::Client;
use crate::{Format, Kind, escape, output};

/// The arguments of `dubectl get`.
#[derive(Debug, clap::Args)]
pub(crate) struct Get {
    /// Resource kind: `pods` (or `pod`, `po`), `secrets` (or `secret`), `volumes` (or `volume`, `vol`), `nodes` (or `node`, `no`), `runs` (or `run`).
    kind: Kind,
    /// One pod's name (with `runs`: the pod whose runs to list).
    name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// After listing, print a line for every change (uses the watch API).
    #[arg(short, long)]
    watch: bool,
}

impl Get {
    pub(crate) async fn run(self, client: &Client) -> anyhow::Result<ExitCode> {
        match self.kind {
            Kind::Pods => self.pods(client).await,
            Kind::Secrets => self.secrets(client).await,
            Kind::Nodes => self.nodes(client).await,
            Kind::Volumes => self.volumes(client).await,
            Kind::Runs => self.runs(client).await,
        }
    }

    async fn pods(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Get {
            name, output, watch, ..
        } = self;
        // Tables show counts only; JSON and YAML print whole objects.
        let replicas = !matches!(output, Format::Table | Format::Wide);
        let (pods, version) = match &name {
            Some(name) => {
                let (pods, version) = client.list_versioned(replicas).await?;
                let pod = pods.into_iter().find(|p| &p.name == name);
                match pod {
                    Some(pod) => (vec![pod], version),
                    // The server's own not-found error, with its hint.
                    None => (vec![client.get(name).await?], version),
                }
            }
            None => client.list_versioned(replicas).await?,
        };
        let single = name.is_some() && !watch;
        let widths = output::print_pods(&pods, output, single)?;
        if watch {
            watch_pods(client, name.as_deref(), output, version, widths).await?;
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn secrets(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Get {
            name, output, watch, ..
        } = self;
        if watch {
            bail!("-w watches pods only; `dubectl get secrets` lists the secrets");
        }
        let secrets = match &name {
            Some(name) => vec![client.secret(name).await?],
            None => client.secrets().await?,
        };
        output::print_secrets(&secrets, output, name.is_some())?;
        Ok(ExitCode::SUCCESS)
    }

    async fn nodes(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Get {
            name, output, watch, ..
        } = self;
        if watch {
            bail!("-w watches pods only; `dubectl get nodes` lists the nodes");
        }
        let nodes = nodes_named(client, name.as_deref()).await?;
        output::print_nodes(&nodes, output, name.is_some())?;
        Ok(ExitCode::SUCCESS)
    }

    async fn volumes(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Get {
            name, output, watch, ..
        } = self;
        if watch {
            bail!("-w watches pods only; `dubectl get volumes` lists the volumes");
        }
        let mut volumes = client.volumes().await?;
        if let Some(name) = &name {
            volumes.retain(|v| &v.name == name);
            if volumes.is_empty() {
                bail!(
                    "volume {} not found; `dubectl get volumes` lists them",
                    escape::line(name)
                );
            }
        }
        output::print_volumes(&volumes, output, name.is_some())?;
        Ok(ExitCode::SUCCESS)
    }

    async fn runs(self, client: &Client) -> anyhow::Result<ExitCode> {
        let Get {
            name, output, watch, ..
        } = self;
        if watch {
            bail!("-w watches pods only; `dubectl get runs POD` lists a pod's runs");
        }
        let Some(pod) = name else {
            bail!("name the pod: `dubectl get runs POD`");
        };
        output::print_runs(&client.runs(&pod).await?, output)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// The nodes, or the one whose host name or id is `name`.
pub(crate) async fn nodes_named(client: &Client, name: Option<&str>) -> anyhow::Result<Vec<dubernetes_api::Node>> {
    let mut nodes = client.nodes().await?;
    if let Some(name) = name {
        nodes.retain(|n| n.hostname == name || n.id == name);
        if nodes.is_empty() {
            bail!("node {} not found; `dubectl get nodes` lists them", escape::line(name));
        }
    }
    Ok(nodes)
}

/// `get -w`: one line per change after the list, until interrupted.
async fn watch_pods(
    client: &Client,
    name: Option<&str>,
    output: Format,
    mut since: u64,
    mut widths: Vec<usize>,
) -> anyhow::Result<()> {
    // A change of something the table does not show prints no line.
    let mut last: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    loop {
        let mut changes = Box::pin(client.watch(Some(since)).await?);
        while let Some(change) = changes.next().await {
            let change = change?;
            since = change.version;
            if change.kind == WatchKind::Event || name.is_some_and(|n| n != change.name) {
                continue;
            }
            let Some(pod) = change.pod else { continue };
            if matches!(output, Format::Table | Format::Wide) {
                let key = format!("{:?}{:?}", change.kind, output::pod_row(&pod, output));
                if last.get(&pod.name) == Some(&key) {
                    continue;
                }
                last.insert(pod.name.clone(), key);
            }
            widths = output::print_pod_change(&pod, change.kind, output, widths)?;
        }
    }
}

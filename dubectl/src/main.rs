//! `dubectl`: a kubectl-style client for the Dubernetes HTTP API.

mod client;
mod output;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use dubernetes_core::PodSpec;

use crate::client::Client;

/// Control a Dubernetes server: apply desired state, inspect pods, delete them.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  dubectl apply -f examples/whoami.yaml\n  dubectl get pods\n  dubectl delete pod whoami"
)]
struct Cli {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "DUBERNETES_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// API token (the server's --token, or the contents of its <data-dir>/token).
    #[arg(long, global = true, env = "DUBERNETES_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update pods from YAML files, directories (*.yaml, *.yml, recursively) or - for stdin.
    #[command(
        after_help = "Examples:\n  dubectl apply -f app.yaml\n  dubectl apply -f k8s/\n  cat app.yaml | dubectl apply -f -\n  dubectl apply -f app.yaml --wait --timeout 60s"
    )]
    Apply {
        /// File, directory or `-`; repeat for several.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Validate on the server without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Wait until every applied pod is fully rolled out.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 90s, 5m.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Show pods.
    #[command(after_help = "Examples:\n  dubectl get pods\n  dubectl get pods whoami -o yaml")]
    Get {
        /// Resource kind: `pods` (or `pod`, `po`).
        kind: Kind,
        /// One pod's name.
        name: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Delete pods by name or by file.
    #[command(after_help = "Examples:\n  dubectl delete pod whoami\n  dubectl delete -f examples/whoami.yaml")]
    Delete {
        /// Resource kind and names: `pod NAME...`.
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
    },
    /// Set the number of replicas of a pod.
    #[command(after_help = "Example:\n  dubectl scale pod whoami --replicas 5")]
    Scale {
        /// `pod`.
        kind: Kind,
        /// The pod's name.
        name: String,
        /// New number of replicas.
        #[arg(long)]
        replicas: u32,
    },
    /// Manage rollouts: status, history, undo.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Show recent events, of one pod or all.
    Events {
        /// Only this pod.
        name: Option<String>,
    },
    /// Show client and server versions.
    Version,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Wait for a pod's rollout to finish; exit non-zero if it fails or times out.
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    #[value(alias = "pod", alias = "po")]
    Pods,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 5m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?} is not a duration like 30s, 5m or 1h")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(&cli.server, cli.token.as_deref())?;
    match cli.command {
        Command::Apply {
            files,
            dry_run,
            wait,
            timeout,
        } => {
            let specs = read_specs(&files)?;
            if specs.is_empty() {
                bail!("no pod specs found in {}", files.join(", "));
            }
            let mut names = Vec::new();
            for spec in specs {
                let response = client.apply(&spec, dry_run).await?;
                let suffix = if dry_run { " (server dry run)" } else { "" };
                println!("pod/{} {}{suffix}", spec.name, response.outcome.as_str());
                names.push(spec.name);
            }
            if wait && !dry_run {
                for name in names {
                    client.wait_ready(&name, timeout).await?;
                    println!("pod/{name} ready");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            kind: Kind::Pods,
            name,
            output,
        } => {
            let pods = match name {
                Some(name) => vec![client.get(&name).await?],
                None => client.list().await?,
            };
            output::print_pods(&pods, output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete {
            kind: _,
            names,
            files,
            ignore_not_found,
        } => {
            let mut targets = names;
            targets.extend(read_specs(&files)?.into_iter().map(|s| s.name));
            if targets.is_empty() {
                bail!("name the pods to delete (`dubectl delete pod NAME`) or give -f FILE");
            }
            let mut failed = false;
            for name in targets {
                match client.delete(&name).await {
                    Ok(()) => println!("pod/{name} deleted"),
                    Err(e) if ignore_not_found && client::is_not_found(&e) => {}
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Scale {
            kind: Kind::Pods,
            name,
            replicas,
        } => {
            // Conditional on the generation read: a concurrent change of the
            // pod is a 409 stale_generation, not silently overwritten.
            let mut pod = client.get(&name).await?;
            pod.spec.replicas = replicas;
            client.apply_if(&pod.spec, Some(pod.generation)).await?;
            println!("pod/{name} scaled");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollout(RolloutCommand::Status { name, timeout }) => {
            let pod = client.wait_rollout(&name, timeout).await?;
            println!(
                "pod/{name} successfully rolled out (revision {})",
                pod.status.revision_number
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollout(RolloutCommand::History { name }) => {
            output::print_history(&client.history(&name).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollout(RolloutCommand::Undo { name, to_revision }) => {
            let pod = client.undo(&name, to_revision).await?;
            println!(
                "pod/{name} rolled back (now revision {}, image {})",
                pod.status.revision_number, pod.spec.image
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { name } => {
            output::print_events(&client.events(name.as_deref()).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("Client Version: {}", env!("CARGO_PKG_VERSION"));
            match client.version().await {
                Ok(v) => println!(
                    "Server Version: {} (instance {}, Docker API {})",
                    v["server"].as_str().unwrap_or("?"),
                    v["instance"].as_str().unwrap_or("?"),
                    v["docker_api"].as_str().unwrap_or("?")
                ),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads every spec from files, directories (recursively, *.yaml/*.yml, sorted) and `-`.
fn read_specs(sources: &[String]) -> anyhow::Result<Vec<PodSpec>> {
    let mut specs: Vec<PodSpec> = Vec::new();
    for source in sources {
        let mut files = Vec::new();
        if source == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            specs.extend(dubernetes_core::parse_specs(&text).map_err(|e| anyhow::anyhow!("stdin: {e}"))?);
            continue;
        }
        let path = PathBuf::from(source);
        if path.is_dir() {
            collect_yaml(&path, &mut files)?;
        } else {
            files.push(path);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = dubernetes_core::parse_specs(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for spec in parsed {
                if specs.iter().any(|s| s.name == spec.name) {
                    bail!("{}: pod {:?} is defined more than once", file.display(), spec.name);
                }
                specs.push(spec);
            }
        }
    }
    Ok(specs)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(path);
        }
    }
    Ok(())
}

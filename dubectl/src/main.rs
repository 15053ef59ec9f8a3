//! `dubectl`: a kubectl-style client for the Dubernetes HTTP API.
//!
//! This file is the command line's shape (clap) and `main`; each command is a module of
//! [`cmd`], its arguments and what it does.
// Functions of the product crates stay within `too-many-lines-threshold`
// (clippy.toml); the integration tests and benchmarks are not held to it.
#![warn(clippy::too_many_lines)]

mod client;
mod cmd;
mod compose;
mod config;
mod diff;
mod escape;
mod output;
mod progress;
mod specs;
mod style;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::Client;

/// Control a Dubernetes server: apply desired state, inspect pods, follow logs, roll out and back.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  dubectl apply -f examples/whoami.yaml --wait\n  dubectl get pods -w\n  dubectl logs whoami -f\n  dubectl describe pod whoami\n  dubectl delete pod whoami\n\nThe server is taken from --server, else DUBERNETES_SERVER, else `server:` in\n$XDG_CONFIG_HOME/dubernetes/config.yaml (~/.config/dubernetes/config.yaml), else http://127.0.0.1:8080.\nThe token likewise from --token, DUBERNETES_TOKEN, or `token:` in that file; a CA file for an\nhttps:// server from --ca-file, DUBERNETES_CA_FILE, or `ca_file:`."
)]
struct Cli {
    /// Server URL [default: http://127.0.0.1:8080].
    #[arg(long, global = true, env = "DUBERNETES_SERVER")]
    server: Option<String>,
    /// API token (the server's --token, or the contents of its DATA_DIR/token).
    #[arg(long, global = true, env = "DUBERNETES_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file of CA certificates to trust for an https:// server (e.g. the CA that signed the
    /// server's --tls-cert), besides the system's roots.
    #[arg(long, global = true, env = "DUBERNETES_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update pods from YAML files, directories (*.yaml, *.yml, recursively) or - for stdin.
    #[command(
        after_help = "Prints pod/NAME created|configured|unchanged for each pod.\n\nA compose file (a top-level `services:`) is converted as `dubectl convert` does, and refused\nwith the list of its keys that do not map.\n\nExamples:\n  dubectl apply -f app.yaml\n  dubectl apply -f k8s/\n  cat app.yaml | dubectl apply -f -\n  dubectl get pod whoami -o json | dubectl apply -f -\n  dubectl apply -f app.yaml --dry-run\n  dubectl apply -f app.yaml --wait --timeout 60s\n  dubectl apply -f docker-compose.yml --wait"
    )]
    Apply(cmd::apply::Apply),
    /// Print the pods a compose file (docker-compose.yml) stands for, as YAML; name every key that does not map.
    #[command(
        after_help = "Each service becomes a pod: image, replicas (deploy.replicas, scale), environment, env_file,\ncommand/entrypoint, ports (the first HTTP port through the ingress as SERVICE.DOMAIN), named volumes,\ntmpfs, healthcheck (curl/wget probes become HTTP checks), resources, secrets (as secret_files);\ndepends_on and other notes become YAML comments. Keys with no equivalent (bind mounts, build,\nnetworks, TCP/UDP ports...) are listed on stderr as `unmapped: PATH: why`; the exit code is 0\nunless --strict. `${VAR}`, `${VAR:-default}` and the other compose forms are read from the\nenvironment and from .env beside the file. `dubectl apply -f docker-compose.yml` applies the\nsame pods, and refuses a file with an unmapped key. See docs/compose.md.\n\nExamples:\n  dubectl convert -f docker-compose.yml\n  dubectl convert -f compose.yaml --domain example.com > pods.yaml\n  dubectl convert -f compose.yaml --strict && dubectl apply -f compose.yaml"
    )]
    Convert(cmd::convert::Convert),
    /// Show what `apply` would change, as a unified diff; exit 0: no changes, 1: changes, 2: error.
    #[command(after_help = "Examples:\n  dubectl diff -f app.yaml\n  dubectl diff -f k8s/ && echo up to date")]
    Diff(cmd::diff::Diff),
    /// Create a resource: `create secret tls NAME --cert FILE --key FILE`.
    #[command(subcommand)]
    Create(cmd::secret::CreateCommand),
    /// Show pods (or TLS secrets, volumes, nodes, a pod's runs) as a table, JSON or YAML; -w keeps watching pods.
    #[command(
        after_help = "Examples:\n  dubectl get pods\n  dubectl get pods -o wide\n  dubectl get pod whoami -o yaml\n  dubectl get pods -w\n  dubectl get secrets\n  dubectl get volumes\n  dubectl get nodes\n  dubectl get runs backup\n\n`get runs POD` lists a pod's runs, newest first: a cron pod's ticks (the last `history` exited\nones are kept) and `dubectl run`s, with the tick, start, state, exit code and duration.\nTheir output: `dubectl logs POD` (every run kept) or `dubectl logs POD --run NAME`."
    )]
    Get(cmd::get::Get),
    /// Show a pod in detail: spec, status, conditions, replicas, recent events (or a secret, volume or node).
    #[command(after_help = "Examples:\n  dubectl describe pod whoami\n  dubectl describe node worker-1")]
    Describe(cmd::describe::Describe),
    /// Print a pod's logs: every replica's and run's, interleaved, each line prefixed with its replica or run.
    #[command(
        after_help = "Examples:\n  dubectl logs whoami\n  dubectl logs whoami -f\n  dubectl logs whoami --tail 20 --since 10m\n  dubectl logs backup --run backup-cron-202612070300\n\nA cron pod has no replicas: its logs are those of its runs still kept (`dubectl get runs POD`)."
    )]
    Logs(cmd::logs::Logs),
    /// Run a command in a running replica of a pod (any ready one, or --replica); its exit code is ours.
    #[command(
        after_help = "Examples:\n  dubectl exec whoami -- ls /\n  dubectl exec -it whoami -- sh\n  dubectl exec whoami --replica whoami-k3j9x2 -- cat /etc/hosts\n  echo hello | dubectl exec -i whoami -- cat\n\nWithout -t, Ctrl-C ends the command in the container; with -t it goes to the command's terminal."
    )]
    Exec(cmd::exec::Exec),
    /// Run a one-off container of a pod's current revision (image, env, secrets, volumes, network,
    /// limits; no ingress): its output printed, its exit code ours, removed afterwards.
    #[command(
        after_help = "Examples:\n  dubectl run web -- ./manage.py migrate\n  dubectl run web --detach -- ./nightly-report\n  dubectl logs web --run web-run-k3j9x2\n\nThe command replaces the pod's command and args (the image's entrypoint stays). Ctrl-C removes the run.\nThe server runs at most --max-runs (default 8) at once; a detached run is kept --run-retention (default 1h) after it exits.\nTo run a command before every new revision starts (migrations), use the pod's `hooks: {pre_deploy: [CMD...]}`."
    )]
    Run(cmd::run::Run),
    /// Delete pods (or TLS secrets, or volumes and their data) by name, or pods by file.
    #[command(
        after_help = "Examples:\n  dubectl delete pod whoami\n  dubectl delete pod a b c\n  dubectl delete -f examples/whoami.yaml\n  dubectl delete secret web-cert\n  dubectl delete volume pgdata"
    )]
    Delete(cmd::delete::Delete),
    /// Set the number of replicas of a pod.
    #[command(after_help = "Example:\n  dubectl scale pod whoami --replicas 5")]
    Scale(cmd::scale::Scale),
    /// Manage rollouts: status, history, undo.
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCommand),
    /// Show recent events, of one pod or all; -w keeps watching.
    #[command(after_help = "Examples:\n  dubectl events\n  dubectl events whoami -w")]
    Events(cmd::events::Events),
    /// Show client and server versions.
    #[command(after_help = "Example:\n  dubectl version")]
    Version,
    /// Open the live dashboard: prints a short-lived, single-use sign-in link (the token never
    /// goes into a URL) and opens it in a browser when one is at hand (xdg-open).
    #[command(after_help = "Examples:\n  dubectl dashboard\n  dubectl dashboard --print-url")]
    Dashboard(cmd::dashboard::Dashboard),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  dubectl completion bash > /etc/bash_completion.d/dubectl\n  dubectl completion zsh > \"${fpath[1]}/_dubectl\"\n  dubectl completion fish > ~/.config/fish/completions/dubectl.fish"
    )]
    Completion(cmd::completion::Completion),
    /// Show the configuration in force and where each setting comes from.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    #[value(alias = "pod", alias = "po")]
    Pods,
    #[value(alias = "secret")]
    Secrets,
    #[value(alias = "volume", alias = "vol")]
    Volumes,
    #[value(alias = "node", alias = "no")]
    Nodes,
    /// A pod's runs: `dubectl get runs POD`.
    #[value(alias = "run")]
    Runs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
    // `diff` follows kubectl: 0 no changes, 1 changes, 2 and above errors.
    let failure = if matches!(cli.command, Command::Diff(_)) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            let on = style::enabled(true);
            eprintln!("{} {e:#}", style::paint(on, 31, "error:"));
            failure
        }
    }
}

/// Sends the command to its module, with a client of the server for those that need one.
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Need no server.
    match &cli.command {
        Command::Completion(completion) => return Ok(completion.run()),
        Command::Convert(convert) => return convert.run(),
        _ => {}
    }
    let settings = config::resolve(cli.server, cli.token, cli.ca_file)?;
    if let Command::Config(config) = &cli.command {
        return Ok(config.run(&settings));
    }
    let client = Client::new(&settings.server, settings.token.as_deref(), settings.ca_file.as_deref())?;
    match cli.command {
        Command::Completion(_) | Command::Config(_) | Command::Convert(_) => Ok(ExitCode::SUCCESS),
        Command::Apply(apply) => apply.run(&client).await,
        Command::Diff(diff) => diff.run(&client).await,
        Command::Create(create) => create.run(&client).await,
        Command::Get(get) => get.run(&client).await,
        Command::Describe(describe) => describe.run(&client).await,
        Command::Logs(logs) => logs.run(&client).await,
        Command::Exec(exec) => exec.run(&client).await,
        Command::Run(run) => run.run(&client).await,
        Command::Delete(delete) => delete.run(&client).await,
        Command::Scale(scale) => scale.run(&client).await,
        Command::Rollout(rollout) => rollout.run(&client).await,
        Command::Events(events) => events.run(&client).await,
        Command::Dashboard(dashboard) => dashboard.run(&client).await,
        Command::Version => cmd::version::run(&client).await,
    }
}

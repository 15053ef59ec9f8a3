//! `dubectl`: a kubectl-style client for the Dubernetes HTTP API.

mod client;
mod compose;
mod config;
mod diff;
mod escape;
mod exec;
mod output;
mod progress;
mod style;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use dubernetes_api::{PodSpec, WatchKind};
use futures::StreamExt;

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
    Apply {
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
    },
    /// Print the pods a compose file (docker-compose.yml) stands for, as YAML; name every key that does not map.
    #[command(
        after_help = "Each service becomes a pod: image, replicas (deploy.replicas, scale), environment, env_file,\ncommand/entrypoint, ports (the first HTTP port through the ingress as SERVICE.DOMAIN), named volumes,\ntmpfs, healthcheck (curl/wget probes become HTTP checks), resources, secrets (as secret_files);\ndepends_on and other notes become YAML comments. Keys with no equivalent (bind mounts, build,\nnetworks, TCP/UDP ports...) are listed on stderr as `unmapped: PATH: why`; the exit code is 0\nunless --strict. `${VAR}`, `${VAR:-default}` and the other compose forms are read from the\nenvironment and from .env beside the file. `dubectl apply -f docker-compose.yml` applies the\nsame pods, and refuses a file with an unmapped key. See docs/compose.md.\n\nExamples:\n  dubectl convert -f docker-compose.yml\n  dubectl convert -f compose.yaml --domain example.com > pods.yaml\n  dubectl convert -f compose.yaml --strict && dubectl apply -f compose.yaml"
    )]
    Convert {
        /// The compose file, or `-` for stdin.
        #[arg(short = 'f', long = "filename")]
        file: String,
        /// Published HTTP ports are served as SERVICE.DOMAIN.
        #[arg(long, default_value = "localhost")]
        domain: String,
        /// Fail (exit 1, nothing printed on stdout) when a key does not map.
        #[arg(long)]
        strict: bool,
    },
    /// Show what `apply` would change, as a unified diff; exit 0: no changes, 1: changes, 2: error.
    #[command(after_help = "Examples:\n  dubectl diff -f app.yaml\n  dubectl diff -f k8s/ && echo up to date")]
    Diff {
        /// File, directory or `-`; repeat for several.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// Create a resource: `create secret tls NAME --cert FILE --key FILE`.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Show pods (or TLS secrets, volumes, nodes, a pod's runs) as a table, JSON or YAML; -w keeps watching pods.
    #[command(
        after_help = "Examples:\n  dubectl get pods\n  dubectl get pods -o wide\n  dubectl get pod whoami -o yaml\n  dubectl get pods -w\n  dubectl get secrets\n  dubectl get volumes\n  dubectl get nodes\n  dubectl get runs backup\n\n`get runs POD` lists a pod's runs, newest first: a cron pod's ticks (the last `history` exited\nones are kept) and `dubectl run`s, with the tick, start, state, exit code and duration.\nTheir output: `dubectl logs POD` (every run kept) or `dubectl logs POD --run NAME`."
    )]
    Get {
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
    },
    /// Show a pod in detail: spec, status, conditions, replicas, recent events (or a secret, volume or node).
    #[command(after_help = "Examples:\n  dubectl describe pod whoami\n  dubectl describe node worker-1")]
    Describe {
        /// `pod` (or `secret`, `volume`, `node`).
        kind: Kind,
        /// The pod's name (a node's: its host name or id).
        name: String,
    },
    /// Print a pod's logs: every replica's and run's, interleaved, each line prefixed with its replica or run.
    #[command(
        after_help = "Examples:\n  dubectl logs whoami\n  dubectl logs whoami -f\n  dubectl logs whoami --tail 20 --since 10m\n  dubectl logs backup --run backup-cron-202612070300\n\nA cron pod has no replicas: its logs are those of its runs still kept (`dubectl get runs POD`)."
    )]
    Logs {
        /// The pod's name.
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines of each replica.
        #[arg(long)]
        tail: Option<usize>,
        /// Only lines newer than this, e.g. 30s, 5m, 1h.
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// Only this one-off run's output (`dubectl run --detach` prints its name).
        #[arg(long)]
        run: Option<String>,
        /// Print lines without the replica prefix.
        #[arg(long)]
        no_prefix: bool,
        /// On a terminal too, print lines as the replicas wrote them, control
        /// characters (colours, cursor moves) included. By default they are
        /// shown escaped on a terminal (`\x1b[31m`) and passed through to pipes and files.
        #[arg(long)]
        raw: bool,
    },
    /// Run a command in a running replica of a pod (any ready one, or --replica); its exit code is ours.
    #[command(
        after_help = "Examples:\n  dubectl exec whoami -- ls /\n  dubectl exec -it whoami -- sh\n  dubectl exec whoami --replica whoami-k3j9x2 -- cat /etc/hosts\n  echo hello | dubectl exec -i whoami -- cat\n\nWithout -t, Ctrl-C ends the command in the container; with -t it goes to the command's terminal."
    )]
    Exec {
        /// The pod's name.
        name: String,
        /// The replica to run in (as `dubectl get pod NAME -o wide` and `dubectl logs` name it).
        #[arg(long)]
        replica: Option<String>,
        /// Pass stdin to the command.
        #[arg(short = 'i', long = "stdin")]
        stdin: bool,
        /// Give the command a terminal (raw mode and resizes when stdin is one).
        #[arg(short, long)]
        tty: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run a one-off container of a pod's current revision (image, env, secrets, volumes, network,
    /// limits; no ingress): its output printed, its exit code ours, removed afterwards.
    #[command(
        after_help = "Examples:\n  dubectl run web -- ./manage.py migrate\n  dubectl run web --detach -- ./nightly-report\n  dubectl logs web --run web-run-k3j9x2\n\nThe command replaces the pod's command and args (the image's entrypoint stays). Ctrl-C removes the run.\nThe server runs at most --max-runs (default 8) at once; a detached run is kept --run-retention (default 1h) after it exits.\nTo run a command before every new revision starts (migrations), use the pod's `hooks: {pre_deploy: [CMD...]}`."
    )]
    Run {
        /// The pod's name.
        name: String,
        /// Start it and return at once with its name (its output: `dubectl logs POD --run NAME`).
        #[arg(short, long)]
        detach: bool,
        /// On a terminal too, print its output as written, control characters included.
        #[arg(long)]
        raw: bool,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Delete pods (or TLS secrets, or volumes and their data) by name, or pods by file.
    #[command(
        after_help = "Examples:\n  dubectl delete pod whoami\n  dubectl delete pod a b c\n  dubectl delete -f examples/whoami.yaml\n  dubectl delete secret web-cert\n  dubectl delete volume pgdata"
    )]
    Delete {
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
    /// Show recent events, of one pod or all; -w keeps watching.
    #[command(after_help = "Examples:\n  dubectl events\n  dubectl events whoami -w")]
    Events {
        /// Only this pod.
        name: Option<String>,
        /// After listing, print new events as they happen (uses the watch API).
        #[arg(short, long)]
        watch: bool,
    },
    /// Show client and server versions.
    #[command(after_help = "Example:\n  dubectl version")]
    Version,
    /// Open the live dashboard: prints a short-lived, single-use sign-in link (the token never
    /// goes into a URL) and opens it in a browser when one is at hand (xdg-open).
    #[command(after_help = "Examples:\n  dubectl dashboard\n  dubectl dashboard --print-url")]
    Dashboard {
        /// Only print the link; do not open a browser.
        #[arg(long)]
        print_url: bool,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  dubectl completion bash > /etc/bash_completion.d/dubectl\n  dubectl completion zsh > \"${fpath[1]}/_dubectl\"\n  dubectl completion fish > ~/.config/fish/completions/dubectl.fish"
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Show the configuration in force and where each setting comes from.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum CreateCommand {
    /// Create a secret.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// A TLS certificate and its key, for pods with `access.tls: {secret: NAME}`. The key is sent
    /// once and never shown again; `get secrets` lists names, hosts and expiry.
    #[command(
        after_help = "Examples:\n  dubectl create secret tls web-cert --cert fullchain.pem --key privkey.pem\n  dubectl create secret tls web-cert --cert new.pem --key new-key.pem --replace"
    )]
    Tls {
        /// The secret's name (a DNS label).
        name: String,
        /// PEM certificate file: the certificate first, then its chain.
        #[arg(long)]
        cert: std::path::PathBuf,
        /// PEM private key file of the certificate.
        #[arg(long)]
        key: std::path::PathBuf,
        /// Replace the secret if it exists (pods using it switch to the new certificate).
        #[arg(long)]
        replace: bool,
    },
    /// Keys and values for pods' `env: {VAR: {secret: NAME, key: KEY}}` and `secret_files`.
    /// Values are sent once, stored encrypted, and never shown again.
    #[command(
        after_help = "Examples:\n  dubectl create secret generic db --from-literal=password=s3cret --from-literal=user=app\n  dubectl create secret generic tls-files --from-file=ca.pem=./ca.pem --from-file=./client.key\n  dubectl create secret generic db --from-literal=password=n3w --replace   # rolls the pods using it"
    )]
    Generic {
        /// The secret's name (a DNS label).
        name: String,
        /// A key and its value: KEY=VALUE (repeat for more keys).
        #[arg(long = "from-literal", value_name = "KEY=VALUE")]
        from_literal: Vec<String>,
        /// A key and the file holding its value: KEY=PATH, or PATH (the key is the file's name).
        /// Any bytes (a keystore too); only text without NUL can also be an env value.
        #[arg(long = "from-file", value_name = "[KEY=]PATH")]
        from_file: Vec<String>,
        /// Replace the secret if it exists (the pods using it roll to a new revision).
        #[arg(long)]
        replace: bool,
    },
    /// Registry credentials for pods' `image_pull_secret: NAME`. The password is sent once,
    /// stored encrypted, and never shown again.
    #[command(
        name = "docker-registry",
        after_help = "Example:\n  dubectl create secret docker-registry regcred --docker-server=registry.example.com --docker-username=ci --docker-password=\"$TOKEN\""
    )]
    DockerRegistry {
        /// The secret's name (a DNS label).
        name: String,
        /// The registry host as images name it, e.g. registry.example.com or 127.0.0.1:5000.
        #[arg(long = "docker-server")]
        docker_server: String,
        /// The user name.
        #[arg(long = "docker-username")]
        docker_username: String,
        /// The password or token.
        #[arg(long = "docker-password")]
        docker_password: String,
        /// Replace the secret if it exists.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the server, token (redacted) and config file in force.
    #[command(after_help = "Example:\n  dubectl config view")]
    View,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `diff` follows kubectl: 0 no changes, 1 changes, 2 and above errors.
    let failure = if matches!(cli.command, Command::Diff { .. }) {
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

/// Opens `url` with `xdg-open` when there is one and a display; never fails:
/// the link is printed either way.
fn open_browser(url: &str) {
    let desktop = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !desktop {
        return;
    }
    let spawned = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        eprintln!("(no xdg-open here: open the link above in a browser)");
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "dubectl", &mut std::io::stdout());
        return Ok(ExitCode::SUCCESS);
    }
    // Needs no server.
    if let Command::Convert { file, domain, strict } = &cli.command {
        return convert_compose(file, domain, *strict);
    }
    let settings = config::resolve(cli.server, cli.token, cli.ca_file)?;
    if let Command::Config(ConfigCommand::View) = cli.command {
        println!(
            "server: {}    # from {}",
            settings.server,
            settings.server_source.describe()
        );
        match &settings.token {
            Some(_) => println!("token: REDACTED    # from {}", settings.token_source.describe()),
            None => println!("token: null    # none set"),
        }
        match &settings.ca_file {
            Some(f) => println!(
                "ca-file: {}    # from {}",
                f.display(),
                settings.ca_file_source.describe()
            ),
            None => println!("ca-file: null    # system roots only"),
        }
        match (&settings.file, config::path()) {
            (Some(p), _) => println!("config-file: {}", p.display()),
            (None, Some(p)) => println!("config-file: {}    # does not exist", p.display()),
            (None, None) => println!("config-file: null    # neither XDG_CONFIG_HOME nor HOME is set"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(&settings.server, settings.token.as_deref(), settings.ca_file.as_deref())?;
    match cli.command {
        Command::Completion { .. } | Command::Config(_) | Command::Convert { .. } => Ok(ExitCode::SUCCESS),
        Command::Apply {
            files,
            dry_run,
            wait,
            timeout,
            domain,
        } => {
            let specs = read_specs_with(&files, &compose::Options { domain }, true)?;
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
                    progress::wait(&client, &target, timeout).await?;
                    println!("pod/{} ready", target.name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { files } => {
            let specs = read_specs(&files)?;
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
                if let Some(text) = diff::unified(&spec.name, live.as_ref(), &spec, style::enabled(false))? {
                    print!("{text}");
                    changed = true;
                }
            }
            Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Get {
            kind: Kind::Pods,
            name,
            output,
            watch,
        } => {
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
                watch_pods(&client, name.as_deref(), output, version, widths).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Create(CreateCommand::Secret(SecretCommand::Tls {
            name,
            cert,
            key,
            replace,
        })) => {
            // Bounded: `--cert /dev/zero` (or a wrong, huge file) must not fill the memory.
            let read = |flag: &str, path: &std::path::Path| -> anyhow::Result<String> {
                use std::io::Read as _;
                let limit = dubernetes_api::MAX_CERTIFICATE_PEM_BYTES;
                let file = std::fs::File::open(path).with_context(|| format!("--{flag} {}", path.display()))?;
                let mut bytes = Vec::new();
                file.take(limit as u64 + 1)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("--{flag} {}", path.display()))?;
                if bytes.len() > limit {
                    anyhow::bail!(
                        "--{flag} {}: larger than {limit} bytes (64 KiB), the most a certificate chain or key may be; \
                         pass the PEM file (e.g. fullchain.pem, privkey.pem)",
                        path.display()
                    );
                }
                String::from_utf8(bytes)
                    .map_err(|_| anyhow::anyhow!("--{flag} {}: is not text (PEM is ASCII)", path.display()))
            };
            let secret = dubernetes_api::NewTlsSecret {
                name: name.clone(),
                cert: read("cert", &cert)?,
                key: read("key", &key)?,
            };
            let stored = client.create_secret(&secret, replace).await?;
            println!(
                "secret/{} {} (hosts {}, expires {})",
                escape::line(&stored.name),
                if replace { "configured" } else { "created" },
                escape::line(&stored.hosts.join(",")),
                output::date(stored.not_after)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Create(CreateCommand::Secret(SecretCommand::Generic {
            name,
            from_literal,
            from_file,
            replace,
        })) => {
            let (data, binary_data) = secret_data(&from_literal, &from_file)?;
            let secret = dubernetes_api::NewSecret {
                name,
                kind: dubernetes_api::SecretType::Generic,
                data,
                binary_data,
                docker_server: None,
                docker_username: None,
                docker_password: None,
            };
            let stored = client.create_data_secret(&secret, replace).await?;
            println!(
                "secret/{} {} (keys {})",
                escape::line(&stored.name),
                if replace { "configured" } else { "created" },
                escape::line(&stored.keys.join(","))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Create(CreateCommand::Secret(SecretCommand::DockerRegistry {
            name,
            docker_server,
            docker_username,
            docker_password,
            replace,
        })) => {
            let secret = dubernetes_api::NewSecret {
                name,
                kind: dubernetes_api::SecretType::DockerRegistry,
                data: Default::default(),
                binary_data: Default::default(),
                docker_server: Some(docker_server),
                docker_username: Some(docker_username),
                docker_password: Some(docker_password),
            };
            let stored = client.create_data_secret(&secret, replace).await?;
            println!(
                "secret/{} {} (registry {})",
                escape::line(&stored.name),
                if replace { "configured" } else { "created" },
                escape::line(stored.docker_server.as_deref().unwrap_or(""))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            kind: Kind::Secrets,
            name,
            output,
            watch,
        } => {
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
        Command::Describe {
            kind: Kind::Secrets,
            name,
        } => {
            output::print_secrets(&[client.secret(&name).await?], Format::Yaml, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete {
            kind: Some(Kind::Secrets),
            names,
            files,
            ignore_not_found,
        } => {
            if !files.is_empty() {
                bail!("-f deletes pods; delete secrets by name: `dubectl delete secret NAME`");
            }
            if names.is_empty() {
                bail!("name the secrets to delete: `dubectl delete secret NAME`");
            }
            Ok(delete_each("secret", names, ignore_not_found, |name| {
                let client = &client;
                async move { client.delete_secret(&name).await }
            })
            .await)
        }
        Command::Get {
            kind: Kind::Nodes,
            name,
            output,
            watch,
        } => {
            if watch {
                bail!("-w watches pods only; `dubectl get nodes` lists the nodes");
            }
            let nodes = nodes_named(&client, name.as_deref()).await?;
            output::print_nodes(&nodes, output, name.is_some())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe {
            kind: Kind::Nodes,
            name,
        } => {
            let nodes = nodes_named(&client, Some(&name)).await?;
            output::print_nodes(&nodes, Format::Yaml, true)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete {
            kind: Some(Kind::Nodes),
            ..
        } => bail!(
            "nodes belong to the swarm: drain or remove one with `docker node update --availability drain NODE` or `docker node rm NODE`"
        ),
        Command::Scale {
            kind: Kind::Secrets | Kind::Volumes | Kind::Nodes,
            ..
        } => bail!("only pods scale: `dubectl scale pod NAME --replicas N`"),
        Command::Get {
            kind: Kind::Volumes,
            name,
            output,
            watch,
        } => {
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
        Command::Describe {
            kind: Kind::Volumes,
            name,
        } => {
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
        Command::Delete {
            kind: Some(Kind::Volumes),
            names,
            files,
            ignore_not_found,
        } => {
            if !files.is_empty() {
                bail!("-f deletes pods; delete volumes by name: `dubectl delete volume NAME`");
            }
            if names.is_empty() {
                bail!("name the volumes to delete: `dubectl delete volume NAME`");
            }
            Ok(delete_each("volume", names, ignore_not_found, |name| {
                let client = &client;
                async move { client.delete_volume(&name).await }
            })
            .await)
        }
        Command::Get {
            kind: Kind::Runs,
            name,
            output,
            watch,
        } => {
            if watch {
                bail!("-w watches pods only; `dubectl get runs POD` lists a pod's runs");
            }
            let Some(pod) = name else {
                bail!("name the pod: `dubectl get runs POD`");
            };
            output::print_runs(&client.runs(&pod).await?, output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe { kind: Kind::Runs, .. }
        | Command::Delete {
            kind: Some(Kind::Runs), ..
        }
        | Command::Scale { kind: Kind::Runs, .. } => {
            bail!("runs are listed with `dubectl get runs POD`; their output: `dubectl logs POD --run NAME`")
        }
        Command::Describe { kind: Kind::Pods, name } => {
            let pod = client.get(&name).await?;
            let (events, _) = client.events(Some(&name)).await?;
            output::describe(&pod, &events)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs {
            name,
            follow,
            tail,
            since,
            run,
            no_prefix,
            raw,
        } => {
            let since = since.map(|d| format!("{}s", d.as_secs().max(1)));
            let mut lines = Box::pin(
                client
                    .logs(&name, follow, tail, since.as_deref(), run.as_deref())
                    .await?,
            );
            let on = style::enabled(false);
            // What replicas write reaches a terminal only escaped (see escape.rs).
            let escape = !raw && std::io::IsTerminal::is_terminal(&std::io::stdout());
            let cut = style::paint(
                on,
                33,
                &format!(" [line cut at {} bytes]", dubernetes_api::MAX_LOG_LINE_BYTES),
            );
            while let Some(line) = lines.next().await {
                let line = line?;
                let text = if escape {
                    escape::escape_control(&line.line, false)
                } else {
                    std::borrow::Cow::Borrowed(line.line.as_str())
                };
                let marker = if line.truncated { cut.as_str() } else { "" };
                if no_prefix {
                    println!("{text}{marker}");
                } else {
                    let prefix = format!("[{}]", line.replica);
                    println!(
                        "{} {text}{marker}",
                        style::paint(on, style::colour_of(&line.replica), &prefix),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec {
            name,
            replica,
            stdin,
            tty,
            command,
        } => {
            let code = exec::exec(&client, &name, replica, stdin, tty, command).await?;
            Ok(ExitCode::from((code & 0xff) as u8))
        }
        Command::Run {
            name,
            detach,
            raw,
            command,
        } => {
            let code = exec::run(&client, &name, detach, raw, command).await?;
            Ok(ExitCode::from((code & 0xff) as u8))
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
            Ok(delete_each("pod", targets, ignore_not_found, |name| {
                let client = &client;
                async move { client.delete(&name).await }
            })
            .await)
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
            let pod = client.get(&name).await?;
            let target = progress::Target {
                name: name.clone(),
                min_generation: pod.generation,
                revision: pod.status.revision_number,
            };
            let pod = progress::wait(&client, &target, timeout).await?;
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
        Command::Events { name, watch } => {
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
        Command::Dashboard { print_url } => {
            let (url, ttl) = client.dashboard_url().await?;
            println!("{url}");
            if !print_url {
                eprintln!("(opens the dashboard once, within {ttl}s; run `dubectl dashboard` again for a new link)");
                open_browser(&url);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("Client Version: {}", env!("CARGO_PKG_VERSION"));
            match client.version().await {
                Ok(v) => {
                    println!(
                        "Server Version: {} (API {}, instance {}, Docker API {})",
                        v["server"].as_str().unwrap_or("?"),
                        v["api"].as_str().unwrap_or("?"),
                        v["instance"].as_str().unwrap_or("?"),
                        v["docker_api"].as_str().unwrap_or("?")
                    );
                    if let Some(store) = v["store_id"].as_str() {
                        println!(
                            "Data Dir: {} (store {store})",
                            v["data_dir"].as_str().unwrap_or("(in memory)")
                        );
                    }
                    if let (Some(kind), Some(leader)) = (v["store"].as_str(), v["leader"].as_bool()) {
                        println!(
                            "Store: {} ({})",
                            escape::line(kind),
                            if leader {
                                "this server leads: it acts on the engine"
                            } else {
                                "this server stands by: it serves the API, another leads"
                            }
                        );
                    }
                    for (field, what) in [
                        (
                            "held_containers",
                            "adopted container(s) of pods this store does not have, left alone",
                        ),
                        (
                            "foreign_containers",
                            "container(s) of another store in this instance, left alone",
                        ),
                    ] {
                        if let Some(n) = v[field].as_u64().filter(|n| *n > 0) {
                            println!("Note: {n} {what}");
                        }
                    }
                }
                Err(e) => {
                    eprintln!("{} {e:#}", style::paint(style::enabled(true), 31, "error:"));
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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

/// Turns pods as `get -o json|yaml` prints them (objects with `spec` and
/// `status`, alone or in a list) back into plain specs, so output round-trips
/// through `apply -f -`; anything else is returned unchanged.
fn unwrap_pod_objects(text: &str) -> anyhow::Result<String> {
    use serde::Deserialize as _;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        match serde_yaml_ng::Value::deserialize(doc) {
            Ok(v) => docs.push(v),
            // Not even YAML: let the spec parser report it with its line and column.
            Err(_) => return Ok(text.to_string()),
        }
    }
    fn is_pod(v: &serde_yaml_ng::Value) -> bool {
        v.get("spec").is_some() && v.get("status").is_some()
    }
    let any = docs
        .iter()
        .any(|d| is_pod(d) || d.as_sequence().is_some_and(|s| s.iter().any(is_pod)));
    if !any {
        return Ok(text.to_string());
    }
    let mut specs = Vec::new();
    for doc in docs {
        match doc {
            serde_yaml_ng::Value::Sequence(items) => {
                specs.extend(
                    items
                        .into_iter()
                        .map(|i| if is_pod(&i) { i["spec"].clone() } else { i }),
                );
            }
            d if is_pod(&d) => specs.push(d["spec"].clone()),
            serde_yaml_ng::Value::Null => {}
            d => specs.push(d),
        }
    }
    let mut out = String::new();
    for spec in specs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&spec)?);
    }
    Ok(out)
}

/// `dubectl convert`: the pods of a compose file on stdout, what does not map on stderr.
fn convert_compose(file: &str, domain: &str, strict: bool) -> anyhow::Result<ExitCode> {
    let (text, dir) = read_compose_source(file)?;
    if !compose::is_compose(&text) {
        bail!("{}: not a compose file (no top-level `services`)", escape::line(file));
    }
    let options = compose::Options {
        domain: domain.to_string(),
    };
    let conversion =
        compose::convert(&text, &compose::Source::system(dir), &options).with_context(|| escape::line(file))?;
    report_compose(file, &conversion);
    if strict && !conversion.unmapped.is_empty() {
        bail!(
            "{}: {} compose key(s) do not map (listed above); nothing printed (--strict)",
            escape::line(file),
            conversion.unmapped.len()
        );
    }
    print!("{}", compose::to_yaml(&conversion)?);
    Ok(ExitCode::SUCCESS)
}

/// A compose file's text and the directory its relative paths start from (the current one for stdin).
fn read_compose_source(file: &str) -> anyhow::Result<(String, PathBuf)> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(dubernetes_api::MAX_SPEC_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok((text, PathBuf::from(".")));
    }
    let path = PathBuf::from(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    Ok((text, dir))
}

/// Warnings and unmapped keys of a conversion, on stderr.
fn report_compose(file: &str, conversion: &compose::Conversion) {
    let on = style::enabled(true);
    for warning in &conversion.warnings {
        eprintln!(
            "{} {}: {}",
            style::paint(on, 33, "warning:"),
            escape::line(file),
            escape::line(warning)
        );
    }
    for lost in &conversion.unmapped {
        eprintln!(
            "{} {}: {}: {}",
            style::paint(on, 33, "unmapped:"),
            escape::line(file),
            escape::line(&lost.path),
            escape::line(&lost.reason)
        );
    }
}

/// The pods of a compose file for apply, diff and delete; `refuse_unmapped`
/// (apply) makes any key that does not map an error, with the list.
fn compose_specs(
    text: &str,
    dir: PathBuf,
    name: &str,
    options: &compose::Options,
    refuse_unmapped: bool,
) -> anyhow::Result<Vec<PodSpec>> {
    let conversion =
        compose::convert(text, &compose::Source::system(dir), options).with_context(|| escape::line(name))?;
    report_compose(name, &conversion);
    if refuse_unmapped && !conversion.unmapped.is_empty() {
        bail!(
            "{}: not applied: {} compose key(s) do not map (listed above); `dubectl convert -f {}` prints the pods to edit and apply",
            escape::line(name),
            conversion.unmapped.len(),
            escape::line(name)
        );
    }
    Ok(conversion.pods.into_iter().map(|p| p.spec).collect())
}

/// Reads every spec from files, directories (recursively, *.yaml/*.yml, sorted) and `-`.
fn read_specs(sources: &[String]) -> anyhow::Result<Vec<PodSpec>> {
    read_specs_with(sources, &compose::Options::default(), false)
}

/// [`read_specs`], with the options of compose files; a compose file (a
/// top-level `services`) is converted, and refused with a key that does not
/// map when `refuse_unmapped`.
fn read_specs_with(
    sources: &[String],
    options: &compose::Options,
    refuse_unmapped: bool,
) -> anyhow::Result<Vec<PodSpec>> {
    let mut specs: Vec<PodSpec> = Vec::new();
    for source in sources {
        let mut files = Vec::new();
        if source == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            if compose::is_compose(&text) {
                specs.extend(compose_specs(
                    &text,
                    PathBuf::from("."),
                    "stdin",
                    options,
                    refuse_unmapped,
                )?);
                continue;
            }
            let text = unwrap_pod_objects(&text)?;
            specs.extend(dubernetes_api::parse_specs(&text).map_err(|e| anyhow::anyhow!("stdin: {e}"))?);
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
            let parsed = if compose::is_compose(&text) {
                let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                };
                compose_specs(&text, dir, &file.display().to_string(), options, refuse_unmapped)?
            } else {
                let text = unwrap_pod_objects(&text)?;
                dubernetes_api::parse_specs(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            };
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

/// Largest value `--from-file` reads (the server's limit per key).
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Keys and values of `create secret generic`, text and bytes.
type SecretData = std::collections::BTreeMap<String, String>;

/// The keys and values of `create secret generic`: `--from-literal=KEY=VALUE`
/// as text (`data`), and `--from-file=[KEY=]PATH` read up to the server's
/// limit and sent as base64 (`binary_data`), so any file, text or binary,
/// arrives byte for byte.
fn secret_data(literals: &[String], files: &[String]) -> anyhow::Result<(SecretData, SecretData)> {
    use base64::Engine as _;
    use std::io::Read as _;
    let mut data = SecretData::new();
    let mut binary = SecretData::new();
    let mut keys = std::collections::BTreeSet::new();
    let mut once = |key: &str, flag: &str| -> anyhow::Result<()> {
        if !keys.insert(key.to_string()) {
            bail!("{flag}: key {} is given twice", escape::line(key));
        }
        Ok(())
    };
    for literal in literals {
        // Never echo the value: only the key.
        let Some((key, value)) = literal.split_once('=') else {
            bail!("--from-literal takes KEY=VALUE (no '=' found)");
        };
        once(key, "--from-literal")?;
        data.insert(key.to_string(), value.to_string());
    }
    for spec in files {
        let (key, path) = match spec.split_once('=') {
            Some((key, path)) => (key.to_string(), std::path::PathBuf::from(path)),
            None => {
                let path = std::path::PathBuf::from(spec);
                let key = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| format!("--from-file {}: name the key: KEY=PATH", escape::line(spec)))?;
                (key, path)
            }
        };
        let file = std::fs::File::open(&path).with_context(|| format!("--from-file {}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("--from-file {}", path.display()))?;
        if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
            bail!(
                "--from-file {}: larger than {MAX_SECRET_FILE_BYTES} bytes",
                path.display()
            );
        }
        once(&key, "--from-file")?;
        binary.insert(key, base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if keys.is_empty() {
        bail!("give at least one --from-literal=KEY=VALUE or --from-file=[KEY=]PATH");
    }
    Ok((data, binary))
}

/// The nodes, or the one whose host name or id is `name`.
async fn nodes_named(client: &client::Client, name: Option<&str>) -> anyhow::Result<Vec<dubernetes_api::Node>> {
    let mut nodes = client.nodes().await?;
    if let Some(name) = name {
        nodes.retain(|n| n.hostname == name || n.id == name);
        if nodes.is_empty() {
            bail!("node {} not found; `dubectl get nodes` lists them", escape::line(name));
        }
    }
    Ok(nodes)
}

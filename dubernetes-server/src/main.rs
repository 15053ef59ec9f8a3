//! `dubernetes-server`: the orchestrator (controller + HTTP API) as a daemon.
// Functions of the product crates stay within `too-many-lines-threshold`
// (clippy.toml); the integration tests and benchmarks are not held to it.
#![warn(clippy::too_many_lines)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use dubernetes_core::defaults::DEFAULT_INGRESS_IMAGE;
use dubernetes_core::{AcmeSettings, BackoffSettings, Dubernetes, IngressSettings};
use dubernetes_server::auth::{self, Token};
use dubernetes_server::serve::ServeLimits;

/// Keeps the pods you apply running as Docker containers, reachable through an nginx ingress.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Example:\n  dubernetes-server --ingress-listen 127.0.0.1:8000 --ingress-image dubernetes/nginx:local-4\n  dubernetes-server --data-dir ./data backup ./dubernetes-backup.db"
)]
struct Config {
    /// Format of the server's own logs (on standard output): `text` for people, `json` (one object per line,
    /// tracing's JSON formatter) for machines. A reconcile's lines carry its `pod` and `revision`.
    #[arg(long, env = "DUBERNETES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address of the HTTP API. Loopback by default; any other address needs an explicit --token.
    /// Port 0: the system picks a free one. Once bound, the server writes the address it listens on
    /// (e.g. `127.0.0.1:41234`) to DATA_DIR/api-address, and removes the file on a clean shutdown.
    #[arg(long, env = "DUBERNETES_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate (then its chain) to serve the API over HTTPS; needs --tls-key. Without it the API
    /// is plain HTTP, and a non-loopback --listen sends the token in clear text (a warning says so).
    #[arg(long, env = "DUBERNETES_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1). Keep it mode 0600.
    #[arg(long, env = "DUBERNETES_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Bearer token every API call (except GET /healthz) must carry. Default: read from, or generated
    /// into, DATA_DIR/token (mode 0600).
    #[arg(long, env = "DUBERNETES_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Directory for the SQLite store (and the generated token), locked while the server runs.
    /// Default: /var/lib/dubernetes/INSTANCE as root, else $XDG_STATE_HOME/dubernetes/INSTANCE
    /// (~/.local/state/dubernetes/INSTANCE): never relative to the working directory.
    #[arg(long, env = "DUBERNETES_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where desired state lives: `sqlite://DIR` (SQLite in the data dir DIR; the default is
    /// SQLite in --data-dir) or `postgres://USER:PASSWORD@HOST:PORT/DB` (PostgreSQL, shared by
    /// every server of the instance: one leads, the others stand by and serve the API; each
    /// server keeps its own --data-dir for its token).
    #[arg(long, env = "DUBERNETES_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The key that encrypts secret values in the store: a file of 32 bytes (raw, or base64 text),
    /// created 0600 when missing. Default: `secrets.key` in --data-dir. A PostgreSQL store needs
    /// one file every server shares; without it, secrets cannot be created or used.
    #[arg(long, env = "DUBERNETES_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// Take over containers of this instance that another store made (or that carry no store
    /// label) instead of refusing to start. They are adopted as they run: none is stopped or
    /// replaced. Stop the server that manages them first.
    #[arg(long, env = "DUBERNETES_ADOPT_FOREIGN", value_parser = clap::builder::BoolishValueParser::new())]
    adopt_foreign: bool,
    /// Which engine to drive: `docker` (this Docker engine) or `swarm` (a Docker Swarm through
    /// this engine, which must be a swarm manager: each replica becomes a Swarm service placed on
    /// any node; the ingress and a probe agent stay containers on this engine).
    #[arg(long, env = "DUBERNETES_BACKEND", default_value = "docker")]
    backend: dubernetes_core::Backend,
    /// Instance name: namespaces the Docker network, container names and labels.
    #[arg(long, env = "DUBERNETES_INSTANCE", default_value = "default")]
    instance: String,
    /// Host address the ingress publishes (port 0: the engine picks one).
    #[arg(long, env = "DUBERNETES_INGRESS_LISTEN", default_value = "0.0.0.0:80")]
    ingress_listen: SocketAddr,
    /// Host address the ingress serves HTTPS on, for pods with `access.tls` (port 0: the engine picks
    /// one). `off`: no HTTPS listener, every host stays plain HTTP.
    #[arg(long, env = "DUBERNETES_INGRESS_TLS_LISTEN", default_value = "0.0.0.0:443", value_parser = parse_tls_listen)]
    ingress_tls_listen: TlsListen,
    /// ACME directory for `access.tls: auto` certificates (HTTP-01 through the ingress, which must be
    /// reachable on port 80 under the pod's host name from the ACME server).
    #[arg(long, env = "DUBERNETES_ACME_DIRECTORY", default_value = dubernetes_core::defaults::LETS_ENCRYPT_PRODUCTION)]
    acme_directory: String,
    /// Contact e-mail of the ACME account (expiry notices).
    #[arg(long, env = "DUBERNETES_ACME_EMAIL")]
    acme_email: Option<String>,
    /// PEM CA certificate to trust for the ACME server instead of the system's roots (a private ACME
    /// server such as step-ca or Pebble).
    #[arg(long, env = "DUBERNETES_ACME_CA_FILE")]
    acme_ca_file: Option<PathBuf>,
    /// Renew ACME certificates this long before they expire, e.g. 30d, 720h.
    #[arg(long, env = "DUBERNETES_ACME_RENEW_BEFORE", default_value = "30d", value_parser = humantime::parse_duration)]
    acme_renew_before: Duration,
    /// First retry delay after a failed issuance (doubles per failure, at most 1h), e.g. 60s.
    #[arg(long, env = "DUBERNETES_ACME_RETRY", default_value = "60s", value_parser = humantime::parse_duration)]
    acme_retry: Duration,
    /// nginx image of the ingress (official image layout). Pulled if missing.
    #[arg(long, env = "DUBERNETES_INGRESS_IMAGE", default_value = DEFAULT_INGRESS_IMAGE)]
    ingress_image: String,
    /// Seconds between full resyncs (events cover the rest).
    #[arg(long, env = "DUBERNETES_RESYNC_SECONDS", default_value_t = 30)]
    resync_seconds: u64,
    /// Seconds a replica gets between SIGTERM and SIGKILL.
    #[arg(long, env = "DUBERNETES_STOP_GRACE_SECONDS", default_value_t = 10)]
    stop_grace_seconds: u64,
    /// Milliseconds a replica taken out of the ingress keeps running before it is stopped.
    #[arg(long, env = "DUBERNETES_DRAIN_MS", default_value_t = 1000)]
    drain_ms: u64,
    /// Concurrent calls to the Docker engine.
    #[arg(long, env = "DUBERNETES_ENGINE_CONCURRENCY", default_value_t = 16)]
    engine_concurrency: usize,
    /// First crash-loop back-off delay, in milliseconds (doubles per restart).
    #[arg(long, env = "DUBERNETES_BACKOFF_INITIAL_MS", default_value_t = 1000)]
    backoff_initial_ms: u64,
    /// Longest crash-loop back-off delay, in seconds.
    #[arg(long, env = "DUBERNETES_BACKOFF_MAX_SECONDS", default_value_t = 60)]
    backoff_max_seconds: u64,
    /// Most pods this instance accepts.
    #[arg(long, env = "DUBERNETES_MAX_PODS", default_value_t = 1000)]
    max_pods: u32,
    /// Most replicas one pod may ask for (at most 1000).
    #[arg(long, env = "DUBERNETES_MAX_REPLICAS", default_value_t = dubernetes_core::limits::MAX_REPLICAS,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(dubernetes_core::limits::MAX_REPLICAS)))]
    max_replicas: u32,
    /// Seconds one API request may take, body included; slower ones get 503 request_timeout.
    #[arg(long, env = "DUBERNETES_REQUEST_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_seconds: u64,
    /// Most concurrent API connections; more wait in the kernel's queue.
    #[arg(long, env = "DUBERNETES_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_connections: u64,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "DUBERNETES_HEADER_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_seconds: u64,
    /// Largest log file of the ingress container before the engine rotates it, e.g. 10Mi.
    #[arg(long, env = "DUBERNETES_INGRESS_LOG_MAX_SIZE", default_value = "10Mi")]
    ingress_log_max_size: String,
    /// Log files kept for the ingress container, the current one included.
    #[arg(long, env = "DUBERNETES_INGRESS_LOG_MAX_FILES", default_value_t = dubernetes_core::defaults::DEFAULT_LOG_MAX_FILES,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    ingress_log_max_files: u32,
    /// Most processes in the ingress container (0: no limit).
    #[arg(long, env = "DUBERNETES_INGRESS_PIDS_LIMIT", default_value_t = dubernetes_core::defaults::DEFAULT_PIDS_LIMIT)]
    ingress_pids_limit: u32,
    /// Run the ingress without no-new-privileges (only for an image that needs setuid binaries).
    #[arg(long, env = "DUBERNETES_INGRESS_ALLOW_NEW_PRIVILEGES")]
    ingress_allow_new_privileges: bool,
    /// Most replica log streams followed at once, server-wide (`logs?follow`); past it 503 too_many_log_streams.
    #[arg(long, env = "DUBERNETES_MAX_LOG_FOLLOWS", default_value_t = dubernetes_core::defaults::DEFAULT_MAX_LOG_FOLLOWS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_log_follows: usize,
    /// Most replicas one `logs?follow` request reads; past it 422 limit_exceeded.
    #[arg(long, env = "DUBERNETES_MAX_LOG_FOLLOW_REPLICAS", default_value_t = dubernetes_core::defaults::DEFAULT_MAX_LOG_FOLLOW_REPLICAS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_log_follow_replicas: usize,
    /// Most one-off runs (`dubectl run`) of the instance running at once; past it 429 limit_exceeded.
    #[arg(long, env = "DUBERNETES_MAX_RUNS", default_value_t = dubernetes_core::defaults::DEFAULT_MAX_RUNS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    max_runs: usize,
    /// How long an exited run (a detached one, or one whose server crashed) is kept for its log, e.g. 1h.
    #[arg(long, env = "DUBERNETES_RUN_RETENTION", default_value = "1h", value_parser = humantime::parse_duration)]
    run_retention: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How the server writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's fields
    /// (`message`, `pod`, ...) and the fields of the spans it happened in (`span`, `spans`).
    Json,
}

/// Installs the log subscriber: `RUST_LOG` filters (default: info, quieter sqlx and bollard).
fn init_logs(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn,bollard=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).init(),
    }
}

/// `--ingress-tls-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
struct TlsListen(Option<SocketAddr>);

fn parse_tls_listen(text: &str) -> Result<TlsListen, String> {
    if text == "off" {
        return Ok(TlsListen(None));
    }
    text.parse()
        .map(|a| TlsListen(Some(a)))
        .map_err(|_| format!("{text:?} is not an address like 0.0.0.0:443 (or `off`)"))
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a consistent copy of the store to FILE, while the server runs or not (SQLite VACUUM INTO).
    /// Restore: stop the server, replace DATA_DIR/dubernetes.db with the copy, delete
    /// DATA_DIR/dubernetes.db-wal and -shm, start the server.
    Backup {
        /// The new file (must not exist).
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One rustls provider for the process (the workspace enables two, which
    // makes rustls's own choice ambiguous for libraries that rely on it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::parse();
    init_logs(config.log_format);
    let store = StoreUrl::parse(config.store.as_deref())?;
    let data_dir = data_dir(&config, &store)?;
    if let (Some(Command::Backup { .. }), StoreUrl::Postgres(_)) = (&config.command, &store) {
        bail!("the store is PostgreSQL: back it up with `pg_dump` (or your database's backups), not with this command");
    }
    if let Some(Command::Backup { file }) = &config.command {
        return backup(&data_dir, file).await;
    }
    if config.resync_seconds == 0 {
        bail!("--resync-seconds must be at least 1");
    }
    tracing::info!(data_dir = %data_dir.display(), instance = %config.instance, "starting");
    // An existing token is read (and checked) before anything starts; a new
    // one is written only once the data dir is ours (locked by the builder).
    let token = api_token(&config, &data_dir)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(std::sync::Arc::new(dubernetes_server::tls::server_config(cert, key)?)),
        _ => None,
    };
    if let Some(warning) = dubernetes_server::tls::cleartext_warning(config.listen, tls.is_some()) {
        tracing::warn!(listen = %config.listen, "{warning}");
    }
    let orchestrator = start(&config, &data_dir, &store).await?;
    let token = match token {
        Some(token) => token,
        None => {
            let (text, path) = auth::create(&data_dir)
                .with_context(|| format!("writing a new API token into {}", data_dir.display()))?;
            tracing::info!(file = %path.display(), "generated a new API token (mode 0600); dubectl reads it from DUBERNETES_TOKEN, e.g. `export DUBERNETES_TOKEN=$(cat {})`", path.display());
            Token::new(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    serve(&config, orchestrator, token, tls, &data_dir, &store).await
}

/// Where the data lives: `--data-dir`, the path of a `sqlite://` store, or
/// the default for the instance.
fn data_dir(config: &Config, store: &StoreUrl) -> anyhow::Result<PathBuf> {
    Ok(match (&config.data_dir, store) {
        (Some(dir), StoreUrl::Sqlite(Some(other))) if dir != other => bail!(
            "--data-dir {} and --store sqlite://{} name two places for one SQLite store; give one of them",
            dir.display(),
            other.display()
        ),
        (Some(dir), _) | (None, StoreUrl::Sqlite(Some(dir))) => {
            std::path::absolute(dir).with_context(|| format!("--data-dir {}", dir.display()))?
        }
        (None, _) => default_data_dir(&config.instance)?,
    })
}

/// `dubernetes-server backup FILE`.
async fn backup(data_dir: &std::path::Path, file: &std::path::Path) -> anyhow::Result<()> {
    dubernetes_core::backup(data_dir, file)
        .await
        .with_context(|| format!("backing up {} to {}", data_dir.display(), file.display()))?;
    println!(
        "backed up {} to {}",
        data_dir.join(dubernetes_core::files::DB_FILE).display(),
        file.display()
    );
    Ok(())
}

/// The ingress's settings from the flags: image, listen addresses, the limits of its container.
fn ingress_settings(config: &Config) -> anyhow::Result<IngressSettings> {
    let ingress_log_bytes = dubernetes_core::parse_memory(&config.ingress_log_max_size)
        .map_err(anyhow::Error::msg)
        .and_then(|b| {
            if (1024..=(1u64 << 40)).contains(&b) {
                Ok(b)
            } else {
                bail!("is not between 1Ki and 1Ti")
            }
        })
        .context("--ingress-log-max-size")?;
    let ingress_limits = dubernetes_core::ContainerLimits::default()
        .with_log(ingress_log_bytes, config.ingress_log_max_files)
        .with_pids(Some(config.ingress_pids_limit).filter(|&n| n > 0))
        .with_no_new_privileges(!config.ingress_allow_new_privileges);
    let mut ingress_settings =
        IngressSettings::new(config.ingress_image.clone(), config.ingress_listen).with_limits(ingress_limits);
    if let TlsListen(Some(listen)) = config.ingress_tls_listen {
        ingress_settings = ingress_settings.with_tls_listen(listen);
    }
    Ok(ingress_settings)
}

/// Builds and starts the orchestrator from the flags.
async fn start(config: &Config, data_dir: &std::path::Path, store: &StoreUrl) -> anyhow::Result<Dubernetes> {
    let ingress_settings = ingress_settings(config)?;
    let mut backoff = BackoffSettings::default();
    backoff.initial = Duration::from_millis(config.backoff_initial_ms);
    backoff.max = Duration::from_secs(config.backoff_max_seconds);
    if let Some(file) = &config.acme_ca_file {
        std::fs::metadata(file).with_context(|| format!("--acme-ca-file {}", file.display()))?;
    }
    let mut builder = Dubernetes::builder().instance(&config.instance).data_dir(data_dir);
    if let StoreUrl::Postgres(url) = store {
        builder = builder.postgres(url);
    }
    if let Some(file) = &config.secrets_key_file {
        builder = builder.secrets_key_file(file);
    }
    builder
        .adopt_foreign(config.adopt_foreign)
        .backend(config.backend)
        .ingress(ingress_settings)
        .acme(
            AcmeSettings::new(config.acme_directory.clone())
                .with_email(config.acme_email.clone())
                .with_ca_file(config.acme_ca_file.clone())
                .with_renew_before(config.acme_renew_before)
                .with_retry(config.acme_retry),
        )
        .resync_interval(Duration::from_secs(config.resync_seconds))
        .stop_grace_period(Duration::from_secs(config.stop_grace_seconds))
        .engine_concurrency(config.engine_concurrency)
        .drain_period(Duration::from_millis(config.drain_ms))
        .backoff(backoff)
        .max_pods(config.max_pods)
        .max_replicas(config.max_replicas)
        .runs(config.max_runs, config.run_retention)
        .build()
        .await
        .with_context(|| {
            format!(
                "starting instance {:?} with data dir {}",
                config.instance,
                data_dir.display()
            )
        })
}

/// Binds the API, serves it (and the background loops) until SIGTERM or
/// Ctrl-C, then shuts the orchestrator down.
async fn serve(
    config: &Config,
    orchestrator: Dubernetes,
    token: Token,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    data_dir: &std::path::Path,
    store: &StoreUrl,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "binding the API to {} (in use? pick another with --listen)",
            config.listen
        )
    })?;
    let bound = listener.local_addr()?;
    let address_file = api_address::write(data_dir, bound)
        .with_context(|| format!("writing the API address into {}", data_dir.display()))?;
    tracing::info!(
        api = %bound,
        scheme = if tls.is_some() { "https" } else { "http" },
        instance = %config.instance,
        data_dir = %data_dir.display(),
        store_id = %orchestrator.store_id(),
        store = %store,
        leader = orchestrator.is_leader(),
        ingress = %config.ingress_listen,
        ingress_tls = ?config.ingress_tls_listen.0,
        acme = %config.acme_directory,
        ingress_image = %config.ingress_image,
        "dubernetes-server ready"
    );
    // Cancelled on shutdown: watches and followed logs end, so the graceful shutdown does not wait for them.
    let streams_end = tokio_util::sync::CancellationToken::new();
    let app = dubernetes_server::app_with_shutdown(
        orchestrator.clone(),
        dubernetes_server::ApiConfig {
            token,
            request_timeout: Duration::from_secs(config.request_timeout_seconds),
            log_follows: dubernetes_core::FollowLimits::new(config.max_log_follows, config.max_log_follow_replicas),
        },
        streams_end.clone(),
    );
    let limits = ServeLimits {
        max_connections: usize::try_from(config.max_connections).unwrap_or(512),
        header_read_timeout: Duration::from_secs(config.header_timeout_seconds),
        ..ServeLimits::default()
    };
    // Exited runs past --run-retention are removed (checked every minute, or sooner for a short retention).
    let reap_every = config
        .run_retention
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(orchestrator.clone().reap_runs_loop(reap_every, streams_end.clone()));
    // Cron pods' ticks, while this server leads.
    tokio::spawn(orchestrator.clone().cron_loop(streams_end.clone()));
    let shutdown = async move {
        shutdown_signal().await;
        streams_end.cancel();
    };
    dubernetes_server::serve::serve_tls(listener, app, limits, tls, shutdown).await;
    tracing::info!("shutting down; containers keep running and are adopted on the next start");
    let _ = std::fs::remove_file(&address_file);
    orchestrator.shutdown().await;
    Ok(())
}

/// `DATA_DIR/api-address`: where the API listens, for whoever started the
/// server with `--listen 127.0.0.1:0` (tests, scripts). Written only once the
/// port is bound, by rename, so a reader never sees half a line.
mod api_address {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};

    /// The file's name in the data dir.
    pub const FILE: &str = "api-address";

    /// Writes `address` (and a newline) to `DATA_DIR/api-address`; returns the path.
    pub fn write(data_dir: &Path, address: SocketAddr) -> std::io::Result<PathBuf> {
        let path = data_dir.join(FILE);
        let partial = data_dir.join(format!("{FILE}.partial"));
        std::fs::write(&partial, format!("{address}\n"))?;
        std::fs::rename(&partial, &path)?;
        Ok(path)
    }
}

/// The `--store` flag.
enum StoreUrl {
    /// SQLite in the data dir (`sqlite://DIR` names it).
    Sqlite(Option<PathBuf>),
    /// A `postgres://` URL (may hold a password: never logged).
    Postgres(String),
}

impl StoreUrl {
    fn parse(url: Option<&str>) -> anyhow::Result<StoreUrl> {
        let Some(url) = url.map(str::trim) else {
            return Ok(StoreUrl::Sqlite(None));
        };
        if let Some(dir) = url.strip_prefix("sqlite://") {
            if dir.is_empty() {
                bail!("--store sqlite:// needs the data dir, e.g. sqlite:///var/lib/dubernetes/default");
            }
            return Ok(StoreUrl::Sqlite(Some(PathBuf::from(dir))));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_string()));
        }
        bail!("--store / DUBERNETES_STORE: expected sqlite://DIR or postgres://USER:PASSWORD@HOST:PORT/DB");
    }
}

/// What the log says of the store: never the password.
impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(_) => f.write_str("sqlite (data dir)"),
            StoreUrl::Postgres(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let at_host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                let host = at_host.split('?').next().unwrap_or(at_host);
                let host: String = host.chars().filter(|c| !c.is_control()).collect();
                write!(f, "postgres {host}")
            }
        }
    }
}

/// The default data dir of an instance: `/var/lib/dubernetes/INSTANCE` for
/// root, else `$XDG_STATE_HOME/dubernetes/INSTANCE`, else
/// `$HOME/.local/state/dubernetes/INSTANCE`. Never relative to the working
/// directory, so a `cd` cannot point the server at an empty store.
fn default_data_dir(instance: &str) -> anyhow::Result<PathBuf> {
    // The instance becomes a path component: it must be a DNS label first.
    if let Err(e) = dubernetes_core::PodSpec::new(instance, "x").validate() {
        let message = e.problems.first().map(|p| p.message.clone()).unwrap_or_default();
        bail!("--instance {instance:?}: {message}");
    }
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/dubernetes").join(instance));
    }
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").and_then(absolute) {
        return Ok(state.join("dubernetes").join(instance));
    }
    match std::env::var_os("HOME").and_then(absolute) {
        Some(home) => Ok(home.join(".local/state/dubernetes").join(instance)),
        None => Err(dubernetes_core::Error::DataDir {
            path: PathBuf::from("(default)"),
            problem: dubernetes_core::DataDirProblem::NoDefault {
                reason: "neither XDG_STATE_HOME nor HOME is an absolute path".into(),
            },
        }
        .into()),
    }
}

/// The API token: `--token`, else the one in the data dir; None when a new
/// one must be generated into it (after the data dir is locked).
/// A non-loopback API without an explicit token is refused: a token generated
/// into a file on this host is of no use to remote clients, and an API reachable
/// from the network must be a deliberate choice.
fn api_token(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<Option<Token>> {
    if let Some(text) = &config.token {
        return Token::new(text.trim())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--token / DUBERNETES_TOKEN: {e}"));
    }
    if !config.listen.ip().is_loopback() {
        bail!(
            "refusing to serve the API on {} (not loopback) without an explicit token: whoever reaches it can run \
             any container as root on this host. Set --token or DUBERNETES_TOKEN (e.g. `openssl rand -hex 32`), \
             or listen on 127.0.0.1",
            config.listen
        );
    }
    let Some((text, path)) =
        auth::load(data_dir).with_context(|| format!("reading the API token in {}", data_dir.display()))?
    else {
        return Ok(None);
    };
    tracing::info!(file = %path.display(), "API token read from the data dir");
    Token::new(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

//! `dubernetes-server`: the orchestrator (controller + HTTP API) as a daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use dubernetes_core::{BackoffSettings, DEFAULT_INGRESS_IMAGE, Dubernetes, IngressSettings};

/// Keeps the pods you apply running as Docker containers, reachable through an nginx ingress.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, after_help = "Example:\n  dubernetes-server --data-dir ./data --ingress-listen 127.0.0.1:8000 --ingress-image dubernetes/nginx:local")]
struct Config {
    /// Address of the HTTP API.
    #[arg(long, env = "DUBERNETES_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for the SQLite store.
    #[arg(long, env = "DUBERNETES_DATA_DIR", default_value = "dubernetes-data")]
    data_dir: PathBuf,
    /// Instance name: namespaces the Docker network, container names and labels.
    #[arg(long, env = "DUBERNETES_INSTANCE", default_value = "default")]
    instance: String,
    /// Host address the ingress publishes (port 0: the engine picks one).
    #[arg(long, env = "DUBERNETES_INGRESS_LISTEN", default_value = "0.0.0.0:80")]
    ingress_listen: SocketAddr,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,bollard=warn".into()),
        )
        .init();
    let config = Config::parse();
    if config.resync_seconds == 0 {
        bail!("--resync-seconds must be at least 1");
    }
    let mut backoff = BackoffSettings::default();
    backoff.initial = Duration::from_millis(config.backoff_initial_ms);
    backoff.max = Duration::from_secs(config.backoff_max_seconds);
    let orchestrator = Dubernetes::builder()
        .instance(&config.instance)
        .data_dir(&config.data_dir)
        .ingress(IngressSettings::new(
            config.ingress_image.clone(),
            config.ingress_listen,
        ))
        .resync_interval(Duration::from_secs(config.resync_seconds))
        .stop_grace_period(Duration::from_secs(config.stop_grace_seconds))
        .engine_concurrency(config.engine_concurrency)
        .drain_period(Duration::from_millis(config.drain_ms))
        .backoff(backoff)
        .max_pods(config.max_pods)
        .build()
        .await
        .with_context(|| {
            format!(
                "starting instance {:?} with data dir {}",
                config.instance,
                config.data_dir.display()
            )
        })?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "binding the API to {} (in use? pick another with --listen)",
            config.listen
        )
    })?;
    tracing::info!(
        api = %listener.local_addr()?,
        instance = %config.instance,
        data_dir = %config.data_dir.display(),
        ingress = %config.ingress_listen,
        ingress_image = %config.ingress_image,
        "dubernetes-server ready"
    );
    let streams_end = tokio_util::sync::CancellationToken::new();
    let router = dubernetes_server::router_with_shutdown(orchestrator.clone(), streams_end.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Watches and followed logs end, so the graceful shutdown does not wait for them.
            streams_end.cancel();
        })
        .await
        .context("serving the API")?;
    tracing::info!("shutting down; containers keep running and are adopted on the next start");
    orchestrator.shutdown().await;
    Ok(())
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

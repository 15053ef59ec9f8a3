//! The accept loop: bounded connections, a deadline for request heads, graceful shutdown.
//!
//! `axum::serve` has no connection limit and no header-read timeout, so a
//! client that opens thousands of connections, or sends its headers one byte
//! a minute (slowloris), could exhaust the server. Here each connection holds
//! a semaphore permit (at the limit the server stops accepting and the kernel
//! queues new ones), and hyper closes a connection whose request head does not
//! arrive in time. Bodies and handlers are bounded by the request deadline of
//! [`crate::app`].
//!
//! With a TLS configuration ([`serve_tls`]) each connection first completes a
//! rustls handshake, bounded by the header timeout (a client that stalls the
//! handshake holds its permit no longer than one that stalls its headers).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Most open connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client has to send a request head (on a new or kept-alive connection).
    pub header_read_timeout: Duration,
    /// Time open connections get to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// connections finish (up to the grace period).
pub async fn serve(listener: TcpListener, app: Router, limits: ServeLimits, shutdown: impl Future<Output = ()>) {
    serve_tls(listener, app, limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (plain HTTP otherwise).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let result = match acceptor {
                None => {
                    let builder = builder(&limits);
                    watcher
                        .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let builder = builder(&limits);
                            watcher
                                .watch(builder.serve_connection_with_upgrades(TokioIo::new(tls), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// How each HTTP/1.1 connection is served: hyper-util's `auto` builder,
/// held to HTTP/1.1, because its connections can be upgraded (`POST
/// /v1/pods/{name}/exec`) and still shut down gracefully (hyper's own
/// upgradeable HTTP/1 connection has no graceful-shutdown watcher).
fn builder(limits: &ServeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
}

//! A Unix-socket proxy in front of the Docker engine's socket that can make
//! the engine misbehave, as a client sees it, without touching the engine.
//!
//! Other engineers' tests share the one dockerd on this machine, so freezing
//! it (`kill -STOP`) or restarting it is not an option. What a client of a
//! frozen dockerd sees is connections that are accepted by the kernel and
//! then never answered; what it sees of a restart is every connection
//! dropped and, for a while, nothing listening on the socket. This proxy
//! produces exactly that for the one server that is pointed at it
//! (`DOCKER_HOST=unix://<path>`):
//!
//! - [`EngineProxy::pause`]: stop moving bytes in both directions. Bytes a
//!   client writes meanwhile stay in the socket buffers and reach the engine
//!   on [`resume`](EngineProxy::resume), as they would reach a SIGCONTed dockerd.
//!   New connections are accepted and held the same way.
//! - [`EngineProxy::restart`]: drop every connection, remove the socket
//!   (connects fail) for a while, then listen again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// The engine's socket.
pub const ENGINE_SOCKET: &str = "/var/run/docker.sock";

struct Shared {
    /// True while bytes must not move.
    paused: watch::Sender<bool>,
    /// Bumped to drop every connection.
    epoch: watch::Sender<u64>,
    /// True while nothing listens.
    down: watch::Sender<bool>,
}

/// A proxy listening on its own socket; dropped, it stops and removes the socket.
pub struct EngineProxy {
    path: PathBuf,
    _dir: tempfile::TempDir,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl EngineProxy {
    /// Starts a proxy to [`ENGINE_SOCKET`] on a new socket in a temporary directory.
    pub async fn start() -> EngineProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("engine.sock");
        let shared = Arc::new(Shared {
            paused: watch::channel(false).0,
            epoch: watch::channel(0).0,
            down: watch::channel(false).0,
        });
        let task = tokio::spawn(serve(path.clone(), Arc::clone(&shared)));
        // Listening once the socket file exists.
        for _ in 0..200 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(path.exists(), "the engine proxy did not start");
        EngineProxy {
            path,
            _dir: dir,
            shared,
            task,
        }
    }

    /// `DOCKER_HOST` for a client that should go through the proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// The proxy's socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops moving bytes: the engine looks frozen.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Moves bytes again, those held meanwhile first.
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// Drops every connection and refuses new ones for `down`, then listens
    /// again: an engine restart as a client sees it.
    pub async fn restart(&self, down: Duration) {
        self.shared.down.send_replace(true);
        self.shared.epoch.send_modify(|e| *e += 1);
        tokio::time::sleep(down).await;
        self.shared.down.send_replace(false);
        for _ in 0..200 {
            if self.path.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the engine proxy did not listen again");
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.epoch.send_modify(|e| *e += 1);
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(path: PathBuf, shared: Arc<Shared>) {
    let mut down = shared.down.subscribe();
    loop {
        let _ = std::fs::remove_file(&path);
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => panic!("binding {}: {e}", path.display()),
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((client, _)) = accepted {
                        tokio::spawn(connection(client, Arc::clone(&shared)));
                    }
                }
                changed = down.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *down.borrow_and_update() {
                        break;
                    }
                }
            }
        }
        // Down: nothing listens (a connect fails) until the restart is over.
        drop(listener);
        let _ = std::fs::remove_file(&path);
        loop {
            if down.changed().await.is_err() {
                return;
            }
            if !*down.borrow_and_update() {
                break;
            }
        }
    }
}

async fn connection(client: UnixStream, shared: Arc<Shared>) {
    let mut epoch = shared.epoch.subscribe();
    epoch.borrow_and_update();
    // Held while paused, as the kernel holds a connection to a stopped process.
    if !wait_unpaused(&shared, &mut epoch).await {
        return;
    }
    let Ok(engine) = UnixStream::connect(ENGINE_SOCKET).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (engine_read, engine_write) = engine.into_split();
    let up = pipe(client_read, engine_write, Arc::clone(&shared));
    let down = pipe(engine_read, client_write, Arc::clone(&shared));
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = epoch.changed() => {}
    }
}

/// Waits until bytes may move; false when the connection is to be dropped.
async fn wait_unpaused(shared: &Shared, epoch: &mut watch::Receiver<u64>) -> bool {
    let mut paused = shared.paused.subscribe();
    loop {
        if !*paused.borrow_and_update() {
            return true;
        }
        tokio::select! {
            changed = paused.changed() => if changed.is_err() { return false },
            _ = epoch.changed() => return false,
        }
    }
}

/// Copies one direction, moving no byte while paused.
async fn pipe(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let mut epoch = shared.epoch.subscribe();
    epoch.borrow_and_update();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !wait_unpaused(&shared, &mut epoch).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // A read that completed just as a pause began is held until the resume.
        if !wait_unpaused(&shared, &mut epoch).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

//! TCP listener containers: one small nginx container (the ingress's image,
//! the stream modules only) per listen address of pods' `expose`, labelled
//! and owned by the instance like the HTTP ingress, adopted after a restart,
//! removed when no pod exposes its address any more.
//!
//! Why a container per listener: the engine publishes a host port only when
//! it creates a container. With every listener in the HTTP ingress (as
//! before), a change of any pod's `expose` made a new ingress container:
//! about a second without ingress for every HTTP host and every TCP client.
//! Now a change of pod A's entry replaces A's listener container and
//! nothing else: not the HTTP ingress, not pod B's listeners, whose
//! connections stay up. The cost is one nginx master and worker per listener
//! (a few MiB); a pod has at most 16 `expose` entries.
//!
//! A listener that cannot start (its host port taken, an image without the
//! stream njs module) is no reason to hold anything else back: it is
//! recorded against its pod ([`Ingress::listener_failures`]: the status,
//! and one `ListenerFailed` Warning event per failure) and tried again with
//! back-off, from [`RETRY_FIRST`] doubling to [`RETRY_MAX`], until it starts
//! or no pod wants it.
//!
//! Its replicas are endpoint files (`tcp_<port>.{a,b}`, see [`super::stream`])
//! in a host directory of its own bound into it (`<endpoints dir>-tcp/<port>`),
//! or written through the engine's archive API when it cannot be bound, as
//! for the HTTP ingress.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::stream::{self, Stream};
use super::*;

/// The role label of a listener container.
pub(crate) const ROLE_LISTENER: &str = "listener";

/// Label of a listener container: the host address it publishes.
const LABEL_LISTEN: &str = "io.dubernetes.listen";

/// The first pause before a failed listener is tried again.
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest pause between two tries of a failed listener.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(15);

/// The pause after the `attempts`-th failure in a row of a listener:
/// [`RETRY_FIRST`], doubling, at most [`RETRY_MAX`].
fn retry_pause(attempts: u32) -> Duration {
    RETRY_MAX.min(RETRY_FIRST.saturating_mul(1 << attempts.saturating_sub(1).min(16)))
}

/// A listener container that exits this soon after it started, again, is
/// failing, not unlucky: its next start waits (see [`State::quick_exits`]).
pub(crate) const QUICK_EXIT: Duration = Duration::from_secs(60);

/// One TCP listener of a pod's `expose`, from [`Diagnostics::ingress_listeners`](crate::Diagnostics::ingress_listeners).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStatus {
    /// The host address it publishes (`127.0.0.1:15432`, `[::1]:15432`).
    pub listen: String,
    /// The pod that exposes it.
    pub pod: String,
    /// The pod's container port it forwards to.
    pub port: u16,
    /// Whether its container runs.
    pub serving: bool,
    /// Its running container's id (None: none runs).
    pub container: Option<String>,
    /// Why it could not start (or keeps exiting); None while it serves.
    pub error: Option<String>,
}

/// What happened to a pod's listener, for its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenerChange {
    /// It could not start (reported once per failure, not per retry).
    Failed(String),
    /// It started after it had failed.
    Started(String),
}

/// One running listener container.
#[derive(Debug)]
struct Listener {
    id: String,
    /// The host directory its endpoint files are in (None: the archive API).
    bound: Option<PathBuf>,
    written: endpoints::Written,
    /// When this server started it (or adopted it).
    since: tokio::time::Instant,
}

/// A listener that could not start.
#[derive(Debug)]
struct Failure {
    pod: String,
    reason: String,
    attempts: u32,
    next_try: tokio::time::Instant,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// By host address.
    running: BTreeMap<SocketAddr, Listener>,
    failed: BTreeMap<SocketAddr, Failure>,
    /// Exits in a row of each address's listener container, each within
    /// [`QUICK_EXIT`] of its start. The first is replaced at once; from the
    /// second on, the next start waits as a failed one does (from
    /// [`RETRY_FIRST`] doubling to [`RETRY_MAX`]), so a listener that keeps
    /// dying costs a container every 15 s, not a busy loop.
    quick_exits: BTreeMap<SocketAddr, u32>,
    /// When a wake for the next retry is due (one at a time).
    retry_at: Option<tokio::time::Instant>,
}

impl Ingress {
    /// Makes one listener container run per stream (creating the missing,
    /// adopting ours, removing those no stream wants or that no longer fit),
    /// and writes each one's endpoint files. `observed`: this instance's
    /// listener containers. A listener that cannot start is recorded, not an
    /// error; an error is an engine call that failed otherwise. Returns
    /// whether a listener started or went.
    pub(crate) async fn sync_listeners(&self, streams: &[Stream], observed: &[&Observed]) -> Result<bool> {
        let mut state = self.listeners.lock().await;
        let wanted: BTreeMap<SocketAddr, &Stream> = streams.iter().map(|s| (s.listen, s)).collect();
        state.failed.retain(|addr, _| wanted.contains_key(addr));
        state.quick_exits.retain(|addr, _| wanted.contains_key(addr));
        let now = tokio::time::Instant::now();
        let mut changed = false;
        // What runs: ours to keep (adopted after a restart), or to remove.
        let mut kept = BTreeSet::new();
        for c in observed {
            let listen = c.labels.get(LABEL_LISTEN).and_then(|l| l.parse::<SocketAddr>().ok());
            let fits = listen.filter(|l| {
                wanted.contains_key(l)
                    && !kept.contains(l)
                    && c.state == crate::owned_engine::ContainerState::Running
                    && c.labels.get(LABEL_INGRESS_CONFIG) == Some(&self.listener_hash(*l))
            });
            let Some(listen) = fits else {
                if let Some((addr, s)) = listen.and_then(|l| wanted.get_key_value(&l)) {
                    self.note_exit(&mut state, *addr, &s.pod, c, now).await;
                }
                tracing::info!(container = %c.name, listen = ?listen, "removing a TCP listener no pod wants as it is");
                self.runtime.remove(&c.id).await?;
                if let Some(addr) = listen {
                    self.remove_listener_dir(addr, &wanted);
                }
                changed = true;
                continue;
            };
            kept.insert(listen);
            if state.running.get(&listen).is_some_and(|l| l.id == c.id) {
                continue;
            }
            // Adopted (its config is fixed by its hash): its endpoint files
            // are written again below.
            let bound = match self.listener_dir(listen) {
                Some(dir) if c.labels.get(LABEL_INGRESS_ENDPOINTS).map(String::as_str) == dir.to_str() => {
                    self.check_bound(&c.id, &dir).await
                }
                _ => None,
            };
            state.running.insert(
                listen,
                Listener {
                    id: c.id.clone(),
                    bound,
                    written: endpoints::Written::default(),
                    since: now,
                },
            );
        }
        let before = state.running.len();
        let gone: Vec<SocketAddr> = state.running.keys().filter(|a| !kept.contains(*a)).copied().collect();
        state.running.retain(|addr, _| kept.contains(addr));
        changed |= state.running.len() != before;
        for addr in gone {
            self.remove_listener_dir(addr, &wanted);
        }
        // What is missing: started, unless it failed and is not due again.
        for (addr, s) in &wanted {
            if state.running.contains_key(addr) || state.failed.get(addr).is_some_and(|f| f.next_try > now) {
                continue;
            }
            match self.start_listener(s).await {
                Ok(listener) => {
                    if state.failed.remove(addr).is_some() {
                        tracing::info!(listen = %addr, pod = %s.pod, "the TCP listener started after all");
                        self.note_listener(
                            &s.pod,
                            ListenerChange::Started(format!("the TCP listener on {addr} serves")),
                        );
                    }
                    state.running.insert(*addr, listener);
                    changed = true;
                }
                Err(e) => {
                    let attempts = state.failed.get(addr).map_or(0, |f| f.attempts) + 1;
                    let pause = retry_pause(attempts);
                    let reason = e.to_string();
                    tracing::warn!(listen = %addr, pod = %s.pod, attempts, retry_in = ?pause, error = %reason, "a TCP listener could not start");
                    if attempts == 1 {
                        self.note_listener(
                            &s.pod,
                            ListenerChange::Failed(format!(
                                "the TCP listener on {addr} (port {}) could not start; retrying every {}s at most: {reason}",
                                s.port,
                                RETRY_MAX.as_secs()
                            )),
                        );
                    }
                    state.failed.insert(
                        *addr,
                        Failure {
                            pod: s.pod.clone(),
                            reason,
                            attempts,
                            next_try: now + pause,
                        },
                    );
                }
            }
        }
        self.write_listener_endpoints(&wanted, &mut state).await?;
        self.publish_failures(&state);
        self.publish_table(&wanted, &state);
        Ok(changed)
    }

    /// The endpoint files alone, when every wanted listener runs (or failed
    /// and is not due again) and none runs unwanted: `Ok(None)` otherwise,
    /// then a full [`Ingress::sync_listeners`] (with a fresh list of the
    /// engine) is needed.
    pub(crate) async fn sync_listener_endpoints(&self, streams: &[Stream]) -> Result<Option<()>> {
        let mut state = self.listeners.lock().await;
        let wanted: BTreeMap<SocketAddr, &Stream> = streams.iter().map(|s| (s.listen, s)).collect();
        let now = tokio::time::Instant::now();
        let settled = wanted
            .keys()
            .all(|a| state.running.contains_key(a) || state.failed.get(a).is_some_and(|f| f.next_try > now))
            && state.running.keys().all(|a| wanted.contains_key(a));
        if !settled {
            return Ok(None);
        }
        self.write_listener_endpoints(&wanted, &mut state).await?;
        Ok(Some(()))
    }

    /// When the next failed listener is due: `Some(pause)` once per due
    /// time, for the caller to sync again then (full, with a fresh list).
    pub(crate) async fn listener_retry(&self) -> Option<Duration> {
        let mut state = self.listeners.lock().await;
        let next = state.failed.values().map(|f| f.next_try).min()?;
        if state
            .retry_at
            .is_some_and(|at| at <= next && at > tokio::time::Instant::now())
        {
            return None;
        }
        state.retry_at = Some(next);
        Some(next.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// Reads each listener's endpoint files back (as [`Ingress::verify`]
    /// does the HTTP ingress's): one that does not route what was written
    /// gets its files written again by the next sync. Returns whether all did.
    pub(super) async fn verify_listeners(&self) -> bool {
        let mut state = self.listeners.lock().await;
        let mut intact = true;
        for (addr, listener) in state.running.iter_mut() {
            if listener.written.is_empty() {
                continue;
            }
            let files = match self
                .runtime
                .read_files(&listener.id, endpoints::ENDPOINTS_DIR, endpoints::MAX_READ_BYTES)
                .await
            {
                Ok(files) => files,
                Err(e) => {
                    tracing::warn!(listen = %addr, error = %e, "reading a TCP listener's endpoint files back failed; rewriting them");
                    Vec::new()
                }
            };
            let by_name: HashMap<&str, &[u8]> = files
                .iter()
                .map(|(path, content)| (endpoints::file_name(path), content.as_slice()))
                .collect();
            if !listener
                .written
                .mismatched(|name| by_name.get(name).copied())
                .is_empty()
            {
                tracing::warn!(listen = %addr, "a TCP listener's endpoint files do not route what was written; rewriting them");
                listener.written.clear();
                intact = false;
            }
        }
        intact
    }

    /// By pod, why one of its listeners is not serving (it could not start).
    /// Never waits for a sync.
    pub(crate) fn listener_failures(&self) -> Arc<BTreeMap<String, String>> {
        Arc::clone(&lock(&self.listener_failures))
    }

    /// Listener failures and recoveries since the last call, by pod.
    pub(crate) fn take_listener_changes(&self) -> Vec<(String, ListenerChange)> {
        std::mem::take(&mut *lock(&self.listener_changes))
    }

    fn note_listener(&self, pod: &str, change: ListenerChange) {
        lock(&self.listener_changes).push((pod.to_string(), change));
    }

    /// Every wanted listener, by address: whether its container runs, and
    /// why it does not when it failed.
    pub(crate) fn listener_table(&self) -> Arc<Vec<ListenerStatus>> {
        Arc::clone(&lock(&self.listener_table))
    }

    fn publish_table(&self, wanted: &BTreeMap<SocketAddr, &Stream>, state: &State) {
        let table = wanted
            .iter()
            .map(|(addr, s)| ListenerStatus {
                listen: addr.to_string(),
                pod: s.pod.clone(),
                port: s.port,
                serving: state.running.contains_key(addr),
                container: state.running.get(addr).map(|l| l.id.clone()),
                error: state.failed.get(addr).map(|f| f.reason.clone()),
            })
            .collect();
        *lock(&self.listener_table) = Arc::new(table);
    }

    fn publish_failures(&self, state: &State) {
        let mut by_pod: BTreeMap<String, String> = BTreeMap::new();
        for (addr, f) in &state.failed {
            let line = format!(
                "the TCP listener on {addr} could not start ({} tries; retrying): {}",
                f.attempts, f.reason
            );
            by_pod
                .entry(f.pod.clone())
                .and_modify(|m| {
                    m.push_str("; ");
                    m.push_str(&line);
                })
                .or_insert(line);
        }
        *lock(&self.listener_failures) = Arc::new(by_pod);
    }

    /// Writes each running listener's endpoint files that changed.
    async fn write_listener_endpoints(&self, wanted: &BTreeMap<SocketAddr, &Stream>, state: &mut State) -> Result<()> {
        for (addr, listener) in state.running.iter_mut() {
            let Some(s) = wanted.get(addr) else { continue };
            let (files, pending) = listener.written.changes([(s.key.as_str(), s.servers.as_slice())]);
            if files.is_empty() {
                continue;
            }
            self.write_endpoint_files(&listener.id, listener.bound.as_deref(), files)
                .await?;
            listener.written.commit(pending);
            self.endpoint_updates.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Endpoint files (paths relative to `/etc`) into a bound directory, or
    /// through the engine's archive API.
    async fn write_endpoint_files(&self, id: &str, bound: Option<&Path>, files: endpoints::Files) -> Result<()> {
        match bound {
            Some(dir) => {
                let named = files
                    .into_iter()
                    .map(|(path, content)| (endpoints::file_name(&path).to_string(), content))
                    .collect();
                self.runtime.write_bound_files(dir, named).await
            }
            None => self.runtime.write_files(id, endpoints::ENDPOINTS_BASE, &files).await,
        }
    }

    /// Creates and starts the listener container of `s`, its replicas in
    /// place before it accepts a connection. A container that cannot serve
    /// (the host port taken, nginx refusing the config) does not stay behind.
    async fn start_listener(&self, s: &Stream) -> Result<Listener> {
        self.ensure_ingress_image().await?;
        let mut labels = HashMap::from([
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_ROLE.to_string(), ROLE_LISTENER.to_string()),
            (LABEL_INGRESS_CONFIG.to_string(), self.listener_hash(s.listen)),
            (LABEL_LISTEN.to_string(), s.listen.to_string()),
        ]);
        let dir = self.listener_dir(s.listen);
        if let Some(dir) = dir.as_ref().and_then(|d| d.to_str()) {
            labels.insert(LABEL_INGRESS_ENDPOINTS.to_string(), dir.to_string());
        }
        let spec = ContainerSpec {
            name: format!("dub-{}-tcp-{}", self.instance, s.listen.port()),
            image: self.settings.image.clone(),
            port: s.listen.port(),
            labels,
            network: self.network.clone(),
            limits: self.settings.limits,
            publish: Some(s.listen),
            binds: dir
                .iter()
                .map(|host| BindDir {
                    host: host.clone(),
                    container: endpoints::ENDPOINTS_DIR.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        let id = self.runtime.create(&spec).await?;
        let started = async {
            if !self.has_file(&id, stream::STREAM_JS_MODULE).await {
                return Err(Error::Ingress(format!(
                    "the ingress image {} has no nginx stream njs module ({}; Debian's libnginx-mod-stream-js): TCP listeners need it (scripts/build-images.sh builds dubernetes/nginx:local-4 with it)",
                    self.settings.image,
                    stream::STREAM_JS_MODULE
                )));
            }
            let mut files = stream::files(&self.instance, s.listen, self.has_file(&id, stream::STREAM_MODULE).await)?;
            // The replicas before the first connection: into the bound
            // directory, or with the other files.
            let mut written = endpoints::Written::default();
            let (endpoint_files, pending) = written.changes([(s.key.as_str(), s.servers.as_slice())]);
            match &dir {
                Some(d) => self.write_endpoint_files(&id, Some(d), endpoint_files.clone()).await?,
                None => files.extend(endpoint_files.iter().cloned()),
            }
            self.runtime.write_files(&id, "/etc", &files).await?;
            self.runtime.start(&id).await?;
            match self.check(&id).await {
                Ok(Check::Passed) => {}
                Ok(Check::Rejected(output)) => {
                    return Err(Error::Ingress(format!("nginx -t rejected the listener's config: {output}")));
                }
                Err(e) => return Err(self.with_logs(&id, e).await),
            }
            // A bound directory the container does not see (this server in a
            // container): the archive API from now on.
            let bound = match &dir {
                Some(d) => match self.check_bound(&id, d).await {
                    Some(b) => Some(b),
                    None => {
                        self.write_endpoint_files(&id, None, endpoint_files).await?;
                        None
                    }
                },
                None => None,
            };
            written.commit(pending);
            Ok(Listener {
                id: id.clone(),
                bound,
                written,
                since: tokio::time::Instant::now(),
            })
        }
        .await;
        let listener = match started {
            Ok(l) => l,
            Err(e) => {
                if let Err(removing) = self.runtime.remove(&id).await {
                    tracing::warn!(error = %removing, "removing a TCP listener container that did not start failed");
                }
                return Err(e);
            }
        };
        // The engine's wait for a running container: nginx may still exit
        // on a config `nginx -t` passed (a port it cannot bind inside).
        if !self.runtime.is_running(&listener.id).await? {
            let e = self
                .with_logs(&listener.id, Error::Ingress("the listener container exited".into()))
                .await;
            if let Err(removing) = self.runtime.remove(&listener.id).await {
                tracing::warn!(error = %removing, "removing a TCP listener container that exited failed");
            }
            return Err(e);
        }
        Ok(listener)
    }

    /// Books the exit of `c`, the listener container of `addr` this server
    /// ran, which no longer runs: a quick one in a row holds the next start
    /// back, with the container's last log lines as the reason.
    async fn note_exit(&self, state: &mut State, addr: SocketAddr, pod: &str, c: &Observed, now: tokio::time::Instant) {
        let Some(listener) = state.running.get(&addr).filter(|l| l.id == c.id) else {
            return;
        };
        if c.state == crate::owned_engine::ContainerState::Running {
            return;
        }
        let quick = now.saturating_duration_since(listener.since) < QUICK_EXIT;
        let exits = if quick {
            state.quick_exits.get(&addr).copied().unwrap_or(0).saturating_add(1)
        } else {
            1
        };
        state.quick_exits.insert(addr, exits);
        if exits < 2 {
            tracing::warn!(listen = %addr, "a TCP listener container exited; replacing it");
            return;
        }
        let attempts = exits - 1;
        let pause = retry_pause(attempts);
        let reason = self
            .with_logs(
                &c.id,
                Error::Ingress(format!(
                    "the listener container exited {exits} times in a row, each within {}s of its start",
                    QUICK_EXIT.as_secs()
                )),
            )
            .await
            .to_string();
        tracing::warn!(listen = %addr, exits, retry_in = ?pause, error = %reason, "a TCP listener keeps exiting");
        if exits == 2 {
            self.note_listener(
                pod,
                ListenerChange::Failed(format!(
                    "the TCP listener on {addr} keeps exiting; restarting it every {}s at most: {reason}",
                    RETRY_MAX.as_secs()
                )),
            );
        }
        state.failed.insert(
            addr,
            Failure {
                pod: pod.to_string(),
                reason,
                attempts,
                next_try: now + pause,
            },
        );
    }

    /// Removes the host directory of the endpoint files of a listener no
    /// pod wants any more (ours: `<endpoints dir>-tcp/<port>`), unless a
    /// wanted listener has its port.
    fn remove_listener_dir(&self, addr: SocketAddr, wanted: &BTreeMap<SocketAddr, &Stream>) {
        if wanted.keys().any(|a| a.port() == addr.port()) {
            return;
        }
        let Some(dir) = self.listener_dir_path(addr.port()) else {
            return;
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "removing a TCP listener's endpoints directory failed")
            }
        }
    }

    /// `e`, with the last lines the container wrote (why nginx exited).
    async fn with_logs(&self, id: &str, e: Error) -> Error {
        match self.runtime.log_tail(id, 3).await {
            Ok(tail) if !tail.trim().is_empty() => {
                Error::Ingress(format!("{e}; its last log lines: {}", tail.trim().replace('\n', " | ")))
            }
            _ => e,
        }
    }

    fn listener_hash(&self, listen: SocketAddr) -> String {
        stream::listener_hash(&self.settings.image, listen, &self.network, &self.settings.limits)
    }

    /// Whether the container (created or running) has a file at `path`.
    async fn has_file(&self, id: &str, path: &str) -> bool {
        self.runtime
            .read_files(id, path, 16 << 20)
            .await
            .is_ok_and(|f| !f.is_empty())
    }

    /// Where the endpoint files of the listener on `port` are on the host.
    fn listener_dir_path(&self, port: u16) -> Option<PathBuf> {
        let base = self.endpoints_dir()?;
        let mut name = base.file_name()?.to_os_string();
        name.push("-tcp");
        Some(base.with_file_name(name).join(port.to_string()))
    }

    /// The host directory of a listener's endpoint files, ready to bind:
    /// `<endpoints dir>-tcp/<port>`, beside the HTTP ingress's (whose
    /// read-back of its own directory it would otherwise swell).
    fn listener_dir(&self, listen: SocketAddr) -> Option<PathBuf> {
        let dir = self.listener_dir_path(listen.port())?;
        match crate::engine::bind::prepare(&dir) {
            Ok(dir) => Some(dir),
            Err(e) => {
                tracing::warn!(error = %e, "a TCP listener's endpoints directory cannot be used; its endpoint files go through the engine's archive API");
                None
            }
        }
    }
}

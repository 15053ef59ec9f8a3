//! The nginx ingress: one container per instance, on the instance network,
//! the only container that publishes a port.
//!
//! Its config is data: rendered by askama from `templates/nginx.conf`,
//! written into the container through the archive API (no bind mount, which
//! breaks when a file is replaced by rename), checked with `nginx -t` before
//! it goes live, and reloaded only when it changed. A rejected config is
//! rolled back to the last good one on disk; the running nginx never saw it.
//!
//! The config holds hosts only. Which replicas serve a host is written to
//! endpoint files that nginx's Lua module reads (cached per worker, watched
//! with inotify) and its balancer routes to, over kept-alive connections to
//! the replicas ([`endpoints`], `templates/ingress.lua`): replicas come and go
//! without a reload, so client keep-alive connections stay open; nginx
//! reloads only when the set of hosts (the server blocks) changes.
//!
//! One pod's route can never stop everyone else's changes: when `nginx -t`
//! rejects a config, the routes that cause it are found (the line nginx
//! names, else bisection, at most [`MAX_ISOLATION_CHECKS`] checks), the rest
//! is applied without them, and the rejection is reported against those pods
//! ([`Ingress::rejections`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

mod endpoints;
mod reject;
mod render;
mod stream;

#[cfg(test)]
pub(crate) use endpoints::{latest as latest_endpoints, slot_path as endpoints_slot};

pub(crate) use reject::RejectionChange;
use reject::{Check, Rejections};
pub(crate) use render::{Route, RouteTls, render};
pub(crate) use stream::Stream;

use crate::engine::{BindDir, Network};
use crate::error::{Error, Result};
use crate::runtime::{
    ContainerSpec, LABEL_INGRESS_CONFIG, LABEL_INGRESS_ENDPOINTS, LABEL_INSTANCE, LABEL_ROLE, Observed, Runtime,
};

/// The default ingress image: the official nginx image, pulled if missing.
pub const DEFAULT_INGRESS_IMAGE: &str = "nginx:1.27-alpine";
const CONF_DIR: &str = "/etc/nginx/conf.d";
const CONF_FILE: &str = "default.conf";

/// Files every ingress container gets before it starts (paths under `/etc`),
/// whichever router it uses: the proxy settings of every route. They never
/// change while the container lives.
const STATIC_FILES: [(&str, &str); 1] = [(
    "dubernetes/proxy.conf",
    include_str!("../../../templates/ingress-proxy.conf"),
)];

/// With an image that has Lua's balancer (ours): the main config that loads
/// the Lua module and holds the balancer's upstream, the router, and what
/// each route and its retry location include. Keep-alive to the replicas.
const LUA_FILES: [(&str, &str); 4] = [
    ("nginx/nginx.conf", include_str!("../../../templates/nginx-main.conf")),
    (
        "dubernetes/dubernetes.lua",
        include_str!("../../../templates/ingress.lua"),
    ),
    (
        "dubernetes/route.conf",
        include_str!("../../../templates/ingress-route-lua.conf"),
    ),
    (
        "dubernetes/retry.conf",
        include_str!("../../../templates/ingress-retry-lua.conf"),
    ),
];

/// With an image without it (the official nginx images have njs only): the
/// same with njs, which reads the files per request and has no keep-alive.
const NJS_FILES: [(&str, &str); 4] = [
    (
        "nginx/nginx.conf",
        include_str!("../../../templates/nginx-main-njs.conf"),
    ),
    ("dubernetes/ingress.js", include_str!("../../../templates/ingress.js")),
    (
        "dubernetes/route.conf",
        include_str!("../../../templates/ingress-route-njs.conf"),
    ),
    (
        "dubernetes/retry.conf",
        include_str!("../../../templates/ingress-retry-njs.conf"),
    ),
];

/// A file of lua-resty-core (Debian's path), whose `ngx.balancer` the Lua
/// router needs: an image that has it gets [`LUA_FILES`], any other [`NJS_FILES`].
const LUA_PROBE: &str = "/usr/share/lua/5.1/ngx/balancer.lua";

/// Changes when what [`STATIC_FILES`] and the config expect of a container
/// changes: an ingress made for another layout is replaced.
const LAYOUT: &str = "router-include-1";

/// How the ingress container is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IngressSettings {
    /// An image with nginx in the official image's layout.
    pub image: String,
    /// Where the ingress listens on the host. Port 0 lets the engine pick a free port.
    pub listen: SocketAddr,
    /// Log rotation, pids limit and no-new-privileges of the ingress container.
    #[serde(default)]
    pub limits: crate::runtime::ContainerLimits,
    /// Where the ingress serves HTTPS on the host (port 0: any free port);
    /// None: no HTTPS listener, every host stays plain HTTP.
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// A host directory for the endpoint files, bound into the ingress
    /// container when the engine runs on this machine: a replica change is
    /// then a file renamed here (microseconds) instead of an archive upload
    /// through the engine (tens of milliseconds). None, a remote engine, or
    /// a container that does not see the directory (this process runs in a
    /// container of its own): the archive API, as before. The builder
    /// defaults it to `ingress/` in the data dir.
    #[serde(default)]
    pub endpoints_dir: Option<std::path::PathBuf>,
}

impl IngressSettings {
    /// The ingress container's log rotation, pids limit and no-new-privileges.
    pub fn with_limits(mut self, limits: crate::runtime::ContainerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Keeps the endpoint files in this host directory (see [`IngressSettings::endpoints_dir`]).
    pub fn with_endpoints_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.endpoints_dir = Some(dir.into());
        self
    }

    /// Serves HTTPS (hosts with `access.tls`) on this host address.
    pub fn with_tls_listen(mut self, listen: SocketAddr) -> Self {
        self.tls_listen = Some(listen);
        self
    }

    /// Settings with the given image and listen address.
    pub fn new(image: impl Into<String>, listen: SocketAddr) -> Self {
        IngressSettings {
            image: image.into(),
            listen,
            limits: crate::runtime::ContainerLimits::default(),
            tls_listen: None,
            endpoints_dir: None,
        }
    }
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            image: DEFAULT_INGRESS_IMAGE.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 80)),
            limits: crate::runtime::ContainerLimits::default(),
            tls_listen: None,
            endpoints_dir: None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Version of the last applied config.
    version: Option<String>,
    container_id: Option<String>,
    last_applied: Option<String>,
    /// The full config last asked for, when nginx rejected part of it: the
    /// same routes again are not re-checked (see [`Ingress::verify`]).
    requested: Option<String>,
    port: Option<u16>,
    /// The host port of HTTPS (container port 443), when it is published.
    tls_port: Option<u16>,
    /// Fingerprints of the certificate files written into the container, by pod.
    written_certs: HashMap<String, String>,
    /// The endpoint files this process wrote into the container.
    written: endpoints::Written,
    /// The host directory the container's endpoint files are in, once
    /// checked (see [`IngressSettings::endpoints_dir`]); None: the archive API.
    bound: Option<std::path::PathBuf>,
    /// The TCP listeners of this sync (pods' `expose`, see [`stream`]).
    streams: Vec<Stream>,
    /// [`stream::layout`] of the container's listeners.
    stream_layout: String,
    /// A layout the ingress could not start with (a host port taken, an
    /// image without the stream modules): served without TCP listeners
    /// until `expose` changes, so HTTP keeps working.
    failed_layout: Option<String>,
}

impl State {
    /// Whether `text` is the config that is live, or the one last asked for
    /// when nginx rejected part of it (the same routes are not re-checked).
    fn has_config(&self, text: &str) -> bool {
        self.last_applied.as_deref() == Some(text) || self.requested.as_deref() == Some(text)
    }
}

/// Where certificates (with their keys, mode 0600) and ACME challenge files go in the container.
const NGINX_DIR: &str = "/etc/nginx";

/// The ingress of one instance.
#[derive(Debug)]
pub(crate) struct Ingress {
    runtime: Runtime,
    /// How the published port is reached (the host's sockets for a real engine).
    net: Arc<dyn Network>,
    instance: String,
    network: String,
    name: String,
    settings: IngressSettings,
    state: Mutex<State>,
    /// Containers the live config routes to. Kept out of `state`, whose lock
    /// is held for a whole sync (write, check, reload, wait until live), so
    /// API reads never wait for a reload.
    routed: StdMutex<Arc<HashSet<String>>>,
    /// Pods with a server block in the live config: their endpoint files
    /// are live as soon as written. Set under `state`'s lock, likewise
    /// readable without waiting for a sync.
    live: StdMutex<Arc<HashSet<String>>>,
    /// By pod, the fingerprint of the certificate file its HTTPS server block
    /// in the live config serves (what [`Ingress::serves_certificate`] reads).
    live_tls: StdMutex<Arc<HashMap<String, String>>>,
    /// Pods whose routes the live config leaves out because nginx rejected
    /// them, with nginx's message; and what the controller was last told.
    rejected: StdMutex<Rejections>,
    /// Configs made live (reloads and fresh starts), for benchmarks and metrics.
    reloads: AtomicU64,
    /// Endpoint writes (replica changes applied without a reload).
    endpoint_updates: AtomicU64,
    /// `state.port` (0: none), readable without waiting for a sync that is
    /// stuck on a frozen engine.
    published: std::sync::atomic::AtomicU32,
    /// `state.tls_port` (0: none), likewise.
    published_tls: std::sync::atomic::AtomicU32,
    /// `state.bound.is_some()`, likewise.
    bound: std::sync::atomic::AtomicBool,
    /// The TCP listeners wanted, from [`Ingress::set_streams`].
    streams: StdMutex<Arc<Vec<Stream>>>,
}

impl Ingress {
    pub(crate) fn new(runtime: Runtime, instance: &str, network: &str, settings: IngressSettings) -> Ingress {
        Ingress {
            net: runtime.network(),
            runtime,
            instance: instance.to_string(),
            network: network.to_string(),
            name: format!("dub-{instance}-ingress"),
            settings,
            state: Mutex::new(State::default()),
            routed: StdMutex::new(Arc::new(HashSet::new())),
            live: StdMutex::new(Arc::new(HashSet::new())),
            live_tls: StdMutex::new(Arc::new(HashMap::new())),
            rejected: StdMutex::new(Rejections::default()),
            reloads: AtomicU64::new(0),
            endpoint_updates: AtomicU64::new(0),
            published: std::sync::atomic::AtomicU32::new(0),
            published_tls: std::sync::atomic::AtomicU32::new(0),
            bound: std::sync::atomic::AtomicBool::new(false),
            streams: StdMutex::new(Arc::new(Vec::new())),
        }
    }

    /// The TCP listeners (pods' `expose`) and their ready replicas, for the
    /// next sync: replicas go live with the endpoint files, no reload; a
    /// changed set of listeners makes a new ingress container.
    pub(crate) fn set_streams(&self, streams: Vec<Stream>) {
        *lock(&self.streams) = Arc::new(streams);
    }

    /// The listeners to serve: those wanted, or none while they are the
    /// set the ingress could not start with.
    fn effective_streams(&self, state: &State) -> Vec<Stream> {
        let wanted = lock(&self.streams).as_ref().clone();
        if state.failed_layout.as_deref() == Some(stream::layout(&wanted).as_str()) {
            return Vec::new();
        }
        wanted
    }

    /// The files every ingress container gets before it starts, with the TCP side of `streams`.
    fn config_hash(&self, streams: &[Stream]) -> String {
        let l = &self.settings.limits;
        // The host limits count too: an ingress made before them (or with
        // other flags) is replaced once, so it runs with what the flags say.
        let tls = self
            .settings
            .tls_listen
            .map(|t| format!("|tls={t}"))
            .unwrap_or_default();
        // The TCP listeners too: their ports are published at creation.
        let tcp = match stream::layout(streams) {
            l if l.is_empty() => l,
            l => format!("|tcp={l}"),
        };
        let digest = Sha256::digest(format!(
            "{}|{}|{}|{LAYOUT}|log={}x{}|pids={:?}|nnp={}{tls}{tcp}",
            self.settings.image,
            self.settings.listen,
            self.network,
            l.log_max_bytes,
            l.log_max_files,
            l.pids,
            l.no_new_privileges
        ));
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// The host port the ingress listens on, once it runs.
    pub(crate) async fn port(&self) -> Option<u16> {
        u16::try_from(self.published.load(Ordering::Relaxed))
            .ok()
            .filter(|&p| p != 0)
    }

    /// Makes the ingress container exist, run with current settings, and serve
    /// `routes`, less any nginx rejects (see [`Ingress::rejections`]).
    /// `observed` is this instance's ingress containers.
    /// `certs` holds, by pod, the PEM certificate chain and key of each host
    /// served over HTTPS; other routes stay plain HTTP.
    pub(crate) async fn sync(
        &self,
        routes: &[Route],
        observed: &[&Observed],
        certs: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let mut state = self.state.lock().await;
        let routes = &self.with_tls(routes, certs, &state);
        let (text, _) = render(&self.instance, routes)?;
        state.streams = self.effective_streams(&state);
        let hash = self.config_hash(&state.streams);
        let healthy = observed.iter().find(|c| {
            c.name == self.name
                && c.state == crate::runtime::ContainerState::Running
                && c.labels.get(LABEL_INGRESS_CONFIG) == Some(&hash)
        });
        match healthy {
            Some(c) if state.container_id.as_deref() == Some(c.id.as_str()) => {
                // Replicas first: live as soon as written, no reload. A new
                // host's server block (reloaded below) finds them in place.
                // Routed now, whatever happens to the config below (nginx
                // may reject a new host: the live pods' replicas still change).
                let routed_changed = self.route_replicas(&c.id, routes, &mut state).await?;
                // The same config as live (or as last asked for, when nginx
                // rejected part of it): nothing more to write. The containers
                // behind it may be others: a replacement replica can get the
                // address of the one it replaces. nginx already routes to it.
                if state.has_config(&text) {
                    return Ok(routed_changed);
                }
                self.write_certs(&c.id, certs, &mut state).await?;
                Ok(self.apply(&c.id, &text, routes, &mut state).await? || routed_changed)
            }
            Some(c) => {
                // Adopted (e.g. after a server restart): deliver our config once.
                state.container_id = Some(c.id.clone());
                state.last_applied = None;
                state.requested = None;
                state.written.clear();
                // Its endpoint files are ours to rename in place only if it
                // was made with our directory, and sees what we write there.
                let mut bound = None;
                if let Some(dir) = self.endpoints_dir()
                    && c.labels.get(LABEL_INGRESS_ENDPOINTS).map(String::as_str) == dir.to_str()
                {
                    bound = self.check_bound(&c.id, &dir).await;
                }
                self.set_bound(&mut state, bound);
                state.port = self.runtime.published_port(&c.id, 80).await?;
                state.tls_port = self.runtime.published_port(&c.id, 443).await?;
                self.published_tls
                    .store(state.tls_port.map_or(0, u32::from), Ordering::Relaxed);
                state.written_certs.clear();
                self.published.store(state.port.map_or(0, u32::from), Ordering::Relaxed);
                // Its files may be missing (a copy of our ingress made by
                // someone else): the reload below loads them.
                let files = self.static_files(&c.id, &state.streams).await?;
                self.runtime.write_files(&c.id, "/etc", &files).await?;
                state.stream_layout = stream::layout(&state.streams);
                // The HTTPS port may only be known now: render again.
                let routes = &self.with_tls(routes, certs, &state);
                let (text, _) = render(&self.instance, routes)?;
                self.write_certs(&c.id, certs, &mut state).await?;
                self.write_endpoints(&c.id, routes, &mut state).await?;
                self.apply(&c.id, &text, routes, &mut state).await?;
                Ok(true)
            }
            None => {
                for c in observed {
                    self.runtime.remove(&c.id).await?;
                }
                let id = match self.create(&mut state).await {
                    Ok(id) => id,
                    Err(e) if !state.streams.is_empty() => {
                        // HTTP first: without the listeners, until `expose` changes.
                        tracing::warn!(error = %e, listeners = %stream::layout(&state.streams), "the ingress could not start with the TCP listeners of `expose`; starting it without them");
                        state.failed_layout = Some(stream::layout(&state.streams));
                        state.streams.clear();
                        self.create(&mut state).await?
                    }
                    Err(e) => return Err(e),
                };
                let routes = &self.with_tls(routes, certs, &state);
                let (text, _) = render(&self.instance, routes)?;
                self.write_certs(&id, certs, &mut state).await?;
                self.write_endpoints(&id, routes, &mut state).await?;
                self.apply(&id, &text, routes, &mut state).await?;
                Ok(true)
            }
        }
    }

    /// The endpoint files alone, when nothing else changed: the container
    /// is the one this process made live and `routes` render the config it
    /// serves (no host, certificate or port changed). `Ok(None)`: something
    /// else changed, so a full [`Ingress::sync`] (with a fresh list of the
    /// engine) is needed. `Ok(Some(changed))`: whether routed replicas changed.
    pub(crate) async fn sync_endpoints(
        &self,
        routes: &[Route],
        certs: &BTreeMap<String, String>,
    ) -> Result<Option<bool>> {
        let mut state = self.state.lock().await;
        let Some(id) = state.container_id.clone() else {
            return Ok(None);
        };
        let routes = &self.with_tls(routes, certs, &state);
        let (text, _) = render(&self.instance, routes)?;
        if !state.has_config(&text) {
            return Ok(None);
        }
        let streams = self.effective_streams(&state);
        if stream::layout(&streams) != state.stream_layout {
            return Ok(None);
        }
        state.streams = streams;
        Ok(Some(self.route_replicas(&id, routes, &mut state).await?))
    }

    /// Writes the endpoint files of `routes` and records the replicas the
    /// live config now routes to (pods with a live server block); returns
    /// whether those changed. No reload.
    async fn route_replicas(&self, id: &str, routes: &[Route], state: &mut State) -> Result<bool> {
        self.write_endpoints(id, routes, state).await?;
        let live_pods = Arc::clone(&lock(&self.live));
        let live: Vec<Route> = routes.iter().filter(|r| live_pods.contains(&r.pod)).cloned().collect();
        Ok(self.update_routed(&live))
    }

    /// The files to write under `/etc` into container `id` (created from our
    /// image setting): [`STATIC_FILES`] and the router its image can run.
    async fn static_files(&self, id: &str, streams: &[Stream]) -> Result<Vec<(String, Vec<u8>)>> {
        const MAIN: &str = "nginx/nginx.conf";
        let lua = (self.runtime.read_files(id, LUA_PROBE, 1 << 20).await).is_ok_and(|f| !f.is_empty());
        tracing::debug!(image = %self.settings.image, lua, "ingress router");
        let router: &[(&str, &str)] = if lua { &LUA_FILES } else { &NJS_FILES };
        // The main config gains the stream block when a pod exposes TCP ports.
        let main = router
            .iter()
            .find(|(path, _)| *path == MAIN)
            .map_or("", |(_, text)| *text);
        let mut files: Vec<(String, Vec<u8>)> = STATIC_FILES
            .iter()
            .chain(router)
            .filter(|(path, _)| *path != MAIN)
            .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
            .collect();
        files.extend(stream::files(&self.instance, main, streams)?);
        Ok(files)
    }

    /// Creates and starts a fresh ingress serving no routes (a config that
    /// cannot be rejected for anything a pod wrote); [`Ingress::apply`] then
    /// adds the routes. Returns the container id.
    async fn create(&self, state: &mut State) -> Result<String> {
        state.container_id = None;
        state.last_applied = None;
        state.requested = None;
        state.written.clear();
        *lock(&self.live) = Arc::new(HashSet::new());
        *lock(&self.live_tls) = Arc::new(HashMap::new());
        self.set_bound(state, None);
        *self.routed.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(HashSet::new());
        self.runtime
            .ensure_image(&self.settings.image, &crate::engine::Pull::if_missing())
            .await.map_err(|e| {
            Error::Ingress(format!(
                "the ingress image {} is not available ({e}); build one (scripts/build-images.sh builds dubernetes/nginx:local-4) or pass --ingress-image with an image you have",
                self.settings.image
            ))
        })?;
        let mut labels = HashMap::from([
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_ROLE.to_string(), "ingress".to_string()),
            (LABEL_INGRESS_CONFIG.to_string(), self.config_hash(&state.streams)),
        ]);
        let bind = self.endpoints_dir();
        if let Some(dir) = bind.as_ref().and_then(|d| d.to_str()) {
            labels.insert(LABEL_INGRESS_ENDPOINTS.to_string(), dir.to_string());
        }
        let spec = ContainerSpec {
            name: self.name.clone(),
            image: self.settings.image.clone(),
            port: 80,
            labels,
            network: self.network.clone(),
            limits: self.settings.limits,
            publish: Some(self.settings.listen),
            publish_tls: self.settings.tls_listen,
            publish_more: stream::published(&state.streams),
            binds: bind
                .iter()
                .map(|host| BindDir {
                    host: host.clone(),
                    container: endpoints::ENDPOINTS_DIR.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        let (text, version) = render(&self.instance, &[])?;
        let id = self.runtime.create(&spec).await?;
        // A container that cannot serve (a published port taken on the
        // host, nginx refusing to start) does not stay behind: the next
        // attempt makes one of the same name.
        let started = async {
            // Written before the start, so nginx comes up serving our config.
            let mut files = self.static_files(&id, &state.streams).await?;
            files.push((format!("nginx/conf.d/{CONF_FILE}"), text.clone().into_bytes()));
            self.runtime.write_files(&id, "/etc", &files).await?;
            self.runtime.start(&id).await?;
            if let Some(dir) = &bind {
                let bound = self.check_bound(&id, dir).await;
                self.set_bound(state, bound);
            }
            if let Check::Rejected(output) = self.check(&id).await? {
                return Err(Error::Ingress(format!(
                    "nginx -t rejected the generated config even without routes (does the image's nginx.conf set server_names_hash_* itself?): {output}"
                )));
            }
            state.port = self.runtime.published_port(&id, 80).await?;
            state.tls_port = match self.settings.tls_listen {
                Some(_) => self.runtime.published_port(&id, 443).await?,
                None => None,
            };
            self.published_tls
                .store(state.tls_port.map_or(0, u32::from), Ordering::Relaxed);
            state.written_certs.clear();
            self.published.store(state.port.map_or(0, u32::from), Ordering::Relaxed);
            self.wait_live(state.port, &version).await?;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = started {
            if let Err(removing) = self.runtime.remove(&id).await {
                tracing::warn!(error = %removing, "removing an ingress container that did not start failed");
            }
            return Err(e);
        }
        state.stream_layout = stream::layout(&state.streams);
        state.container_id = Some(id.clone());
        state.last_applied = Some(text);
        state.version = Some(version);
        Ok(id)
    }

    /// Writes `text` (the config of all `routes`), checks it and makes it
    /// live. If nginx rejects it, finds the routes that cause it, makes the
    /// rest live, and records the rejected ones. Returns whether a new config
    /// went live (not when nginx rejected exactly what it had rejected before).
    async fn apply(&self, id: &str, text: &str, routes: &[Route], state: &mut State) -> Result<bool> {
        let t0 = std::time::Instant::now();
        self.runtime
            .write_file(id, CONF_DIR, CONF_FILE, text.as_bytes())
            .await?;
        let t_write = t0.elapsed();
        let check = self.check(id).await;
        let t_check = t0.elapsed();
        let (live_routes, rejected) = match check {
            Ok(Check::Passed) => (routes.to_vec(), BTreeMap::new()),
            Ok(Check::Rejected(output)) => match self.isolate(id, text, routes, output).await {
                Ok((accepted, rejected)) => {
                    let (accepted_text, _) = render(&self.instance, &accepted)?;
                    if let Err(e) = self
                        .runtime
                        .write_file(id, CONF_DIR, CONF_FILE, accepted_text.as_bytes())
                        .await
                    {
                        self.restore(id, state).await;
                        return Err(e);
                    }
                    (accepted, rejected)
                }
                Err(e) => {
                    self.restore(id, state).await;
                    return Err(e);
                }
            },
            Err(e) => {
                self.restore(id, state).await;
                return Err(e);
            }
        };
        let (live_text, version) = render(&self.instance, &live_routes)?;
        if !rejected.is_empty() {
            tracing::warn!(pods = ?rejected.keys().collect::<Vec<_>>(), "nginx rejected some routes; applied the others");
        }
        // Same routes again skip the checks; set once the rest is live (a
        // failed reload below is retried in full).
        let requested = (!rejected.is_empty()).then(|| text.to_string());
        lock(&self.rejected).now = Arc::new(rejected);
        if state.last_applied.as_deref() == Some(live_text.as_str()) {
            // nginx rejected what it rejected before; the rest is live already.
            state.requested = requested;
            return Ok(self.update_routed(&live_routes));
        }
        // `nginx -s reload` only sends SIGHUP to the master process (PID 1 in
        // the container): send it through the engine's kill endpoint, one
        // cheap API call instead of a second exec. The config was checked above.
        self.runtime.signal(id, "HUP").await?;
        let t_signal = t0.elapsed();
        self.wait_live(state.port, &version).await?;
        tracing::debug!(write = ?t_write, check = ?t_check, signal = ?t_signal, live = ?t0.elapsed(), "nginx config applied");
        state.last_applied = Some(live_text);
        state.version = Some(version);
        state.requested = requested;
        *lock(&self.live) = Arc::new(live_routes.iter().map(|r| r.pod.clone()).collect());
        *lock(&self.live_tls) = Arc::new(
            live_routes
                .iter()
                .filter_map(|r| Some((r.pod.clone(), r.tls.as_ref()?.fingerprint.clone())))
                .collect(),
        );
        self.set_routed(routed_ids(&live_routes));
        Ok(true)
    }

    /// The routes with HTTPS for the pods that have a certificate here
    /// (when the ingress publishes HTTPS at all).
    fn with_tls(&self, routes: &[Route], certs: &BTreeMap<String, String>, state: &State) -> Vec<Route> {
        let Some(listen) = self.settings.tls_listen else {
            return routes.to_vec();
        };
        let port = state.tls_port.unwrap_or(listen.port());
        let port_suffix = if port == 443 { String::new() } else { format!(":{port}") };
        routes
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.tls = certs.get(&r.pod).map(|pem| RouteTls {
                    fingerprint: fingerprint(pem),
                    port_suffix: port_suffix.clone(),
                });
                r
            })
            .collect()
    }

    /// Writes the certificate files that changed (mode 0600: they hold keys)
    /// into the container, before the config that names them is checked.
    async fn write_certs(&self, id: &str, certs: &BTreeMap<String, String>, state: &mut State) -> Result<()> {
        if self.settings.tls_listen.is_none() {
            return Ok(());
        }
        for (pod, pem) in certs {
            let print = fingerprint(pem);
            if state.written_certs.get(pod) == Some(&print) {
                continue;
            }
            self.runtime
                .write_private_file(id, NGINX_DIR, &format!("dubernetes/tls/{pod}.pem"), pem.as_bytes())
                .await?;
            state.written_certs.insert(pod.clone(), print);
        }
        // A pod that no longer serves HTTPS (deleted, tls removed, secret
        // replaced by none): its key does not stay behind in the container.
        let gone: Vec<String> = state
            .written_certs
            .keys()
            .filter(|pod| !certs.contains_key(*pod))
            .cloned()
            .collect();
        for pod in gone {
            self.runtime
                .write_private_file(id, NGINX_DIR, &format!("dubernetes/tls/{pod}.pem"), b"")
                .await?;
            state.written_certs.remove(&pod);
        }
        Ok(())
    }

    /// Serves `key_authorization` at `/.well-known/acme-challenge/TOKEN` on
    /// every host's HTTP listener: a file nginx reads per request, so no reload.
    /// The token comes from the ACME server: only base64url characters pass.
    pub(crate) async fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<()> {
        if token.is_empty()
            || token.len() > 256
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::Ingress(format!(
                "the ACME server sent a challenge token that is not base64url ({} bytes); refused",
                token.len()
            )));
        }
        let id = self
            .state
            .lock()
            .await
            .container_id
            .clone()
            .ok_or_else(|| Error::Ingress("no ingress container to answer the ACME challenge".into()))?;
        self.runtime
            .write_file(
                &id,
                NGINX_DIR,
                &format!("dubernetes/acme/{token}"),
                key_authorization.as_bytes(),
            )
            .await
    }

    /// Whether the ingress publishes HTTPS at all.
    pub(crate) fn serves_tls(&self) -> bool {
        self.settings.tls_listen.is_some()
    }

    /// The host port of HTTPS, once the ingress runs with one.
    pub(crate) async fn tls_port(&self) -> Option<u16> {
        u16::try_from(self.published_tls.load(Ordering::Relaxed))
            .ok()
            .filter(|&p| p != 0)
    }

    /// Writes the endpoint files of the pods whose replicas changed, in one
    /// engine call. Live when it returns: nginx reads them per request.
    async fn write_endpoints(&self, id: &str, routes: &[Route], state: &mut State) -> Result<()> {
        // The TCP listeners' files beside the pods' (`tcp_<port>`: no pod has that name).
        let streams = std::mem::take(&mut state.streams);
        let (files, pending) = state.written.changes(
            routes
                .iter()
                .map(|r| (r.pod.as_str(), r.servers.as_slice()))
                .chain(streams.iter().map(|s| (s.key.as_str(), s.servers.as_slice()))),
        );
        state.written.retain(
            &routes
                .iter()
                .map(|r| r.pod.as_str())
                .chain(streams.iter().map(|s| s.key.as_str()))
                .collect(),
        );
        state.streams = streams;
        if files.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match &state.bound {
            Some(dir) => {
                let named = files
                    .into_iter()
                    .map(|(path, content)| (endpoints::file_name(&path).to_string(), content))
                    .collect();
                self.runtime.write_bound_files(dir, named).await?;
            }
            None => self.runtime.write_files(id, endpoints::ENDPOINTS_BASE, &files).await?,
        }
        state.written.commit(pending);
        self.endpoint_updates.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(bound = state.bound.is_some(), took = ?started.elapsed(), "endpoints written");
        Ok(())
    }

    /// Puts the last good config back on disk after a failed apply (best effort:
    /// the running nginx never read the rejected one either way).
    async fn restore(&self, id: &str, state: &State) {
        if let Some(good) = &state.last_applied
            && let Err(e) = self.runtime.write_file(id, CONF_DIR, CONF_FILE, good.as_bytes()).await
        {
            tracing::warn!(error = %e, "putting the last good nginx config back failed");
        }
    }

    /// Checks that nginx still serves the last applied config (someone may have
    /// replaced or reloaded it by hand); if not, forgets it so the next sync
    /// writes and reloads it again. Routes nginx rejected are tried again on
    /// the next sync too (what made nginx reject them may be gone). Returns
    /// whether the config was intact.
    pub(crate) async fn verify(&self) -> bool {
        let mut state = self.state.lock().await;
        state.requested = None;
        let (Some(port), Some(version)) = (state.port, state.version.clone()) else {
            return true;
        };
        let mut intact = matches!(self.probe(SocketAddr::new(self.probe_ip(), port)).await, Ok(v) if v == version);
        if !intact {
            tracing::warn!("the ingress does not serve the config we applied; re-applying it");
            state.last_applied = None;
            state.version = None;
        }
        if let Some(id) = state.container_id.clone() {
            intact &= self.verify_endpoints(&id, &mut state).await;
        }
        intact
    }

    /// Reads the endpoint files back through the container (one archive):
    /// a pod whose files do not route what this process wrote (someone
    /// changed or removed them) makes the next sync write every pod's again.
    async fn verify_endpoints(&self, id: &str, state: &mut State) -> bool {
        if state.written.is_empty() {
            return true;
        }
        let files = match self
            .runtime
            .read_files(id, endpoints::ENDPOINTS_DIR, endpoints::MAX_READ_BYTES)
            .await
        {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "reading the ingress's endpoint files back failed; rewriting them");
                state.written.clear();
                return false;
            }
        };
        let by_name: HashMap<&str, &[u8]> = files
            .iter()
            .map(|(path, content)| (endpoints::file_name(path), content.as_slice()))
            .collect();
        let wrong = state.written.mismatched(|name| by_name.get(name).copied());
        if wrong.is_empty() {
            return true;
        }
        tracing::warn!(pods = ?wrong, "the ingress's endpoint files do not route what was written; rewriting them");
        state.written.clear();
        false
    }

    /// The endpoints directory to bind into a new ingress, ready to use,
    /// when there is one and the engine runs on this machine.
    fn endpoints_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self.settings.endpoints_dir.as_ref()?;
        if !self.runtime.engine_is_local() {
            return None;
        }
        match crate::engine::bind::prepare(dir) {
            Ok(dir) => Some(dir),
            Err(e) => {
                tracing::warn!(error = %e, "the endpoints directory cannot be used; endpoint files go through the engine's archive API");
                None
            }
        }
    }

    /// Whether the container sees what this process writes into `dir` (a
    /// marker file read back through the engine): `Some(dir)` if so.
    async fn check_bound(&self, id: &str, dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let nonce = format!("{:032x}", rand::random::<u128>());
        if let Err(e) = crate::engine::bind::write_marker(dir, endpoints::MARKER, nonce.as_bytes()) {
            tracing::warn!(error = %e, "endpoint files go through the engine's archive API");
            return None;
        }
        let path = format!("{}/{}", endpoints::ENDPOINTS_DIR, endpoints::MARKER);
        match self.runtime.read_files(id, &path, 4096).await {
            Ok(files) if files.len() == 1 && files[0].1 == nonce.as_bytes() => Some(dir.to_path_buf()),
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "the ingress container does not see the endpoints directory (is this server in a container?); endpoint files go through the engine's archive API");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "checking the endpoints directory failed; endpoint files go through the engine's archive API");
                None
            }
        }
    }

    /// Whether endpoint files are renamed in a bound host directory (else
    /// they go through the engine's archive API). Never waits for a sync.
    pub(crate) fn endpoints_bound(&self) -> bool {
        self.bound.load(Ordering::Relaxed)
    }

    fn set_bound(&self, state: &mut State, bound: Option<std::path::PathBuf>) {
        self.bound.store(bound.is_some(), Ordering::Relaxed);
        state.bound = bound;
    }

    fn probe_ip(&self) -> IpAddr {
        match self.settings.listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        }
    }

    /// Whether the live config has this pod's server block: its serving
    /// replicas are routed by the next sync's endpoint write, no reload
    /// needed. Never waits for a sync.
    pub(crate) fn serves_pod(&self, pod: &str) -> bool {
        lock(&self.live).contains(pod)
    }

    /// Whether the live config serves this pod's host over HTTPS with exactly
    /// this certificate file ([`certificate_file`]). Never waits for a sync.
    pub(crate) fn serves_certificate(&self, pod: &str, file: &str) -> bool {
        lock(&self.live_tls)
            .get(pod)
            .is_some_and(|print| *print == fingerprint(file))
    }

    /// The containers the live config routes to. Never waits for a sync.
    pub(crate) fn routed(&self) -> Arc<HashSet<String>> {
        Arc::clone(&self.routed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many configs were made live since start.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many endpoint updates (replica changes without a reload) were written since start.
    pub(crate) fn endpoint_updates(&self) -> u64 {
        self.endpoint_updates.load(Ordering::Relaxed)
    }

    /// Records the containers behind an unchanged live config (routes
    /// nginx rejected left out); returns whether they changed. No reload.
    fn update_routed(&self, routes: &[Route]) -> bool {
        let rejected = self.rejections();
        let live: Vec<Route> = routes
            .iter()
            .filter(|r| !rejected.contains_key(&r.pod))
            .cloned()
            .collect();
        let ids = routed_ids(&live);
        let mut routed = self.routed.lock().unwrap_or_else(|e| e.into_inner());
        if **routed == ids {
            return false;
        }
        *routed = Arc::new(ids);
        true
    }

    fn set_routed(&self, routed: HashSet<String>) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.runtime.metrics().ingress_reloaded();
        *self.routed.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(routed);
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ingress {
    /// Waits until nginx answers with the config `version`: a reload is
    /// asynchronous (new workers start, old ones drain), so "reloaded" is only
    /// true once a fresh connection is served by the new config. Probes go to
    /// the published port on this host's loopback (or the bound address).
    async fn wait_live(&self, port: Option<u16>, version: &str) -> Result<()> {
        let Some(port) = port else { return Ok(()) };
        let addr = SocketAddr::new(self.probe_ip(), port);
        let deadline = tokio::time::Instant::now() + LIVE_TIMEOUT;
        let mut last_error = String::from("no answer");
        let mut in_a_row = 0;
        while tokio::time::Instant::now() < deadline {
            match self.probe(addr).await {
                Ok(v) if v == version => {
                    in_a_row += 1;
                    // Two fresh connections in a row: old workers stopped accepting.
                    if in_a_row >= 2 {
                        return Ok(());
                    }
                    continue;
                }
                Ok(v) => last_error = format!("still serving config {v}"),
                Err(e) => last_error = e.to_string(),
            }
            in_a_row = 0;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(Error::Ingress(format!(
            "nginx on {addr} did not serve config {version} within {LIVE_TIMEOUT:?}: {last_error}"
        )))
    }
}

const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

impl Ingress {
    /// The config version nginx serves on a fresh connection to `addr`.
    async fn probe(&self, addr: SocketAddr) -> std::io::Result<String> {
        match self
            .net
            .http_get(
                addr,
                "/.dubernetes/config-version",
                "dubernetes-probe.invalid",
                Duration::from_secs(2),
            )
            .await?
        {
            (200, body) => Ok(body.trim().to_string()),
            (status, _) => Err(std::io::Error::other(format!("probe answered {status}"))),
        }
    }
}

/// The file nginx reads for a host's HTTPS: the chain, then the key.
pub(crate) fn certificate_file(cert_pem: &str, key_pem: &str) -> String {
    let mut pem = cert_pem.to_string();
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(key_pem);
    pem
}

/// A short hash of a certificate file.
fn fingerprint(pem: &str) -> String {
    Sha256::digest(pem.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn routed_ids(routes: &[Route]) -> HashSet<String> {
    routes.iter().flat_map(|r| r.ids.iter().cloned()).collect()
}

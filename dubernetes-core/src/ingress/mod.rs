//! The nginx ingress: one container per instance, on the instance network,
//! that publishes the HTTP (and HTTPS) port; and one small container per TCP
//! listener of pods' `expose` ([`listeners`]), so that a change of one
//! listener never touches the HTTP ingress or another listener.
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

mod container;
mod endpoints;
mod listeners;
mod reject;
mod render;
mod routing;
mod stream;
mod tls;

pub use listeners::ListenerStatus;
use routing::routed_ids;
pub(crate) use tls::certificate_file;

// For the fake engine (engine/fake.rs).
#[cfg(any(test, feature = "testing"))]
pub(crate) use endpoints::{latest as latest_endpoints, slot_path as endpoints_slot};

pub(crate) use listeners::{ListenerChange, ROLE_LISTENER};
pub(crate) use reject::RejectionChange;
use reject::{Check, Rejections};
pub(crate) use render::{Route, RouteTls, render};
pub(crate) use stream::Stream;

use crate::engine::{BindDir, Network};
use crate::error::{Error, Result};
use crate::labels::{LABEL_INGRESS_CONFIG, LABEL_INGRESS_ENDPOINTS, LABEL_INSTANCE, LABEL_ROLE};
use crate::owned_engine::{ContainerSpec, Observed, Runtime};
use crate::sync::lock;

/// The default ingress image: the official nginx image, pulled if missing.
pub const DEFAULT_INGRESS_IMAGE: &str = "nginx:1.27-alpine";
const CONF_DIR: &str = "/etc/nginx/conf.d";
const CONF_FILE: &str = "default.conf";

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
    pub limits: crate::owned_engine::ContainerLimits,
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
    pub fn with_limits(mut self, limits: crate::owned_engine::ContainerLimits) -> Self {
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
            limits: crate::owned_engine::ContainerLimits::default(),
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
            limits: crate::owned_engine::ContainerLimits::default(),
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
    /// The TCP listener containers (pods' `expose`, see [`listeners`]):
    /// their own lock, so the HTTP side's state is never held for them.
    listeners: Mutex<listeners::State>,
    /// By pod, why its listeners could not start (what the status shows).
    listener_failures: StdMutex<Arc<BTreeMap<String, String>>>,
    /// Every wanted listener and how it stands, as of the last sync.
    listener_table: StdMutex<Arc<Vec<ListenerStatus>>>,
    /// Failed and started listeners not yet reported (events).
    listener_changes: StdMutex<Vec<(String, ListenerChange)>>,
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
            listeners: Mutex::new(listeners::State::default()),
            listener_failures: StdMutex::new(Arc::new(BTreeMap::new())),
            listener_table: StdMutex::new(Arc::new(Vec::new())),
            listener_changes: StdMutex::new(Vec::new()),
        }
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
        let hash = self.config_hash();
        let healthy = observed.iter().find(|c| {
            c.name == self.name
                && c.state == crate::owned_engine::ContainerState::Running
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
                let files = self.static_files(&c.id).await?;
                self.runtime.write_files(&c.id, "/etc", &files).await?;
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
                let id = self.create(&mut state).await?;
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
        Ok(Some(self.route_replicas(&id, routes, &mut state).await?))
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
        drop(state);
        intact &= self.verify_listeners().await;
        intact
    }

    /// How many configs were made live since start.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many endpoint updates (replica changes without a reload) were written since start.
    pub(crate) fn endpoint_updates(&self) -> u64 {
        self.endpoint_updates.load(Ordering::Relaxed)
    }
}

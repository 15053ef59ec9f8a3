//! The nginx ingress: one container per instance, on the instance network,
//! the only container that publishes a port.
//!
//! Its config is data: rendered by askama from `templates/nginx.conf`,
//! written into the container through the archive API (no bind mount, which
//! breaks when a file is replaced by rename), checked with `nginx -t` before
//! it goes live, and reloaded only when it changed. A rejected config is
//! rolled back to the last good one on disk; the running nginx never saw it.
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

use askama::Template;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::engine::Network;
use crate::error::{Error, Result};
use crate::runtime::{ContainerSpec, LABEL_INGRESS_CONFIG, LABEL_INSTANCE, LABEL_ROLE, Observed, Runtime};

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
    pub limits: crate::runtime::ContainerLimits,
}

impl IngressSettings {
    /// The ingress container's log rotation, pids limit and no-new-privileges.
    pub fn with_limits(mut self, limits: crate::runtime::ContainerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Settings with the given image and listen address.
    pub fn new(image: impl Into<String>, listen: SocketAddr) -> Self {
        IngressSettings {
            image: image.into(),
            listen,
            limits: crate::runtime::ContainerLimits::default(),
        }
    }
}

impl Default for IngressSettings {
    fn default() -> Self {
        IngressSettings {
            image: DEFAULT_INGRESS_IMAGE.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 80)),
            limits: crate::runtime::ContainerLimits::default(),
        }
    }
}

/// One host routed to one pod's ready replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub pod: String,
    pub host: String,
    /// `ip:port` of each ready replica.
    pub servers: Vec<String>,
    /// Container ids behind `servers`.
    pub ids: Vec<String>,
}

impl Route {
    /// A route; server addresses are built from parsed IPs only.
    #[cfg(test)]
    pub(crate) fn new(pod: &str, host: &str, mut servers: Vec<(IpAddr, u16)>) -> Route {
        Self::with_ids(pod, host, servers.drain(..).map(|s| (s, String::new())).collect())
    }

    /// A route whose servers are the given containers.
    pub(crate) fn with_ids(pod: &str, host: &str, mut servers: Vec<((IpAddr, u16), String)>) -> Route {
        servers.sort();
        servers.dedup_by(|a, b| a.0 == b.0);
        let ids = servers
            .iter()
            .map(|(_, id)| id.clone())
            .filter(|id| !id.is_empty())
            .collect();
        let servers: Vec<(IpAddr, u16)> = servers.into_iter().map(|(s, _)| s).collect();
        Route {
            ids,
            pod: pod.to_string(),
            host: host.to_string(),
            servers: servers
                .into_iter()
                .map(|(ip, port)| SocketAddr::new(ip, port).to_string())
                .collect(),
        }
    }
}

/// nginx's server-name hash sizes for a set of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HashSizes {
    /// `server_names_hash_bucket_size`: bytes per bucket.
    pub bucket_size: usize,
    /// `server_names_hash_max_size`: most buckets nginx may use.
    pub max_size: usize,
}

/// Bytes one exact name of `len` characters takes in an nginx hash bucket on
/// a 64-bit build (`NGX_HASH_ELT_SIZE` in `ngx_hash.c`): a value pointer, a
/// 2-byte length and the name, aligned to a pointer.
fn hash_element_size(len: usize) -> usize {
    8 + (len + 2).div_ceil(8) * 8
}

/// Sizes nginx's server-name hash so every host name the API accepts fits
/// (RFC 1123: up to 253 characters). nginx refuses the whole config when one
/// name does not fit a bucket ("could not build server_names_hash"): a bucket
/// must hold its largest element plus the terminating null pointer. The
/// default bucket (64 bytes on x86_64, one cache line) holds names of at most
/// 46 characters; a 253-character name needs 512. Powers of two, as nginx's
/// documentation asks, and never below the default. `max_size` allows about
/// eight buckets per name (at least nginx's default 512), so nginx finds a
/// hash with few collisions quickly; the memory is a few bytes per bucket.
pub(crate) fn hash_sizes(routes: &[Route]) -> HashSizes {
    let longest = routes.iter().map(|r| r.host.len()).max().unwrap_or(0).max(1);
    let bucket_size = (hash_element_size(longest) + 8).next_power_of_two().max(64);
    // +1: the default server's `_`.
    let max_size = ((routes.len() + 1) * 8).next_power_of_two().max(512);
    HashSizes { bucket_size, max_size }
}

#[derive(Template)]
#[template(path = "nginx.conf", escape = "none")]
struct NginxConf<'a> {
    instance: &'a str,
    version: &'a str,
    routes: &'a [Route],
    hash: HashSizes,
}

/// A short hash of the routes: served by the config itself so the
/// controller can tell when a reload is live.
fn version_of(instance: &str, routes: &[Route]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(instance.as_bytes());
    for r in routes {
        hasher.update(format!("{}|{}|{}\n", r.pod, r.host, r.servers.join(",")).as_bytes());
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Renders the nginx config for these routes; returns it with its version.
pub(crate) fn render(instance: &str, routes: &[Route]) -> Result<(String, String)> {
    let version = version_of(instance, routes);
    let text = NginxConf {
        instance,
        version: &version,
        routes,
        hash: hash_sizes(routes),
    }
    .render()
    .map_err(|e| Error::Ingress(format!("rendering nginx.conf: {e}")))?;
    Ok((text, version))
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
}

/// Most `nginx -t` runs spent finding the routes of a rejected config (the
/// first check of the whole config not included). One culprit among `n`
/// routes takes 1–3 checks when nginx names a line of ours, about
/// `2·log2(n)` otherwise. Routes still unresolved when the budget runs out
/// are left out too, and reported as such.
pub(crate) const MAX_ISOLATION_CHECKS: usize = 24;

/// Of those, most spent following the lines nginx names before bisecting.
const MAX_BY_LINE: usize = 8;

/// A pod whose route nginx rejected, with nginx's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RejectionChange {
    /// Newly rejected, or rejected for another reason than before.
    Rejected(String),
    /// No longer rejected (applied, or the pod lost its route).
    Cleared,
}

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
    /// Pods whose routes the live config leaves out because nginx rejected
    /// them, with nginx's message; and what the controller was last told.
    rejected: StdMutex<Rejections>,
    /// Configs made live (reloads and fresh starts), for benchmarks and metrics.
    reloads: AtomicU64,
    /// `state.port` (0: none), readable without waiting for a sync that is
    /// stuck on a frozen engine.
    published: std::sync::atomic::AtomicU32,
}

#[derive(Debug, Default)]
struct Rejections {
    now: Arc<BTreeMap<String, String>>,
    reported: BTreeMap<String, String>,
}

/// The result of one `nginx -t`.
enum Check {
    Passed,
    Rejected(String),
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
            rejected: StdMutex::new(Rejections::default()),
            reloads: AtomicU64::new(0),
            published: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn config_hash(&self) -> String {
        let l = &self.settings.limits;
        // The host limits count too: an ingress made before them (or with
        // other flags) is replaced once, so it runs with what the flags say.
        let digest = Sha256::digest(format!(
            "{}|{}|{}|log={}x{}|pids={:?}|nnp={}",
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
    pub(crate) async fn sync(&self, routes: &[Route], observed: &[&Observed]) -> Result<bool> {
        let (text, _) = render(&self.instance, routes)?;
        let mut state = self.state.lock().await;
        let hash = self.config_hash();
        let healthy = observed.iter().find(|c| {
            c.name == self.name
                && c.state == crate::runtime::ContainerState::Running
                && c.labels.get(LABEL_INGRESS_CONFIG) == Some(&hash)
        });
        match healthy {
            Some(c) if state.container_id.as_deref() == Some(c.id.as_str()) => {
                // The same config as live (or as last asked for, when nginx
                // rejected part of it): nothing to write. But the containers
                // behind it may be others: a replacement replica can get the
                // address of the one it replaces. nginx already routes to it.
                if state.last_applied.as_deref() == Some(text.as_str())
                    || state.requested.as_deref() == Some(text.as_str())
                {
                    return Ok(self.update_routed(routes));
                }
                self.apply(&c.id, &text, routes, &mut state).await
            }
            Some(c) => {
                // Adopted (e.g. after a server restart): deliver our config once.
                state.container_id = Some(c.id.clone());
                state.last_applied = None;
                state.requested = None;
                state.port = self.runtime.published_port(&c.id, 80).await?;
                self.published.store(state.port.map_or(0, u32::from), Ordering::Relaxed);
                self.apply(&c.id, &text, routes, &mut state).await?;
                Ok(true)
            }
            None => {
                for c in observed {
                    self.runtime.remove(&c.id).await?;
                }
                let id = self.create(&mut state).await?;
                self.apply(&id, &text, routes, &mut state).await?;
                Ok(true)
            }
        }
    }

    /// Creates and starts a fresh ingress serving no routes (a config that
    /// cannot be rejected for anything a pod wrote); [`Ingress::apply`] then
    /// adds the routes. Returns the container id.
    async fn create(&self, state: &mut State) -> Result<String> {
        state.container_id = None;
        state.last_applied = None;
        state.requested = None;
        *self.routed.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(HashSet::new());
        self.runtime.ensure_image(&self.settings.image).await.map_err(|e| {
            Error::Ingress(format!(
                "the ingress image {} is not available ({e}); build one (scripts/build-images.sh builds dubernetes/nginx:local) or pass --ingress-image with an image you have",
                self.settings.image
            ))
        })?;
        let labels = HashMap::from([
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_ROLE.to_string(), "ingress".to_string()),
            (LABEL_INGRESS_CONFIG.to_string(), self.config_hash()),
        ]);
        let spec = ContainerSpec {
            name: self.name.clone(),
            image: self.settings.image.clone(),
            port: 80,
            labels,
            network: self.network.clone(),
            limits: self.settings.limits,
            publish: Some(self.settings.listen),
            ..Default::default()
        };
        let (text, version) = render(&self.instance, &[])?;
        let id = self.runtime.create(&spec).await?;
        // Written before the start, so nginx comes up serving our config.
        self.runtime
            .write_file(&id, CONF_DIR, CONF_FILE, text.as_bytes())
            .await?;
        self.runtime.start(&id).await?;
        if let Check::Rejected(output) = self.check(&id).await? {
            return Err(Error::Ingress(format!(
                "nginx -t rejected the generated config even without routes (does the image's nginx.conf set server_names_hash_* itself?): {output}"
            )));
        }
        state.port = self.runtime.published_port(&id, 80).await?;
        self.published.store(state.port.map_or(0, u32::from), Ordering::Relaxed);
        self.wait_live(state.port, &version).await?;
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

    /// Writes nothing; runs `nginx -t` on what is on disk.
    async fn check(&self, id: &str) -> Result<Check> {
        let (code, output) = self.runtime.exec(id, &["nginx", "-t", "-q"]).await?;
        Ok(if code == 0 {
            Check::Passed
        } else {
            Check::Rejected(nginx_error(&output))
        })
    }

    async fn check_routes(&self, id: &str, routes: &[Route]) -> Result<(Check, String)> {
        let (text, _) = render(&self.instance, routes)?;
        self.runtime
            .write_file(id, CONF_DIR, CONF_FILE, text.as_bytes())
            .await?;
        Ok((self.check(id).await?, text))
    }

    /// Finds the routes that make nginx reject the config `text` of `routes`
    /// (rejected with `output`). Returns the routes to apply (a set nginx
    /// accepted) and the rejected pods with nginx's message. First the line
    /// nginx names, if it is inside one route's block; then bisection of the
    /// remaining routes. At most [`MAX_ISOLATION_CHECKS`] checks.
    async fn isolate(
        &self,
        id: &str,
        text: &str,
        routes: &[Route],
        output: String,
    ) -> Result<(Vec<Route>, BTreeMap<String, String>)> {
        let mut budget = MAX_ISOLATION_CHECKS;
        let mut rejected: BTreeMap<String, String> = BTreeMap::new();
        // 1. The line nginx names, while it points into a route.
        let mut text = text.to_string();
        let mut output = output;
        let mut remaining: Vec<Route> = routes.to_vec();
        let mut by_line = 0;
        while budget > 0 && by_line < MAX_BY_LINE {
            by_line += 1;
            let Some(pod) = error_line(&output).and_then(|line| route_at_line(&text, line)) else {
                break;
            };
            if rejected.contains_key(&pod) {
                break;
            }
            rejected.insert(pod.clone(), output.clone());
            remaining.retain(|r| r.pod != pod);
            budget -= 1;
            let (check, tried) = self.check_routes(id, &remaining).await?;
            match check {
                Check::Passed => {
                    tracing::info!(checks = MAX_ISOLATION_CHECKS - budget, rejected = ?rejected.keys().collect::<Vec<_>>(), "isolated the routes nginx rejects from the line it names");
                    return Ok((remaining, rejected));
                }
                Check::Rejected(next) => {
                    output = next;
                    text = tried;
                }
            }
        }
        // 2. Is it any route at all?
        if budget > 0 {
            budget -= 1;
            if let (Check::Rejected(output), _) = self.check_routes(id, &[]).await? {
                return Err(Error::Ingress(format!(
                    "nginx -t rejects the config even without routes, kept the last good one: {output}"
                )));
            }
        }
        // 3. Bisection: a group that passes with what is accepted so far joins
        // it; a rejected single route is a culprit; a rejected group is split.
        let mut accepted: Vec<usize> = Vec::new();
        let mut groups: Vec<Vec<usize>> = vec![(0..remaining.len()).collect()];
        while let Some(group) = groups.pop() {
            if group.is_empty() {
                continue;
            }
            if budget == 0 {
                for i in group {
                    rejected.insert(
                        remaining[i].pod.clone(),
                        format!(
                            "nginx rejected a config with this route and others, and the culprit was not found within {MAX_ISOLATION_CHECKS} checks: {output}"
                        ),
                    );
                }
                continue;
            }
            budget -= 1;
            let mut trial: Vec<usize> = accepted.iter().chain(&group).copied().collect();
            trial.sort_unstable();
            let trial_routes: Vec<Route> = trial.iter().map(|&i| remaining[i].clone()).collect();
            match self.check_routes(id, &trial_routes).await?.0 {
                Check::Passed => accepted = trial,
                Check::Rejected(message) if group.len() == 1 => {
                    rejected.insert(remaining[group[0]].pod.clone(), message);
                }
                Check::Rejected(_) => {
                    let (a, b) = group.split_at(group.len() / 2);
                    // `a` is tried first (the stack pops the last one pushed).
                    groups.push(b.to_vec());
                    groups.push(a.to_vec());
                }
            }
        }
        accepted.sort_unstable();
        tracing::info!(checks = MAX_ISOLATION_CHECKS - budget, rejected = ?rejected.keys().collect::<Vec<_>>(), "isolated the routes nginx rejects by bisection");
        Ok((accepted.iter().map(|&i| remaining[i].clone()).collect(), rejected))
    }

    /// Pods whose route the live config leaves out because nginx rejected it,
    /// with nginx's message. Never waits for a sync.
    pub(crate) fn rejections(&self) -> Arc<BTreeMap<String, String>> {
        Arc::clone(&lock(&self.rejected).now)
    }

    /// What changed in [`Ingress::rejections`] since the last call, by pod.
    pub(crate) fn take_rejection_changes(&self) -> Vec<(String, RejectionChange)> {
        let mut r = lock(&self.rejected);
        let now = Arc::clone(&r.now);
        let mut changes = Vec::new();
        for (pod, message) in now.iter() {
            if r.reported.get(pod) != Some(message) {
                changes.push((pod.clone(), RejectionChange::Rejected(message.clone())));
            }
        }
        for pod in r.reported.keys() {
            if !now.contains_key(pod) {
                changes.push((pod.clone(), RejectionChange::Cleared));
            }
        }
        r.reported = (*now).clone();
        changes
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
        let intact = matches!(self.probe(SocketAddr::new(self.probe_ip(), port)).await, Ok(v) if v == version);
        if !intact {
            tracing::warn!("the ingress does not serve the config we applied; re-applying it");
            state.last_applied = None;
            state.version = None;
        }
        intact
    }

    fn probe_ip(&self) -> IpAddr {
        match self.settings.listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        }
    }

    /// The containers the live config routes to. Never waits for a sync.
    pub(crate) fn routed(&self) -> Arc<HashSet<String>> {
        Arc::clone(&self.routed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many configs were made live since start.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
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
        *self.routed.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(routed);
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// nginx's complaint without its boilerplate: the `[emerg]` lines, without
/// the timestamp and process id an `error_log` setting may put before them
/// (so the same problem reads the same every time).
fn nginx_error(output: &str) -> String {
    let lines: Vec<String> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with("test failed"))
        .map(|l| match l.find(" [") {
            // "2026/12/01 08:02:59 [emerg] 536#536: text" -> "[emerg] text"
            Some(at) if !l.starts_with("nginx:") => {
                let rest = &l[at + 1..];
                match rest.split_once("] ") {
                    Some((level, text)) => {
                        let text = match text.split_once(": ") {
                            Some((pid, text)) if pid.chars().all(|c| c.is_ascii_digit() || c == '#') => text,
                            _ => text,
                        };
                        format!("{level}] {text}")
                    }
                    None => rest.to_string(),
                }
            }
            _ => l.trim_start_matches("nginx: ").to_string(),
        })
        .collect();
    let text = lines.join("; ");
    if text.is_empty() {
        output.trim().to_string()
    } else {
        text
    }
}

/// The line of our config file an nginx error names (`... in /etc/nginx/conf.d/default.conf:12`).
fn error_line(output: &str) -> Option<usize> {
    let marker = format!("{CONF_DIR}/{CONF_FILE}:");
    let at = output.find(&marker)? + marker.len();
    let digits: String = output[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The pod whose block holds line `line` (1-based) of a rendered config: the
/// template marks every route's blocks with `# route <pod>` and the default
/// server with `# default server`.
fn route_at_line(text: &str, line: usize) -> Option<String> {
    let mut current = None;
    for (n, l) in text.lines().enumerate() {
        if let Some(pod) = l.strip_prefix("# route ") {
            current = Some(pod.trim().to_string());
        } else if l.starts_with("# default server") {
            current = None;
        }
        if n + 1 == line {
            return current;
        }
    }
    None
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

fn routed_ids(routes: &[Route]) -> HashSet<String> {
    routes.iter().flat_map(|r| r.ids.iter().cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn renders_one_upstream_per_pod_with_replicas() {
        let routes = [
            Route::new("web", "web.local", vec![(ip("172.18.0.3"), 80), (ip("172.18.0.2"), 80)]),
            Route::new("api", "api.example.com", vec![(ip("172.18.0.4"), 8080)]),
        ];
        let (conf, _) = render("t", &routes).expect("render");
        assert!(
            conf.contains(
                "upstream pod_web {\n    server 172.18.0.2:80 max_fails=1 fail_timeout=1s;\n    server 172.18.0.3:80"
            ),
            "{conf}"
        );
        assert!(conf.contains("server 172.18.0.4:8080"), "{conf}");
        assert!(conf.contains("server_name web.local;"), "{conf}");
        assert!(conf.contains("proxy_pass http://pod_web;"), "{conf}");
        assert!(conf.contains("proxy_pass http://pod_api;"), "{conf}");
        assert_eq!(conf.matches("\nupstream ").count(), 2);
    }

    #[test]
    fn unknown_hosts_get_404() {
        let (conf, _) = render("t", &[]).expect("render");
        assert!(conf.contains("listen 80 default_server;"));
        assert!(conf.contains("return 404"));
        assert!(!conf.contains("upstream"));
    }

    #[test]
    fn a_host_without_ready_replicas_gets_503_and_no_empty_upstream() {
        let (conf, _) = render("t", &[Route::new("web", "web.local", vec![])]).expect("render");
        assert!(conf.contains("server_name web.local;"), "{conf}");
        assert!(conf.contains("return 503"), "{conf}");
        assert!(!conf.contains("upstream pod_web"), "{conf}");
    }

    #[test]
    fn rendering_is_deterministic() {
        let a = [Route::new(
            "web",
            "web.local",
            vec![(ip("10.0.0.2"), 80), (ip("10.0.0.1"), 80)],
        )];
        let b = [Route::new(
            "web",
            "web.local",
            vec![(ip("10.0.0.1"), 80), (ip("10.0.0.2"), 80)],
        )];
        assert_eq!(render("t", &a).expect("render"), render("t", &b).expect("render"));
    }

    /// A valid host name of exactly `len` characters (labels of at most 63).
    fn host_of(len: usize, fill: char) -> String {
        let mut labels = Vec::new();
        let mut left = len;
        while left > 0 {
            let mut n = left.min(63);
            // Never leave a single character for a label after a dot.
            if left - n == 1 {
                n -= 1;
            }
            labels.push(fill.to_string().repeat(n));
            left = left.saturating_sub(n + 1);
        }
        labels.join(".")
    }

    #[test]
    fn the_hash_fits_every_rfc_1123_length() {
        for len in 1..=253 {
            let host = host_of(len, 'a');
            assert_eq!(host.len(), len);
            let sizes = hash_sizes(&[Route::new("p", &host, vec![])]);
            // nginx's own check (ngx_hash_init): element + terminating pointer fit a bucket.
            assert!(sizes.bucket_size >= hash_element_size(len) + 8, "{len}");
            assert!(sizes.bucket_size.is_power_of_two() && sizes.bucket_size >= 64);
            assert!(sizes.bucket_size <= 512, "{len}: {}", sizes.bucket_size);
        }
        // Measured with nginx 1.22 (`nginx -t`): 46 fits the default 64, 47 and the
        // 51-character preview host need 128, 200 needs 256, 253 needs 512.
        let bucket = |len| hash_sizes(&[Route::new("p", &host_of(len, 'a'), vec![])]).bucket_size;
        assert_eq!(bucket(46), 64);
        assert_eq!(bucket(47), 128);
        assert_eq!(bucket("feature-login-redesign.preview.staging.example.com".len()), 128);
        assert_eq!(bucket(200), 256);
        assert_eq!(bucket(253), 512);
        let many: Vec<Route> = (0..1000)
            .map(|i| Route::new("p", &format!("h{i}.local"), vec![]))
            .collect();
        assert!(hash_sizes(&many).max_size >= 8 * 1000);
        let (conf, _) = render("t", &many[..2]).expect("render");
        assert!(
            conf.contains("server_names_hash_bucket_size 64;\nserver_names_hash_max_size 512;"),
            "{conf}"
        );
    }

    #[test]
    fn an_error_line_maps_to_its_route() {
        let routes = [
            Route::new("web", "web.local", vec![(ip("172.18.0.2"), 80)]),
            Route::new("api", "api.local", vec![]),
        ];
        let (conf, _) = render("t", &routes).expect("render");
        let line_of = |needle: &str| conf.lines().position(|l| l.contains(needle)).expect(needle) + 1;
        assert_eq!(route_at_line(&conf, line_of("upstream pod_web")), Some("web".into()));
        assert_eq!(
            route_at_line(&conf, line_of("server 172.18.0.2:80")),
            Some("web".into())
        );
        assert_eq!(
            route_at_line(&conf, line_of("server_name api.local")),
            Some("api".into())
        );
        assert_eq!(
            route_at_line(&conf, line_of("proxy_pass http://pod_web")),
            Some("web".into())
        );
        assert_eq!(route_at_line(&conf, line_of("server_name _;")), None);
        assert_eq!(route_at_line(&conf, line_of("server_names_hash_bucket_size")), None);
        let output = "nginx: [emerg] duplicate upstream \"pod_web\" in /etc/nginx/conf.d/default.conf:12\nnginx: configuration file /etc/nginx/nginx.conf test failed\n";
        assert_eq!(error_line(output), Some(12));
        assert_eq!(
            nginx_error(output),
            "[emerg] duplicate upstream \"pod_web\" in /etc/nginx/conf.d/default.conf:12"
        );
        assert_eq!(
            nginx_error(
                "2026/12/01 08:02:59 [emerg] 536#536: duplicate upstream \"pod_bad\" in /etc/nginx/conf.d/default.conf:12\nnginx: configuration file /etc/nginx/nginx.conf test failed"
            ),
            "[emerg] duplicate upstream \"pod_bad\" in /etc/nginx/conf.d/default.conf:12"
        );
        assert_eq!(error_line("nginx: [emerg] could not build server_names_hash"), None);
        assert_eq!(error_line("in /etc/nginx/conf.d/other.conf:3"), None);
    }

    #[test]
    fn ipv6_replicas_are_bracketed() {
        let (conf, _) = render("t", &[Route::new("web", "w.local", vec![(ip("fd00::2"), 80)])]).expect("render");
        assert!(conf.contains("server [fd00::2]:80"), "{conf}");
    }
}

//! The nginx ingress: one container per instance, on the instance network,
//! the only container that publishes a port.
//!
//! Its config is data: rendered by askama from `templates/nginx.conf`,
//! written into the container through the archive API (no bind mount, which
//! breaks when a file is replaced by rename), checked with `nginx -t` before
//! it goes live, and reloaded only when it changed. A rejected config is
//! rolled back to the last good one on disk; the running nginx never saw it.

use std::collections::{HashMap, HashSet};
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

#[derive(Template)]
#[template(path = "nginx.conf", escape = "none")]
struct NginxConf<'a> {
    instance: &'a str,
    version: &'a str,
    routes: &'a [Route],
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
    port: Option<u16>,
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
    /// Configs made live (reloads and fresh starts), for benchmarks and metrics.
    reloads: AtomicU64,
    /// `state.port` (0: none), readable without waiting for a sync that is
    /// stuck on a frozen engine.
    published: std::sync::atomic::AtomicU32,
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
    /// exactly `routes`. `observed` is this instance's ingress containers.
    pub(crate) async fn sync(&self, routes: &[Route], observed: &[&Observed]) -> Result<bool> {
        let (text, version) = render(&self.instance, routes)?;
        let mut state = self.state.lock().await;
        let hash = self.config_hash();
        let healthy = observed.iter().find(|c| {
            c.name == self.name
                && c.state == crate::runtime::ContainerState::Running
                && c.labels.get(LABEL_INGRESS_CONFIG) == Some(&hash)
        });
        match healthy {
            Some(c) if state.container_id.as_deref() == Some(c.id.as_str()) => {
                if state.last_applied.as_deref() == Some(text.as_str()) {
                    return Ok(false);
                }
                self.apply(&c.id, &text, &version, routes, &mut state).await?;
                Ok(true)
            }
            Some(c) => {
                // Adopted (e.g. after a server restart): deliver our config once.
                state.container_id = Some(c.id.clone());
                state.last_applied = None;
                state.port = self.runtime.published_port(&c.id, 80).await?;
                self.published.store(state.port.map_or(0, u32::from), Ordering::Relaxed);
                self.apply(&c.id, &text, &version, routes, &mut state).await?;
                Ok(true)
            }
            None => {
                for c in observed {
                    self.runtime.remove(&c.id).await?;
                }
                self.create(&text, &version, routes, &mut state).await?;
                Ok(true)
            }
        }
    }

    async fn create(&self, text: &str, version: &str, routes: &[Route], state: &mut State) -> Result<()> {
        state.container_id = None;
        state.last_applied = None;
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
        let id = self.runtime.create(&spec).await?;
        // Written before the start, so nginx comes up serving our routes.
        self.runtime
            .write_file(&id, CONF_DIR, CONF_FILE, text.as_bytes())
            .await?;
        self.runtime.start(&id).await?;
        let (code, output) = self.runtime.exec(&id, &["nginx", "-t", "-q"]).await?;
        if code != 0 {
            return Err(Error::Ingress(format!(
                "nginx -t rejected the generated config: {}",
                output.trim()
            )));
        }
        state.port = self.runtime.published_port(&id, 80).await?;
        self.published.store(state.port.map_or(0, u32::from), Ordering::Relaxed);
        self.wait_live(state.port, version).await?;
        state.container_id = Some(id);
        state.last_applied = Some(text.to_string());
        state.version = Some(version.to_string());
        self.set_routed(routed_ids(routes));
        Ok(())
    }

    async fn apply(&self, id: &str, text: &str, version: &str, routes: &[Route], state: &mut State) -> Result<()> {
        let t0 = std::time::Instant::now();
        self.runtime
            .write_file(id, CONF_DIR, CONF_FILE, text.as_bytes())
            .await?;
        let t_write = t0.elapsed();
        let (code, output) = self.runtime.exec(id, &["nginx", "-t", "-q"]).await?;
        let t_check = t0.elapsed();
        if code != 0 {
            if let Some(good) = &state.last_applied {
                self.runtime
                    .write_file(id, CONF_DIR, CONF_FILE, good.as_bytes())
                    .await?;
            }
            return Err(Error::Ingress(format!(
                "nginx -t rejected the new config, kept the last good one: {}",
                output.trim()
            )));
        }
        // `nginx -s reload` only sends SIGHUP to the master process (PID 1 in
        // the container): send it through the engine's kill endpoint, one
        // cheap API call instead of a second exec. The config was checked above.
        self.runtime.signal(id, "HUP").await?;
        let t_signal = t0.elapsed();
        self.wait_live(state.port, version).await?;
        tracing::debug!(write = ?t_write, check = ?t_check, signal = ?t_signal, live = ?t0.elapsed(), "nginx config applied");
        state.last_applied = Some(text.to_string());
        state.version = Some(version.to_string());
        self.set_routed(routed_ids(routes));
        Ok(())
    }

    /// Checks that nginx still serves the last applied config (someone may have
    /// replaced or reloaded it by hand); if not, forgets it so the next sync
    /// writes and reloads it again. Returns whether it was intact.
    pub(crate) async fn verify(&self) -> bool {
        let mut state = self.state.lock().await;
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

    fn set_routed(&self, routed: HashSet<String>) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        *self.routed.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(routed);
    }
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

    #[test]
    fn ipv6_replicas_are_bracketed() {
        let (conf, _) = render("t", &[Route::new("web", "w.local", vec![(ip("fd00::2"), 80)])]).expect("render");
        assert!(conf.contains("server [fd00::2]:80"), "{conf}");
    }
}

//! The ingress container: the files it starts with (the router its image can
//! run), its creation, where its endpoint files go (a bound host directory,
//! checked, or the engine's archive API), and how a config is seen live.

use super::*;

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

/// The endpoint-file reader both njs routers import: the HTTP ingress's
/// (`ingress.js`) and the TCP listeners' (`ingress-stream.js`).
pub(super) const ENDPOINTS_JS: (&str, &str) = (
    "dubernetes/ingress-endpoints.js",
    include_str!("../../../templates/ingress-endpoints.js"),
);

/// With an image without it (the official nginx images have njs only): the
/// same with njs, which reads the files per request and has no keep-alive.
const NJS_FILES: [(&str, &str); 5] = [
    (
        "nginx/nginx.conf",
        include_str!("../../../templates/nginx-main-njs.conf"),
    ),
    ("dubernetes/ingress.js", include_str!("../../../templates/ingress.js")),
    ENDPOINTS_JS,
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

const LIVE_TIMEOUT: Duration = Duration::from_secs(15);

impl Ingress {
    /// The ingress image (of the HTTP ingress and the TCP listeners) is
    /// present, pulled if missing; else an error that says how to get one.
    pub(super) async fn ensure_ingress_image(&self) -> Result<()> {
        self.runtime
            .ensure_image(&self.settings.image, &crate::engine::Pull::if_missing())
            .await
            .map_err(|e| {
                Error::Ingress(format!(
                    "the ingress image {} is not available ({e}); build one (scripts/build-images.sh builds dubernetes/nginx:local-4) or pass --ingress-image with an image you have",
                    self.settings.image
                ))
            })
    }

    /// What fixes an ingress container: a container made with other settings is replaced.
    pub(super) fn config_hash(&self) -> String {
        let l = &self.settings.limits;
        // The host limits count too: an ingress made before them (or with
        // other flags) is replaced once, so it runs with what the flags say.
        let tls = self
            .settings
            .tls_listen
            .map(|t| format!("|tls={t}"))
            .unwrap_or_default();
        let digest = Sha256::digest(format!(
            "{}|{}|{}|{LAYOUT}|log={}x{}|pids={:?}|nnp={}{tls}",
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

    /// The files to write under `/etc` into container `id` (created from our
    /// image setting): [`STATIC_FILES`] and the router its image can run.
    pub(super) async fn static_files(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let lua = (self.runtime.read_files(id, LUA_PROBE, 1 << 20).await).is_ok_and(|f| !f.is_empty());
        tracing::debug!(image = %self.settings.image, lua, "ingress router");
        let router: &[(&str, &str)] = if lua { &LUA_FILES } else { &NJS_FILES };
        Ok(STATIC_FILES
            .iter()
            .chain(router)
            .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
            .collect())
    }

    /// Creates and starts a fresh ingress serving no routes (a config that
    /// cannot be rejected for anything a pod wrote); [`Ingress::apply`] then
    /// adds the routes. Returns the container id.
    pub(super) async fn create(&self, state: &mut State) -> Result<String> {
        state.container_id = None;
        state.last_applied = None;
        state.requested = None;
        state.written.clear();
        *lock(&self.live) = Arc::new(HashSet::new());
        *lock(&self.live_tls) = Arc::new(HashMap::new());
        self.set_bound(state, None);
        *lock(&self.routed) = Arc::new(HashSet::new());
        self.ensure_ingress_image().await?;
        let mut labels = HashMap::from([
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
            (LABEL_ROLE.to_string(), "ingress".to_string()),
            (LABEL_INGRESS_CONFIG.to_string(), self.config_hash()),
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
            let mut files = self.static_files(&id).await?;
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
        state.container_id = Some(id.clone());
        state.last_applied = Some(text);
        state.version = Some(version);
        Ok(id)
    }

    /// The endpoints directory to bind into a new ingress, ready to use,
    /// when there is one and the engine runs on this machine.
    pub(super) fn endpoints_dir(&self) -> Option<std::path::PathBuf> {
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
    pub(super) async fn check_bound(&self, id: &str, dir: &std::path::Path) -> Option<std::path::PathBuf> {
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

    pub(super) fn set_bound(&self, state: &mut State, bound: Option<std::path::PathBuf>) {
        self.bound.store(bound.is_some(), Ordering::Relaxed);
        state.bound = bound;
    }

    pub(super) fn probe_ip(&self) -> IpAddr {
        match self.settings.listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        }
    }

    /// Waits until nginx answers with the config `version`: a reload is
    /// asynchronous (new workers start, old ones drain), so "reloaded" is only
    /// true once a fresh connection is served by the new config. Probes go to
    /// the published port on this host's loopback (or the bound address).
    pub(super) async fn wait_live(&self, port: Option<u16>, version: &str) -> Result<()> {
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

    /// The config version nginx serves on a fresh connection to `addr`.
    pub(super) async fn probe(&self, addr: SocketAddr) -> std::io::Result<String> {
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

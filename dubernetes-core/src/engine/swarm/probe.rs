//! The probe agent: how the server reaches tasks on the overlay network.

use super::*;

/// How the server reaches tasks on the overlay network, which the host
/// cannot route to: through the probe agent, a SOCKS5 proxy
/// ([`DEFAULT_PROBE_IMAGE`], microsocks) in a small container of ours on the
/// overlay, published on 127.0.0.1 only and guarded by a random password made
/// at each start. Loopback addresses (the ingress's published port) are
/// reached directly. Every connection has the caller's deadline; a proxy
/// that does not answer is recreated (at most every few seconds).
#[derive(Debug)]
pub(crate) struct ProbeNetwork {
    inner: DockerEngine,
    state: Mutex<Option<Probe>>,
    /// When the agent was last recreated for not answering. Held while the
    /// agent is (re)created or removed: one at a time.
    repair: tokio::sync::Mutex<Option<Instant>>,
    /// Itself, for a repair that outlives the check that asked for it.
    me: std::sync::Weak<ProbeNetwork>,
}

#[derive(Debug, Clone)]
struct Probe {
    network: String,
    instance: String,
    addr: SocketAddr,
    user: String,
    password: String,
}

pub(super) fn probe_name(network: &str) -> String {
    format!("{network}-probe")
}

impl ProbeNetwork {
    pub(super) fn new(inner: DockerEngine) -> Arc<ProbeNetwork> {
        Arc::new_cyclic(|me| ProbeNetwork {
            inner,
            state: Mutex::new(None),
            repair: tokio::sync::Mutex::new(None),
            me: me.clone(),
        })
    }

    fn current(&self) -> Option<Probe> {
        crate::sync::lock(&self.state).clone()
    }

    /// (Re)creates the probe agent of `network` with a new password.
    pub(super) async fn start(&self, network: &str, instance: &str) -> Result<()> {
        let _one_at_a_time = self.repair.lock().await;
        self.recreate(network, instance).await
    }

    /// [`start`](Self::start), under the repair lock.
    async fn recreate(&self, network: &str, instance: &str) -> Result<()> {
        let name = probe_name(network);
        self.inner.remove(&name).await?;
        let image = std::env::var("DUBERNETES_PROBE_IMAGE").unwrap_or_else(|_| DEFAULT_PROBE_IMAGE.to_string());
        self.inner
            .ensure_image(&image, &crate::engine::Pull::if_missing())
            .await
            .map_err(|e| Error::Docker {
                context: format!("the swarm backend's probe agent image {image}"),
                source: format!("{e} (build it with scripts/build-images.sh, or set DUBERNETES_PROBE_IMAGE)").into(),
            })?;
        let password = crate::ids::new_id();
        let mut limits = ContainerLimits::default();
        limits.log_max_bytes = 1024 * 1024;
        limits.log_max_files = 1;
        let user = "dubernetes".to_string();
        let spec = ContainerSpec {
            name: name.clone(),
            image,
            port: PROBE_PORT,
            args: Some(vec![
                "-i".into(),
                "0.0.0.0".into(),
                "-p".into(),
                PROBE_PORT.to_string(),
                "-u".into(),
                user.clone(),
                "-P".into(),
                password.clone(),
            ]),
            labels: HashMap::from([
                (LABEL_INSTANCE.to_string(), instance.to_string()),
                (LABEL_ROLE.to_string(), ROLE_PROBE.to_string()),
            ]),
            network: network.to_string(),
            limits,
            publish: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Default::default()
        };
        let id = self.inner.create(&spec).await?;
        self.inner.start(&id).await?;
        let port = self
            .inner
            .published_port(&id, PROBE_PORT)
            .await?
            .ok_or_else(|| Error::Docker {
                context: format!("probe agent {name}"),
                source: "the engine published no port".into(),
            })?;
        let probe = Probe {
            network: network.to_string(),
            instance: instance.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            user,
            password,
        };
        // Ready when it proxies a connection to itself.
        let deadline = Instant::now() + PROBE_START;
        while !answers(&probe).await {
            if Instant::now() >= deadline {
                return Err(Error::DockerTimeout(format!("starting the probe agent {name}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        *crate::sync::lock(&self.state) = Some(probe);
        Ok(())
    }

    /// Removes the probe agent of `network`.
    pub(super) async fn stop(&self, network: &str) -> Result<()> {
        // After a repair in flight, never beside it: none starts an agent
        // once this removed it.
        let _one_at_a_time = self.repair.lock().await;
        {
            let mut state = crate::sync::lock(&self.state);
            if state.as_ref().is_some_and(|p| p.network == network) {
                *state = None;
            }
        }
        self.inner.remove(&probe_name(network)).await
    }

    /// Looks at the agent after a connection through it failed, at most
    /// every [`PROBE_REPAIR_EVERY`], and recreates it when it does not
    /// answer; in a task of its own. Not in the check that asked: a check
    /// has its own deadline (a second or less) and a recreate takes longer,
    /// so cut off at that deadline it removed the old agent and started
    /// none, and every readiness check on the overlay failed from then on
    /// (each repair cut off the same way).
    fn repair(&self, probe: &Probe) {
        let Some(me) = self.me.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let probe = probe.clone();
        runtime.spawn(async move {
            // One look at a time; a start or a stop in progress has it too.
            let Ok(mut last) = me.repair.try_lock() else {
                tracing::debug!("a look at the probe agent is already under way");
                return;
            };
            if last.is_some_and(|at| at.elapsed() < PROBE_REPAIR_EVERY) {
                return;
            }
            // Stopped or recreated meanwhile: not this agent's to repair.
            if me.current().is_none_or(|p| p.password != probe.password) {
                return;
            }
            *last = Some(Instant::now());
            // A target that is slow or refuses is not the agent's fault.
            if answers(&probe).await {
                tracing::debug!(network = %probe.network, "the probe agent answers");
                return;
            }
            tracing::warn!(network = %probe.network, "the probe agent does not answer; recreating it");
            if let Err(e) = me.recreate(&probe.network, &probe.instance).await {
                tracing::warn!(error = %e, "recreating the probe agent failed");
            }
        });
    }

    pub(super) async fn connect(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_socks::tcp::Socks5Stream<tokio::net::TcpStream>> {
        let probe = self
            .current()
            .ok_or_else(|| std::io::Error::other("the probe agent is not running yet"))?;
        // Armed until the connection is made: a failure, and an attempt the
        // caller's deadline cuts off (a dead agent's port may just hang),
        // look at the agent.
        let mut look = LookAtAgent {
            network: self,
            probe: Some(probe.clone()),
        };
        // Any failure may be the agent's (a refused or dropped connection
        // to it is `ProxyServerUnreachable` or `Io`): the look asks the agent
        // itself before it recreates anything, at most every few seconds, so
        // a target that refuses costs one cheap look.
        let stream =
            tokio_socks::tcp::Socks5Stream::connect_with_password(probe.addr, addr, &probe.user, &probe.password)
                .await
                .map_err(|e| std::io::Error::other(format!("through the probe agent: {e}")))?;
        look.probe = None;
        Ok(stream)
    }
}

/// Asks for a look at the agent (see [`ProbeNetwork::repair`]) when dropped
/// armed: on a failure that may be the agent's, and when the caller's
/// deadline drops the connection attempt.
struct LookAtAgent<'a> {
    network: &'a ProbeNetwork,
    probe: Option<Probe>,
}

impl Drop for LookAtAgent<'_> {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            self.network.repair(&probe);
        }
    }
}

/// Whether the agent answers: it proxies a connection to itself.
async fn answers(probe: &Probe) -> bool {
    let own = SocketAddr::from(([127, 0, 0, 1], PROBE_PORT));
    let attempt = tokio_socks::tcp::Socks5Stream::connect_with_password(probe.addr, own, &probe.user, &probe.password);
    matches!(tokio::time::timeout(Duration::from_secs(1), attempt).await, Ok(Ok(_)))
}

#[async_trait]
impl Network for ProbeNetwork {
    async fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
        if addr.ip().is_loopback() {
            return HostNetwork.tcp_connect(addr, timeout).await;
        }
        crate::engine::within(timeout, self.connect(addr)).await.map(|_| ())
    }

    async fn http_get(
        &self,
        addr: SocketAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)> {
        if addr.ip().is_loopback() {
            return HostNetwork.http_get(addr, path, host, timeout).await;
        }
        crate::http_check::http_get_via(self.connect(addr), path, host, timeout).await
    }
}

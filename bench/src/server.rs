//! A `dubernetes-server` process for the benchmark, its HTTP API on loopback,
//! and what /proc says about it (CPU time, peak RSS).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dubernetes_core::{Pod, PodSpec};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tokio::process::{Child, Command};

/// A port that was free a moment ago: only for a server too old to pick its
/// own (see [`Server::start_with`]); another process may take it first.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The file in the data dir where the server writes its bound API address.
const API_ADDRESS_FILE: &str = "api-address";

/// A running server; killed (SIGKILL, its containers are the clean-up's job) on drop.
pub struct Server {
    child: Child,
    pub api: String,
    pub client: reqwest::Client,
    /// Bearer token, when the server requires one.
    pub token: Option<String>,
    _data: tempfile::TempDir,
}

impl Server {
    /// Starts `bin` for `instance` with a fresh data dir, API and ingress on
    /// loopback, each on a port the system picks.
    pub async fn start(bin: &Path, instance: &str) -> Result<Server> {
        Self::start_with(bin, instance, &[]).await
    }

    /// Like [`Server::start`], with extra flags.
    pub async fn start_with(bin: &Path, instance: &str, extra: &[&str]) -> Result<Server> {
        let data = tempfile::tempdir()?;
        let help = Command::new(bin)
            .arg("--help")
            .output()
            .await
            .with_context(|| format!("running {} --help (build it: cargo build --release)", bin.display()))?;
        // Servers with API authentication need a token; older ones have no such flag.
        let token = String::from_utf8_lossy(&help.stdout)
            .contains("--token")
            .then(|| format!("bench-{:016x}", rand::random::<u64>()));
        // A server that reports its bound address picks its own API port;
        // an older one gets a port that was free a moment ago.
        let reports_address = String::from_utf8_lossy(&help.stdout).contains(API_ADDRESS_FILE);
        let listen = if reports_address {
            "127.0.0.1:0".to_string()
        } else {
            format!("127.0.0.1:{}", free_port()?)
        };
        let mut cmd = Command::new(bin);
        cmd.arg("--listen")
            .arg(&listen)
            .arg("--data-dir")
            .arg(data.path())
            .arg("--instance")
            .arg(instance)
            .arg("--ingress-listen")
            .arg("127.0.0.1:0")
            .arg("--ingress-tls-listen")
            .arg("127.0.0.1:0")
            .arg("--ingress-image")
            .arg("dubernetes/nginx:local-4")
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(t) = &token {
            cmd.arg("--token").arg(t);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let api = if reports_address {
            let file = data.path().join(API_ADDRESS_FILE);
            loop {
                if let Ok(text) = std::fs::read_to_string(&file)
                    && let Ok(address) = text.trim().parse::<std::net::SocketAddr>()
                {
                    break format!("http://127.0.0.1:{}", address.port());
                }
                if let Some(status) = child.try_wait()? {
                    bail!("dubernetes-server exited ({status}) before it bound its API port");
                }
                if Instant::now() > deadline {
                    bail!("dubernetes-server did not write {} within 60 s", file.display());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            format!("http://{listen}")
        };
        let mut headers = HeaderMap::new();
        if let Some(t) = &token {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {t}"))?);
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            // The server closes connections idle for its header timeout (10 s):
            // drop them first, so no request races the close.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()?;
        let mut server = Server {
            child,
            api,
            client,
            token,
            _data: data,
        };
        loop {
            if let Ok(r) = server.client.get(format!("{}/healthz", server.api)).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "dubernetes-server exited ({status}) before it answered on {}",
                    server.api
                );
            }
            if Instant::now() > deadline {
                bail!("dubernetes-server did not answer on {} within 60 s", server.api);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    pub fn pid(&self) -> Result<u32> {
        self.child.id().context("the server exited")
    }

    /// `GET /v1/pods`: the light list, or with `replicas` each pod's replicas too.
    pub async fn list_with(&self, replicas: bool) -> Result<Vec<Pod>> {
        let url = format!("{}/v1/pods{}", self.api, if replicas { "?replicas=true" } else { "" });
        let r = self.client.get(url).send().await?;
        if !r.status().is_success() {
            bail!("GET /v1/pods: {}", r.status());
        }
        Ok(r.json().await?)
    }

    pub async fn list(&self) -> Result<Vec<Pod>> {
        self.list_with(false).await
    }

    pub async fn get(&self, name: &str) -> Result<Pod> {
        let r = self.client.get(format!("{}/v1/pods/{name}", self.api)).send().await?;
        if !r.status().is_success() {
            bail!("GET /v1/pods/{name}: {}", r.status());
        }
        Ok(r.json().await?)
    }

    pub async fn put(&self, spec: &PodSpec) -> Result<()> {
        let r = self
            .client
            .put(format!("{}/v1/pods/{}", self.api, spec.name))
            .json(spec)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "PUT /v1/pods/{}: {} {}",
                spec.name,
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let r = self
            .client
            .delete(format!("{}/v1/pods/{name}", self.api))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("DELETE /v1/pods/{name}: {}", r.status());
        }
        Ok(())
    }

    /// The ingress's host port (the engine picks it), once the ingress runs.
    pub async fn ingress_port(&self) -> Result<u16> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.client.get(format!("{}/v1/ingress", self.api)).send().await;
            if let Ok(r) = answer
                && let Ok(v) = r.json::<serde_json::Value>().await
                && let Some(port) = v
                    .get("port")
                    .and_then(|p| p.as_u64())
                    .and_then(|p| u16::try_from(p).ok())
            {
                return Ok(port);
            }
            if Instant::now() > deadline {
                bail!("the ingress reported no port within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many configs the ingress made live (0 if the server does not say).
    pub async fn ingress_reloads(&self) -> Result<u64> {
        let v: serde_json::Value = self
            .client
            .get(format!("{}/v1/ingress", self.api))
            .send()
            .await?
            .json()
            .await?;
        Ok(v.get("reloads").and_then(|r| r.as_u64()).unwrap_or(0))
    }

    /// Runs `dubectl apply -f <dir>` against this server; returns its wall time.
    pub async fn dubectl_apply(&self, dubectl: &Path, dir: &Path) -> Result<Duration> {
        let started = Instant::now();
        let mut cmd = Command::new(dubectl);
        cmd.arg("apply")
            .arg("-f")
            .arg(dir)
            .env("DUBERNETES_SERVER", &self.api)
            .stdout(Stdio::null());
        if let Some(t) = &self.token {
            cmd.env("DUBERNETES_TOKEN", t);
        }
        let out = cmd
            .output()
            .await
            .with_context(|| format!("running {}", dubectl.display()))?;
        if !out.status.success() {
            bail!("dubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(started.elapsed())
    }

    /// Waits until every pod (at least `want` of them) is converged; polls
    /// the list every `every`.
    pub async fn wait_all_converged(&self, want: usize, every: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let pods = self.list().await?;
            let done = pods.iter().filter(|p| p.is_converged()).count();
            if pods.len() >= want && done == pods.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{done} of {want} pods converged after {timeout:?}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Whether this server leads its instance (`GET /healthz`).
    pub async fn leads(&self) -> bool {
        let answer = self.client.get(format!("{}/healthz", self.api)).send().await;
        match answer {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["leader"].as_bool())
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// `kill -9`: the process ends at once, its containers stay.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill().await;
    }

    pub async fn stop(mut self) {
        // SIGTERM would be graceful, but the clean-up removes the containers anyway.
        let _ = self.child.kill().await;
    }
}

/// Status of a request through the ingress for `host`, if any answer.
pub async fn ingress_status(client: &reqwest::Client, port: u16, host: &str) -> Option<u16> {
    client
        .get(format!("http://127.0.0.1:{port}/"))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// User+system CPU seconds a process used so far (`/proc/<pid>/stat`).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/pid/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `Vm...` line of `/proc/<pid>/status`, in KiB.
pub fn vm_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The workspace's `target/release/<name>`.
pub fn release_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release").join(name)
}

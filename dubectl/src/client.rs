//! The HTTP client: one method per API call; server errors become messages.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use dubernetes_core::{Event, Pod, PodSpec};
use serde::Deserialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Deserialize)]
pub struct ApplyResponse {
    pub outcome: dubernetes_core::ApplyOutcome,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: String,
    message: String,
}

/// An error the server answered with.
#[derive(Debug)]
pub struct ServerError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}, {})", self.message, self.status, self.code)
    }
}

impl std::error::Error for ServerError {}

pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>().is_some_and(|s| s.status == 404)
}

pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<&str>) -> anyhow::Result<Client> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--server {server:?} must be a URL like http://127.0.0.1:8080");
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| anyhow!("--token / DUBERNETES_TOKEN contains characters that cannot be sent"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { base, http })
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                anyhow!(
                    "cannot reach the Dubernetes server at {} ({e}). Is it running? Start it with `dubernetes-server`, or point --server / DUBERNETES_SERVER at it",
                    self.base
                )
            } else {
                anyhow!("request to {} failed: {e}", self.base)
            }
        })?;
        let status = response.status();
        let body = response.bytes().await.context("reading the server's answer")?;
        if status.is_success() {
            return serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {}", self.base));
        }
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) if status.as_u16() == 401 => Err(ServerError {
                status: 401,
                code: e.code,
                message: format!(
                    "{} is refusing the API token: pass --token or set DUBERNETES_TOKEN (a server started without \
                     --token keeps its token in <data-dir>/token)",
                    self.base
                ),
            }
            .into()),
            Ok(e) => Err(ServerError {
                status: status.as_u16(),
                code: e.code,
                message: e.message,
            }
            .into()),
            Err(_) => Err(ServerError {
                status: status.as_u16(),
                code: "unknown".into(),
                message: String::from_utf8_lossy(&body).trim().to_string(),
            }
            .into()),
        }
    }

    pub async fn apply(&self, spec: &PodSpec, dry_run: bool) -> anyhow::Result<ApplyResponse> {
        let url = format!("{}/v1/pods/{}", self.base, spec.name);
        self.send(self.http.put(url).query(&[("dry_run", dry_run)]).json(spec))
            .await
    }

    /// Applies only if the pod is still at `generation` (`If-Match`), else 409 stale_generation.
    pub async fn apply_if(&self, spec: &PodSpec, generation: Option<i64>) -> anyhow::Result<ApplyResponse> {
        let url = format!("{}/v1/pods/{}", self.base, spec.name);
        let mut request = self.http.put(url).json(spec);
        if let Some(generation) = generation {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{generation}\""));
        }
        self.send(request).await
    }

    pub async fn get(&self, name: &str) -> anyhow::Result<Pod> {
        self.send(self.http.get(format!("{}/v1/pods/{name}", self.base))).await
    }

    pub async fn list(&self) -> anyhow::Result<Vec<Pod>> {
        self.send(self.http.get(format!("{}/v1/pods", self.base))).await
    }

    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .send(self.http.delete(format!("{}/v1/pods/{name}", self.base)))
            .await?;
        Ok(())
    }

    pub async fn events(&self, pod: Option<&str>) -> anyhow::Result<Vec<Event>> {
        let mut request = self.http.get(format!("{}/v1/events", self.base));
        if let Some(pod) = pod {
            request = request.query(&[("pod", pod)]);
        }
        self.send(request).await
    }

    pub async fn history(&self, name: &str) -> anyhow::Result<Vec<dubernetes_core::Revision>> {
        self.send(self.http.get(format!("{}/v1/pods/{name}/revisions", self.base)))
            .await
    }

    pub async fn undo(&self, name: &str, to_revision: Option<i64>) -> anyhow::Result<Pod> {
        let body = serde_json::json!({ "to_revision": to_revision });
        let response: serde_json::Value = self
            .send(
                self.http
                    .post(format!("{}/v1/pods/{name}/rollback", self.base))
                    .json(&body),
            )
            .await?;
        serde_json::from_value(response["pod"].clone()).context("unexpected answer to a rollback")
    }

    pub async fn version(&self) -> anyhow::Result<serde_json::Value> {
        self.send(self.http.get(format!("{}/v1/version", self.base))).await
    }

    /// Waits for the pod's latest revision to roll out; fails when it is rolled back or failed.
    pub async fn wait_rollout(&self, name: &str, timeout: Duration) -> anyhow::Result<Pod> {
        let start = self.get(name).await?;
        let watched = start.status.revision_number;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            let pod = self.get(name).await?;
            let s = &pod.status;
            let line = format!(
                "revision {}: {}/{} ready, {} up to date, {}",
                s.revision_number, s.ready_replicas, s.desired_replicas, s.updated_replicas, s.phase
            );
            if line != last {
                eprintln!("{line}");
                last = line;
            }
            let progressing = s.conditions.iter().find(|c| c.kind == "Progressing");
            if s.revision_number != watched || progressing.is_some_and(|c| !c.status) {
                bail!(
                    "rollout of revision {watched} failed: {}",
                    s.message
                        .clone()
                        .unwrap_or_else(|| "see `dubectl rollout history`".into())
                );
            }
            if pod.is_converged() && progressing.is_some_and(|c| c.reason == "RolloutComplete") {
                return Ok(pod);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "rollout of revision {watched} not done after {timeout:?}: {}/{} ready",
                    s.ready_replicas,
                    s.desired_replicas
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls the pod until it is fully rolled out; prints progress lines when it changes.
    pub async fn wait_ready(&self, name: &str, timeout: Duration) -> anyhow::Result<Pod> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            let pod = self.get(name).await?;
            let s = &pod.status;
            let line = format!(
                "pod/{name}: {}/{} ready, {} up to date, {}",
                s.ready_replicas, s.desired_replicas, s.updated_replicas, s.phase
            );
            if line != last {
                eprintln!("{line}");
                last = line;
            }
            if pod.is_converged() {
                return Ok(pod);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "pod/{name} not ready after {timeout:?}: {}/{} ready{}",
                    s.ready_replicas,
                    s.desired_replicas,
                    s.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

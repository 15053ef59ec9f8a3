//! The HTTP client: one method per API call; server errors become messages.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
pub use dubernetes_api::ApplyResponse;
use dubernetes_api::{
    AnySecret, ApiError, DataSecret, ErrorCode, Event, LogLine, NamedVolume, NewSecret, NewTlsSecret, Pod, PodSpec,
    TlsSecret, WatchEvent,
};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;

/// An error the server answered with.
#[derive(Debug)]
pub struct ServerError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Messages may quote what a container wrote (a crash log tail).
        write!(
            f,
            "{} (HTTP {}, {})",
            crate::escape::line(&self.message),
            self.status,
            crate::escape::line(&self.code)
        )
    }
}

impl std::error::Error for ServerError {}

pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>().is_some_and(|s| s.status == 404)
}

pub struct Client {
    base: String,
    http: reqwest::Client,
    /// Without a total timeout: for watches and followed logs.
    streaming: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<&str>, ca_file: Option<&std::path::Path>) -> anyhow::Result<Client> {
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
        let roots = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("--ca-file {}", path.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| anyhow!("--ca-file {}: no PEM CERTIFICATE found", path.display()))?;
                if base.starts_with("http://") {
                    bail!("--ca-file is set but the server {base} is plain http://; use https://");
                }
                certs
            }
            None => Vec::new(),
        };
        let builder = || {
            roots.iter().cloned().fold(
                reqwest::Client::builder().https_only(base.starts_with("https://")),
                |b, c| b.add_root_certificate(c),
            )
        };
        let http = builder()
            .default_headers(headers.clone())
            // The server closes connections idle for its header timeout (10 s by
            // default); drop them first, so no request races the close.
            .pool_idle_timeout(Duration::from_secs(4))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        let streaming = builder()
            .default_headers(headers)
            .pool_idle_timeout(Duration::from_secs(4))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { base, http, streaming })
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        let chain = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        if chain.contains("certificate") {
            return anyhow!(
                "the TLS certificate of {} is not trusted ({chain}). Pass the CA that signed it with --ca-file, \
                 DUBERNETES_CA_FILE or `ca_file:` in the config file, and use the host name the certificate names",
                self.base
            );
        }
        if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
            return anyhow!("{} did not answer TLS ({chain}): is it plain http://?", self.base);
        }
        if e.is_connect() || e.is_timeout() {
            anyhow!(
                "cannot reach the Dubernetes server at {} ({e}). Is it running? Start it with `dubernetes-server` \
                 (or scripts/demo.sh), or point --server / DUBERNETES_SERVER / the config file at it",
                self.base
            )
        } else {
            anyhow!("request to {} failed: {e}", self.base)
        }
    }

    /// Sends a request and returns the successful response, or the server's error.
    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.context("reading the server's answer")?;
        if status.as_u16() == 401 {
            let code = error_body(&body).map_or_else(|| ErrorCode::Unauthorized.to_string(), |(code, _)| code);
            return Err(ServerError {
                status: 401,
                code,
                message: format!(
                    "{} is refusing the API token: pass --token, set DUBERNETES_TOKEN or put `token:` in the config \
                     file (a server started without --token keeps its token in <data-dir>/token)",
                    self.base
                ),
            }
            .into());
        }
        Err(error_from(status.as_u16(), &body))
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<T> {
        Ok(self.send_versioned(request).await?.0)
    }

    /// Like `send`, with the `x-watch-version` header: watch from it to see every change after this read.
    async fn send_versioned<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(T, u64)> {
        let response = self.call(request).await?;
        let version = response
            .headers()
            .get("x-watch-version")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = response.bytes().await.context("reading the server's answer")?;
        let value = serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {}", self.base))?;
        Ok((value, version))
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

    /// The pods and the watch version to follow them from; `replicas`: with
    /// each pod's per-replica detail (else the lighter list: no `replicas`).
    pub async fn list_versioned(&self, replicas: bool) -> anyhow::Result<(Vec<Pod>, u64)> {
        let url = format!("{}/v1/pods", self.base);
        let request = if replicas {
            self.http.get(url).query(&[("replicas", "true")])
        } else {
            self.http.get(url)
        };
        self.send_versioned(request).await
    }

    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .send(self.http.delete(format!("{}/v1/pods/{name}", self.base)))
            .await?;
        Ok(())
    }

    pub async fn secrets(&self) -> anyhow::Result<Vec<AnySecret>> {
        self.send(self.http.get(format!("{}/v1/secrets", self.base))).await
    }

    pub async fn secret(&self, name: &str) -> anyhow::Result<AnySecret> {
        self.send(self.http.get(format!("{}/v1/secrets/{name}", self.base)))
            .await
    }

    /// Creates a TLS secret (`replace`: or replaces the one of that name).
    pub async fn create_secret(&self, secret: &NewTlsSecret, replace: bool) -> anyhow::Result<TlsSecret> {
        let request = if replace {
            self.http.put(format!("{}/v1/secrets/{}", self.base, secret.name))
        } else {
            self.http.post(format!("{}/v1/secrets", self.base))
        };
        self.send(request.json(secret)).await
    }

    /// Creates a generic or docker-registry secret (`replace`: or replaces the one of that name).
    pub async fn create_data_secret(&self, secret: &NewSecret, replace: bool) -> anyhow::Result<DataSecret> {
        let request = if replace {
            self.http.put(format!("{}/v1/secrets/{}", self.base, secret.name))
        } else {
            self.http.post(format!("{}/v1/secrets", self.base))
        };
        self.send(request.json(secret)).await
    }

    pub async fn delete_secret(&self, name: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .send(self.http.delete(format!("{}/v1/secrets/{name}", self.base)))
            .await?;
        Ok(())
    }

    pub async fn volumes(&self) -> anyhow::Result<Vec<NamedVolume>> {
        self.send(self.http.get(format!("{}/v1/volumes", self.base))).await
    }

    pub async fn nodes(&self) -> anyhow::Result<Vec<dubernetes_api::Node>> {
        self.send(self.http.get(format!("{}/v1/nodes", self.base))).await
    }

    pub async fn delete_volume(&self, name: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .send(self.http.delete(format!("{}/v1/volumes/{name}", self.base)))
            .await?;
        Ok(())
    }

    pub async fn events(&self, pod: Option<&str>) -> anyhow::Result<(Vec<Event>, u64)> {
        let mut request = self.http.get(format!("{}/v1/events", self.base));
        if let Some(pod) = pod {
            request = request.query(&[("pod", pod)]);
        }
        self.send_versioned(request).await
    }

    /// The change feed (`GET /v1/watch`, Server-Sent Events), from `since` or from a snapshot.
    pub async fn watch(
        &self,
        since: Option<u64>,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<WatchEvent>> + use<>> {
        let mut request = self
            .streaming
            .get(format!("{}/v1/watch", self.base))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(since) = since {
            request = request.query(&[("since", since)]);
        }
        let response = self.call(request).await?;
        Ok(sse_messages(response.bytes_stream()).map(|message| {
            let (event, data) = message?;
            if event == "error" {
                return Err(error_from(410, data.as_bytes()));
            }
            serde_json::from_str::<WatchEvent>(&data).context("unexpected message in the watch stream")
        }))
    }

    /// A pod's logs (`GET /v1/pods/{name}/logs`, one JSON line per log line).
    pub async fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<usize>,
        since: Option<&str>,
        run: Option<&str>,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<LogLine>> + use<>> {
        let mut query: Vec<(&str, String)> = vec![("follow", follow.to_string())];
        if let Some(run) = run {
            query.push(("run", run.to_string()));
        }
        if let Some(tail) = tail {
            query.push(("tail", tail.to_string()));
        }
        if let Some(since) = since {
            query.push(("since", since.to_string()));
        }
        let client = if follow { &self.streaming } else { &self.http };
        let response = self
            .call(client.get(format!("{}/v1/pods/{name}/logs", self.base)).query(&query))
            .await?;
        Ok(ndjson_lines(response.bytes_stream()).map(|line| {
            let line = line?;
            match serde_json::from_str::<LogLine>(&line) {
                Ok(l) => Ok(l),
                Err(_) => Err(error_from(500, line.as_bytes())),
            }
        }))
    }

    /// `POST /v1/pods/{name}/exec`, upgraded: the connection, and the replica it runs in.
    pub async fn exec(
        &self,
        name: &str,
        request: &dubernetes_api::ExecRequest,
    ) -> anyhow::Result<(reqwest::Upgraded, String)> {
        let protocol = dubernetes_api::run::EXEC_PROTOCOL;
        let response = self
            .streaming
            .post(format!("{}/v1/pods/{name}/exec", self.base))
            .header(reqwest::header::CONNECTION, "Upgrade")
            .header(reqwest::header::UPGRADE, protocol)
            .json(request)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status().as_u16();
            let body = response.bytes().await.context("reading the server's answer")?;
            return Err(error_from(status, &body));
        }
        let replica = response
            .headers()
            .get("x-dubernetes-replica")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let upgraded = response.upgrade().await.context("upgrading the connection for exec")?;
        Ok((upgraded, replica))
    }

    /// `POST /v1/pods/{name}/runs` with `detach`: the run, at once.
    pub async fn run_detached(&self, name: &str, command: Vec<String>) -> anyhow::Result<dubernetes_api::Run> {
        let body = dubernetes_api::RunRequest { command, detach: true };
        self.send(self.http.post(format!("{}/v1/pods/{name}/runs", self.base)).json(&body))
            .await
    }

    /// `POST /v1/pods/{name}/runs`: its output lines, then its exit (as JSON values).
    pub async fn run_attached(
        &self,
        name: &str,
        command: Vec<String>,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<serde_json::Value>> + use<>> {
        let body = dubernetes_api::RunRequest { command, detach: false };
        let response = self
            .call(
                self.streaming
                    .post(format!("{}/v1/pods/{name}/runs", self.base))
                    .json(&body),
            )
            .await?;
        Ok(ndjson_lines(response.bytes_stream()).map(|line| {
            let line = line?;
            serde_json::from_str::<serde_json::Value>(&line).map_err(|_| error_from(500, line.as_bytes()))
        }))
    }

    /// `GET /v1/pods/{name}/runs`: its runs, newest first.
    pub async fn runs(&self, name: &str) -> anyhow::Result<Vec<dubernetes_api::Run>> {
        self.send(self.http.get(format!("{}/v1/pods/{name}/runs", self.base)))
            .await
    }

    /// `DELETE /v1/pods/{name}/runs/{run}`.
    pub async fn delete_run(&self, name: &str, run: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .send(self.http.delete(format!("{}/v1/pods/{name}/runs/{run}", self.base)))
            .await?;
        Ok(())
    }

    pub async fn history(&self, name: &str) -> anyhow::Result<Vec<dubernetes_api::Revision>> {
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

    pub async fn dry_run_outcome(&self, spec: &PodSpec) -> anyhow::Result<ApplyResponse> {
        self.apply(spec, true).await
    }

    pub async fn version(&self) -> anyhow::Result<serde_json::Value> {
        self.send(self.http.get(format!("{}/v1/version", self.base))).await
    }

    /// A single-use, short-lived sign-in URL of the dashboard: the token
    /// stays here; the URL carries only the code the server hands out.
    pub async fn dashboard_url(&self) -> anyhow::Result<(String, u64)> {
        let link: serde_json::Value = self
            .send(self.http.post(format!("{}/v1/dashboard/links", self.base)))
            .await?;
        let path = link["path"]
            .as_str()
            .filter(|p| p.starts_with("/dashboard/login?code=") && p.bytes().all(|b| b.is_ascii_graphic()))
            .with_context(|| format!("unexpected dashboard link from {}", self.base))?;
        Ok((
            format!("{}{path}", self.base.trim_end_matches('/')),
            link["expires_in_seconds"].as_u64().unwrap_or(60),
        ))
    }
}

/// The error the server answered with, with a hint of what to do next.
fn error_from(status: u16, body: &[u8]) -> anyhow::Error {
    match error_body(body) {
        Some((code, message)) => {
            let hint = match serde_json::from_value::<ErrorCode>(serde_json::Value::from(code.as_str())) {
                Ok(ErrorCode::NotFound) => "; `dubectl get pods` lists the pods",
                Ok(ErrorCode::Unauthorized) => {
                    "; pass --token or set DUBERNETES_TOKEN (or `token:` in the config file)"
                }
                Ok(ErrorCode::EngineUnavailable) => "; is the Docker engine running on the server's machine?",
                _ => "",
            };
            ServerError {
                status,
                code,
                message: format!("{message}{hint}"),
            }
            .into()
        }
        None => ServerError {
            status,
            code: "unknown".into(),
            message: String::from_utf8_lossy(body).trim().to_string(),
        }
        .into(),
    }
}

/// The code and message of an error body: the API's [`ApiError`], or (from
/// a newer server, with a code this client does not know yet) any JSON object
/// with a string `code` and `message`.
fn error_body(body: &[u8]) -> Option<(String, String)> {
    if let Ok(e) = serde_json::from_slice::<ApiError>(body) {
        return Some((e.code.to_string(), e.message));
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some((
        value["code"].as_str()?.to_string(),
        value["message"].as_str()?.to_string(),
    ))
}

/// Splits a byte stream into lines (without their `\n` or `\r\n`), empty ones included.
fn byte_lines(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
) -> impl Stream<Item = anyhow::Result<String>> {
    let bytes = Box::pin(bytes);
    futures::stream::unfold(
        (bytes, Vec::<u8>::new(), false),
        |(mut bytes, mut buffer, mut done)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let rest = buffer.split_off(end + 1);
                    let mut line = std::mem::replace(&mut buffer, rest);
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Some((Ok(String::from_utf8_lossy(&line).into_owned()), (bytes, buffer, done)));
                }
                if done {
                    if buffer.is_empty() {
                        return None;
                    }
                    let line = String::from_utf8_lossy(&std::mem::take(&mut buffer)).into_owned();
                    return Some((Ok(line), (bytes, buffer, done)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        return Some((
                            Err(anyhow!("the stream from the server broke: {e}")),
                            (bytes, Vec::new(), true),
                        ));
                    }
                    None => done = true,
                }
            }
        },
    )
}

/// Non-empty lines of a newline-delimited JSON stream.
fn ndjson_lines(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
) -> impl Stream<Item = anyhow::Result<String>> {
    byte_lines(bytes).filter(|l| futures::future::ready(!matches!(l, Ok(l) if l.trim().is_empty())))
}

/// Parses Server-Sent Events into `(event, data)` pairs (comments and keep-alives skipped).
fn sse_messages(
    bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
) -> impl Stream<Item = anyhow::Result<(String, String)>> {
    let lines = Box::pin(byte_lines(bytes));
    futures::stream::unfold(lines, |mut lines| async move {
        let mut event = String::from("message");
        let mut data: Vec<String> = Vec::new();
        loop {
            match lines.next().await {
                None => return None,
                Some(Err(e)) => return Some((Err(e), lines)),
                Some(Ok(line)) => {
                    if line.is_empty() {
                        if data.is_empty() {
                            continue;
                        }
                        return Some((Ok((event, data.join("\n"))), lines));
                    }
                    if line.starts_with(':') {
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event = value.to_string(),
                        "data" => data.push(value.to_string()),
                        _ => {}
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_as_the_api_s_and_tolerate_newer_codes() {
        let known = br#"{"code":"not_found","message":"no pod \"x\"","field":"name"}"#;
        assert_eq!(
            error_body(known),
            Some(("not_found".to_string(), "no pod \"x\"".to_string()))
        );
        let message = error_from(404, known).to_string();
        assert!(message.contains("`dubectl get pods` lists the pods"), "{message}");
        let newer = br#"{"code":"some_new_code","message":"later"}"#;
        assert_eq!(
            error_body(newer),
            Some(("some_new_code".to_string(), "later".to_string()))
        );
        assert_eq!(error_body(b"Bad Gateway"), None);
        assert!(
            error_from(502, b"Bad Gateway")
                .to_string()
                .contains("Bad Gateway (HTTP 502, unknown)")
        );
    }
}

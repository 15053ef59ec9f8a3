//! An in-memory [`Engine`] (and [`Network`]) for the controller's tests:
//! containers are entries in a map, "apps" are [`App`] behaviours chosen by
//! image, and time is tokio's, so a test under `tokio::time::pause()` runs a
//! whole rollout with back-offs and deadlines in milliseconds.
//!
//! It behaves as the real engine does where the controller depends on it:
//! `die` before the list shows the exit, `kill` before the `die` of a stop or
//! a forced removal, idempotent start/stop/remove, a published port for the
//! ingress, and an nginx that serves the config version it last loaded
//! (`nginx -t` checks, `HUP` reloads). It records what the live ingress
//! config could route to, so tests can check availability during a rollout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use super::{ContainerSpec, ContainerState, Engine, EngineEvent, LogChunk, LogRequest, LogSource, Network, Observed};
use crate::error::{Error, Result};
use crate::labels::{LABEL_INSTANCE, LABEL_POD, LABEL_REVISION, LABEL_ROLE};
use crate::sync::lock;

mod app;
mod network;

pub use self::app::App;

#[derive(Debug, Clone)]
struct Container {
    id: String,
    spec: ContainerSpec,
    state: ContainerState,
    exit_code: Option<i64>,
    ip: Option<Ipv4Addr>,
    created: i64,
    published: Option<u16>,
    files: HashMap<String, Vec<u8>>,
    /// nginx: the config it serves (loaded at start and on `HUP`).
    live_config: Option<String>,
    /// Starts so far: an exit scheduled for an earlier run is void.
    runs: u32,
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, Container>,
    images: HashMap<String, App>,
    networks: HashSet<String>,
    next: u32,
    /// `nginx -t` fails while set.
    reject_configs: bool,
    /// `nginx -t` fails for a config that serves this host, naming its line.
    reject_host: Option<String>,
    /// Calls by kind, for tests that count.
    calls: HashMap<&'static str, u32>,
    /// After each change: for each pod, how many running replicas the live
    /// ingress config routes to.
    routable: Vec<HashMap<String, usize>>,
    /// Stops of replicas the live ingress config still routed to.
    stopped_while_routed: u32,
    /// Stops under way (waiting out a grace period) now, and at most at once.
    stopping: u32,
    max_stopping: u32,
    /// Claims to run on this machine (binds are still not honoured: a
    /// container never sees a host directory).
    local: bool,
    /// Host ports another program holds: a container publishing one fails to start.
    taken: HashSet<u16>,
}

/// The in-memory engine. Cheap to clone (clones share the engine).
#[derive(Debug, Clone)]
pub struct FakeEngine {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<EngineEvent>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        FakeEngine::new()
    }
}

fn refused(what: &str, why: &str) -> Error {
    Error::Docker {
        context: what.to_string(),
        source: Box::new(std::io::Error::other(why.to_string())),
    }
}

const CONF: &str = "/etc/nginx/conf.d/default.conf";

impl FakeEngine {
    /// An engine with no images.
    pub fn new() -> FakeEngine {
        let (events, _) = broadcast::channel(4096);
        FakeEngine {
            state: Arc::new(Mutex::new(State::default())),
            events,
        }
    }

    /// Makes `image` available, its containers behaving as `app`.
    pub fn image(&self, image: &str, app: App) -> &Self {
        lock(&self.state).images.insert(image.to_string(), app);
        self
    }

    /// Holds host `port` as another program would (`on`), or frees it: a
    /// container that publishes it fails to start, as the engine's does.
    pub fn take_port(&self, port: u16, on: bool) {
        let mut s = lock(&self.state);
        if on {
            s.taken.insert(port);
        } else {
            s.taken.remove(&port);
        }
    }

    /// Makes `nginx -t` reject every config while `on`.
    pub fn reject_configs(&self, on: bool) {
        lock(&self.state).reject_configs = on;
    }

    /// Makes `nginx -t` reject a config with a server block for `host`
    /// (naming the line of its `server_name`), as nginx does for a route of
    /// ours that clashes with something, while set.
    pub fn reject_host(&self, host: Option<&str>) {
        lock(&self.state).reject_host = host.map(str::to_string);
    }

    /// How often a kind of call was made (`create`, `stop`, `remove`, `signal`, ...).
    pub fn calls(&self, kind: &str) -> u32 {
        lock(&self.state).calls.get(kind).copied().unwrap_or(0)
    }

    /// Ids of the containers whose role label is `role` (and of `pod`), running ones only if `running`.
    pub fn ids(&self, role: &str, pod: Option<&str>, running: bool) -> Vec<String> {
        lock(&self.state)
            .containers
            .values()
            .filter(|c| c.spec.labels.get(LABEL_ROLE).map(String::as_str) == Some(role))
            .filter(|c| pod.is_none() || c.spec.labels.get(LABEL_POD).map(String::as_str) == pod)
            .filter(|c| !running || c.state == ContainerState::Running)
            .map(|c| c.id.clone())
            .collect()
    }

    /// The revisions of a pod's running replicas.
    pub fn running_revisions(&self, pod: &str) -> Vec<String> {
        lock(&self.state)
            .containers
            .values()
            .filter(|c| c.state == ContainerState::Running)
            .filter(|c| c.spec.labels.get(LABEL_POD).map(String::as_str) == Some(pod))
            .filter_map(|c| c.spec.labels.get(LABEL_REVISION).cloned())
            .collect()
    }

    /// Forgets the availability history (see [`min_routable`](Self::min_routable)).
    pub fn clear_history(&self) {
        let mut s = lock(&self.state);
        s.routable.clear();
    }

    /// The fewest running replicas of `pod` the live ingress config routed
    /// to, over every change since the history was cleared.
    pub fn min_routable(&self, pod: &str) -> Option<usize> {
        lock(&self.state)
            .routable
            .iter()
            .map(|r| r.get(pod).copied().unwrap_or(0))
            .min()
    }

    /// How many running replicas of `pod` the live ingress config routes to now.
    pub fn routed_now(&self, pod: &str) -> usize {
        let mut s = lock(&self.state);
        record(&mut s);
        s.routable.last().and_then(|r| r.get(pod).copied()).unwrap_or(0)
    }

    /// The most running replicas of `pod` the live ingress config routed
    /// to at once, since the history was cleared.
    pub fn max_routable(&self, pod: &str) -> Option<usize> {
        lock(&self.state)
            .routable
            .iter()
            .map(|r| r.get(pod).copied().unwrap_or(0))
            .max()
    }

    /// How many replicas were stopped while the live ingress config still routed to them.
    pub fn stopped_while_routed(&self) -> u32 {
        lock(&self.state).stopped_while_routed
    }

    /// Stops waiting out a grace period now, and the most there were at once.
    pub fn stopping(&self) -> (u32, u32) {
        let s = lock(&self.state);
        (s.stopping, s.max_stopping)
    }

    /// Claims to be a local engine ([`Engine::is_local`]) while never
    /// showing a bound host directory to a container: what a server in a
    /// container of its own meets.
    pub fn claim_local(&self, on: bool) {
        lock(&self.state).local = on;
    }

    /// Replaces a file in a container from outside (someone edits the ingress by hand).
    pub fn overwrite_file(&self, id: &str, path: &str, content: &[u8]) {
        let mut s = lock(&self.state);
        if let Some(c) = s.containers.get_mut(id) {
            c.files.insert(path.to_string(), content.to_vec());
        }
        record(&mut s);
    }

    /// A file in a container, if it is there.
    pub fn file(&self, id: &str, path: &str) -> Option<Vec<u8>> {
        lock(&self.state)
            .containers
            .get(id)
            .and_then(|c| c.files.get(path).cloned())
    }

    /// A label of a container.
    pub fn label(&self, id: &str, key: &str) -> Option<String> {
        lock(&self.state)
            .containers
            .get(id)
            .and_then(|c| c.spec.labels.get(key).cloned())
    }

    /// The container dies as if its process exited with `code` (no `kill` first).
    pub fn crash(&self, id: &str, code: i64) {
        let mut s = lock(&self.state);
        self.exit(&mut s, id, code);
    }

    /// A `docker kill` from outside: `kill` (signal 9), then the exit.
    pub fn kill(&self, id: &str) {
        let mut s = lock(&self.state);
        if s.containers.get(id).is_some_and(|c| c.state == ContainerState::Running) {
            self.emit(&s, "kill", id, &[("signal", "9")]);
            self.exit(&mut s, id, 137);
        }
    }

    fn emit(&self, s: &State, action: &str, id: &str, extra: &[(&str, &str)]) {
        let Some(c) = s.containers.get(id) else { return };
        let mut attributes = c.spec.labels.clone();
        attributes.insert("name".into(), c.spec.name.clone());
        attributes.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // No subscriber is fine.
        let _ = self.events.send(EngineEvent {
            action: action.to_string(),
            id: Some(id.to_string()),
            attributes,
        });
    }

    fn exit(&self, s: &mut State, id: &str, code: i64) {
        let Some(c) = s.containers.get_mut(id) else { return };
        if c.state != ContainerState::Running {
            return;
        }
        c.state = ContainerState::Exited;
        c.exit_code = Some(code);
        c.live_config = None;
        self.emit(s, "die", id, &[("exitCode", &code.to_string())]);
        record(s);
    }

    fn count(s: &mut State, kind: &'static str) {
        *s.calls.entry(kind).or_default() += 1;
    }

    fn app_of(s: &State, id: &str) -> Option<App> {
        let c = s.containers.get(id)?;
        s.images.get(&c.spec.image).cloned()
    }
}

/// The `ip:port` servers the live ingress routes to: of each pod with a
/// server block in the live config, what its endpoint files say (read by
/// nginx per request, as `templates/ingress.js` does: live once written).
fn routed_servers(s: &State) -> HashSet<String> {
    let Some(c) = s.containers.values().find(|c| c.live_config.is_some()) else {
        return HashSet::new();
    };
    let config = c.live_config.as_deref().unwrap_or_default();
    let file = |pod: &str, slot: char| {
        c.files
            .get(&format!("/etc/{}", crate::ingress::endpoints_slot(pod, slot)))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    config
        .lines()
        .filter_map(|l| l.trim().strip_prefix("set $dub_pod "))
        .filter_map(|l| l.strip_suffix(';'))
        .flat_map(|pod| {
            let (a, b) = (file(pod, 'a'), file(pod, 'b'));
            crate::ingress::latest_endpoints([a.as_str(), b.as_str()]).unwrap_or_default()
        })
        .collect()
}

/// Notes what the live ingress config routes to, by pod (running replicas
/// only), and how many replicas run.
fn record(s: &mut State) {
    let routed = routed_servers(s);
    let mut by_pod: HashMap<String, usize> = HashMap::new();
    for c in s.containers.values().filter(|c| c.state == ContainerState::Running) {
        let Some(pod) = c.spec.labels.get(LABEL_POD) else {
            continue;
        };
        let addr = c.ip.map(|ip| format!("{ip}:{}", c.spec.port)).unwrap_or_default();
        if routed.contains(&addr) {
            *by_pod.entry(pod.clone()).or_default() += 1;
        }
    }
    if s.containers.values().any(|c| c.live_config.is_some()) {
        s.routable.push(by_pod);
    }
}

fn version_of(config: &str) -> Option<String> {
    let at = config.find("config-version")?;
    let rest = &config[at..];
    let start = rest.find("return 200 \"")? + "return 200 \"".len();
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].to_string())
}

#[async_trait]
impl Engine for FakeEngine {
    fn api_version(&self) -> String {
        "fake".into()
    }

    async fn reconnect(&self) -> Result<Arc<dyn Engine>> {
        Ok(Arc::new(self.clone()))
    }

    fn is_local(&self) -> bool {
        lock(&self.state).local
    }

    fn network(&self) -> Arc<dyn Network> {
        Arc::new(self.clone())
    }

    async fn ensure_network(&self, name: &str, _instance: &str) -> Result<()> {
        lock(&self.state).networks.insert(name.to_string());
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        lock(&self.state).networks.remove(name);
        Ok(())
    }

    async fn list(&self, instance: &str, _network: &str, pod: Option<&str>) -> Result<Vec<Observed>> {
        let mut s = lock(&self.state);
        FakeEngine::count(&mut s, "list");
        Ok(s.containers
            .values()
            .filter(|c| c.spec.labels.get(LABEL_INSTANCE).map(String::as_str) == Some(instance))
            .filter(|c| pod.is_none() || c.spec.labels.get(LABEL_POD).map(String::as_str) == pod)
            .map(|c| Observed {
                id: c.id.clone(),
                name: c.spec.name.clone(),
                role: c.spec.labels.get(LABEL_ROLE).cloned().unwrap_or_default(),
                pod: c.spec.labels.get(LABEL_POD).cloned(),
                revision: c.spec.labels.get(LABEL_REVISION).cloned(),
                state: c.state,
                status: match (c.state, c.exit_code) {
                    (ContainerState::Exited, Some(code)) => format!("Exited ({code}) just now"),
                    (ContainerState::Running, _) => "Up".into(),
                    _ => "Created".into(),
                },
                ip: c.ip.map(|ip| ip.to_string()),
                created: c.created,
                labels: c.spec.labels.clone(),
                ready: false,
            })
            .collect())
    }

    async fn ensure_image(&self, image: &str, _pull: &super::Pull) -> Result<()> {
        if lock(&self.state).images.contains_key(image) {
            Ok(())
        } else {
            Err(refused(&format!("pulling image {image}"), "no such image"))
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let mut s = lock(&self.state);
        FakeEngine::count(&mut s, "create");
        if s.containers.values().any(|c| c.spec.name == spec.name) {
            return Err(refused("creating container", "name already in use"));
        }
        if !s.images.contains_key(&spec.image) {
            return Err(refused("creating container", "no such image"));
        }
        s.next += 1;
        let n = s.next;
        let id = format!("fake{n:08}");
        let ip = Ipv4Addr::new(10, 99, (n / 250) as u8, (n % 250 + 2) as u8);
        let container = Container {
            id: id.clone(),
            spec: spec.clone(),
            state: ContainerState::Created,
            exit_code: None,
            ip: Some(ip),
            created: crate::clock::now_ms() / 1000,
            published: spec
                .publish
                .map(|at| if at.port() == 0 { 30000 + n as u16 } else { at.port() }),
            // An nginx image has the stream modules (as `dubernetes/nginx:local-4`).
            files: match s.images.get(&spec.image) {
                Some(app) if app.nginx => [
                    "/usr/lib/nginx/modules/ngx_stream_module.so",
                    "/usr/lib/nginx/modules/ngx_stream_js_module.so",
                ]
                .into_iter()
                .map(|p| (p.to_string(), b"\x7fELF".to_vec()))
                .collect(),
                _ => HashMap::new(),
            },
            live_config: None,
            runs: 0,
        };
        s.containers.insert(id.clone(), container);
        self.emit(&s, "create", &id, &[]);
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let mut s = lock(&self.state);
        FakeEngine::count(&mut s, "start");
        let app = FakeEngine::app_of(&s, id);
        let Some(c) = s.containers.get_mut(id) else {
            return Err(refused("starting container", "no such container"));
        };
        if c.state == ContainerState::Running {
            return Ok(());
        }
        if let Some(port) = c.published.filter(|p| s.taken.contains(p)) {
            return Err(refused(
                "starting container",
                &format!("Error starting userland proxy: listen tcp4 127.0.0.1:{port}: bind: address already in use"),
            ));
        }
        let Some(c) = s.containers.get_mut(id) else {
            return Err(refused("starting container", "no such container"));
        };
        c.state = ContainerState::Running;
        c.exit_code = None;
        c.runs += 1;
        let run = c.runs;
        if app.as_ref().is_some_and(|a| a.nginx) {
            c.live_config = c.files.get(CONF).map(|b| String::from_utf8_lossy(b).into_owned());
        }
        self.emit(&s, "start", id, &[]);
        record(&mut s);
        if let Some(app) = app
            && let Some(after) = app.exit_after
        {
            let engine = self.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let mut s = lock(&engine.state);
                if s.containers.get(&id).is_some_and(|c| c.runs == run) {
                    engine.exit(&mut s, &id, app.exit_code);
                }
            });
        }
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let stubborn = {
            let mut s = lock(&self.state);
            FakeEngine::count(&mut s, "stop");
            let Some(c) = s.containers.get(id).filter(|c| c.state == ContainerState::Running) else {
                return Ok(());
            };
            let addr = c.ip.map(|ip| format!("{ip}:{}", c.spec.port)).unwrap_or_default();
            let stubborn = s.images.get(&c.spec.image).is_some_and(|a| a.ignores_sigterm);
            if c.spec.labels.get(LABEL_ROLE).map(String::as_str) == Some("replica")
                && routed_servers(&s).contains(&addr)
            {
                s.stopped_while_routed += 1;
            }
            self.emit(&s, "kill", id, &[("signal", "15")]);
            if stubborn {
                s.stopping += 1;
                s.max_stopping = s.max_stopping.max(s.stopping);
            }
            stubborn
        };
        // Our apps stop at once on SIGTERM; a stubborn one is killed after the grace period.
        if stubborn {
            tokio::time::sleep(grace).await;
        }
        let mut s = lock(&self.state);
        if stubborn {
            s.stopping = s.stopping.saturating_sub(1);
            self.emit(&s, "kill", id, &[("signal", "9")]);
        }
        self.exit(&mut s, id, if stubborn { 137 } else { 0 });
        self.emit(&s, "stop", id, &[]);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let mut s = lock(&self.state);
        FakeEngine::count(&mut s, "remove");
        if s.containers.get(id).is_some_and(|c| c.state == ContainerState::Running) {
            self.emit(&s, "kill", id, &[("signal", "9")]);
            self.exit(&mut s, id, 137);
        }
        if s.containers.contains_key(id) {
            self.emit(&s, "destroy", id, &[]);
            s.containers.remove(id);
            record(&mut s);
        }
        Ok(())
    }

    async fn signal(&self, id: &str, signal: &str) -> Result<()> {
        let mut s = lock(&self.state);
        FakeEngine::count(&mut s, "signal");
        let nginx = FakeEngine::app_of(&s, id).is_some_and(|a| a.nginx);
        let Some(c) = s.containers.get_mut(id).filter(|c| c.state == ContainerState::Running) else {
            return Err(refused("signalling container", "container is not running"));
        };
        if nginx && signal == "HUP" {
            c.live_config = c.files.get(CONF).map(|b| String::from_utf8_lossy(b).into_owned());
            record(&mut s);
        }
        Ok(())
    }

    async fn exec(&self, id: &str, cmd: &[&str]) -> Result<(i64, String)> {
        let mut s = lock(&self.state);
        FakeEngine::count(&mut s, "exec");
        if !s.containers.get(id).is_some_and(|c| c.state == ContainerState::Running) {
            return Err(refused("creating exec", "container is not running"));
        }
        let clash = s.reject_host.as_ref().and_then(|host| {
            let conf = s.containers.get(id)?.files.get(CONF)?;
            let needle = format!("server_name {host};");
            let line = String::from_utf8_lossy(conf).lines().position(|l| l.trim() == needle)? + 1;
            Some(format!("nginx: [emerg] the fake rejects {host} in {CONF}:{line}"))
        });
        match cmd.first() {
            Some(&"nginx") if s.reject_configs => Ok((1, "nginx: [emerg] rejected by the fake".into())),
            Some(&"nginx") if clash.is_some() => Ok((1, clash.unwrap_or_default())),
            _ => Ok((0, String::new())),
        }
    }

    async fn write_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        let mut s = lock(&self.state);
        let Some(c) = s.containers.get_mut(id) else {
            return Err(refused("writing a file", "no such container"));
        };
        c.files.insert(format!("{dir}/{file}"), content.to_vec());
        Ok(())
    }

    async fn write_private_file(&self, id: &str, dir: &str, file: &str, content: &[u8]) -> Result<()> {
        self.write_file(id, dir, file, content).await
    }

    async fn write_files(&self, id: &str, dir: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        let mut s = lock(&self.state);
        let Some(c) = s.containers.get_mut(id) else {
            return Err(refused("writing files", "no such container"));
        };
        for (path, content) in files {
            c.files
                .insert(format!("{}/{path}", dir.trim_end_matches('/')), content.to_vec());
        }
        // Endpoint files are read per request: what a running nginx routes to changed.
        if c.live_config.is_some() {
            record(&mut s);
        }
        Ok(())
    }

    /// A file's own name, or the files under a directory (named from its
    /// last component), as the archive API gives them.
    async fn read_files(&self, id: &str, path: &str, max_bytes: usize) -> Result<Vec<(String, Vec<u8>)>> {
        let s = lock(&self.state);
        let Some(c) = s.containers.get(id) else {
            return Err(refused("reading files", "no such container"));
        };
        let path = path.trim_end_matches('/');
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
        let files: Vec<(String, Vec<u8>)> = c
            .files
            .iter()
            .filter(|(p, _)| p.as_str() == path || p.starts_with(&format!("{path}/")))
            .map(|(p, content)| (p[parent.len()..].trim_start_matches('/').to_string(), content.clone()))
            .collect();
        if files.iter().map(|(_, c)| c.len()).sum::<usize>() > max_bytes {
            return Err(refused("reading files", "too large"));
        }
        Ok(files)
    }

    async fn is_running(&self, id: &str) -> Result<bool> {
        Ok(lock(&self.state)
            .containers
            .get(id)
            .is_some_and(|c| c.state == ContainerState::Running))
    }

    async fn published_port(&self, id: &str, _container_port: u16) -> Result<Option<u16>> {
        Ok(lock(&self.state).containers.get(id).and_then(|c| c.published))
    }

    fn events(&self, instance: &str) -> BoxStream<'static, Result<EngineEvent>> {
        let instance = instance.to_string();
        tokio_stream::wrappers::BroadcastStream::new(self.events.subscribe())
            .filter_map(move |e| {
                let out = match e {
                    Ok(e) if e.attributes.get(LABEL_INSTANCE) == Some(&instance) => Some(Ok(e)),
                    Ok(_) => None,
                    Err(lagged) => Some(Err(refused("reading the event stream", &lagged.to_string()))),
                };
                futures::future::ready(out)
            })
            .boxed()
    }

    async fn log_tail(&self, id: &str, _tail: usize) -> Result<String> {
        let s = lock(&self.state);
        Ok(FakeEngine::app_of(&s, id).map(|a| a.log).unwrap_or_default())
    }

    fn logs(&self, id: &str, _request: LogRequest) -> BoxStream<'static, Result<LogChunk>> {
        let s = lock(&self.state);
        let log = FakeEngine::app_of(&s, id).map(|a| a.log).unwrap_or_default();
        futures::stream::iter([Ok(LogChunk {
            source: LogSource::Stdout,
            bytes: Bytes::from(log),
        })])
        .boxed()
    }
}

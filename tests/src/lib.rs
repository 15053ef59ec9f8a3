//! Test harness: runs the real `dubernetes-server` and `dubectl` binaries
//! against the real Docker engine, each test in its own instance (network,
//! container names, labels), data dir and ports, and removes everything the
//! instance made when the test ends, passed or failed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use std::collections::HashMap;

pub mod engine_proxy;
pub mod exposition;
pub mod multinode;
pub mod partition;

/// A throwaway PostgreSQL (see [`dubernetes_core::pg_cluster`]).
pub use dubernetes_core::pg_cluster::PgCluster;
pub mod pebble;
pub mod pki;

/// The file in its data dir where `dubernetes-server` writes the address its
/// API listens on, once bound (see its `--listen`).
pub const API_ADDRESS_FILE: &str = "api-address";

/// The demo image, v1 and v2 (same app, reports `Version: v2`).
pub const WHOAMI_V1: &str = "dubernetes/whoami:v1";
/// See [`WHOAMI_V1`].
pub const WHOAMI_V2: &str = "dubernetes/whoami:v2";
/// The locally built nginx ingress image.
pub const NGINX_LOCAL: &str = "dubernetes/nginx:local-4";
/// The swarm backend's probe agent image.
pub const PROBE_LOCAL: &str = "dubernetes/probe:local";

/// Which backend a test server runs on: `Docker` (containers on this
/// engine) or `Swarm` (one Swarm service per replica, on a single-node swarm
/// of this engine, made by [`ensure_swarm`] if there is none).
pub use dubernetes_core::Backend;

/// Runs each named `async fn(Backend)` as two tests, `docker::NAME` and
/// `swarm::NAME`: one suite, parameterised by backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod docker {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Docker).await
                }
            )*
        }
        mod swarm {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Swarm).await
                }
            )*
        }
    };
}

/// Makes sure this engine is a swarm manager for the swarm tests: a swarm
/// that is there is used as it is; an engine in no swarm gets a single-node
/// swarm on loopback (`docker swarm init --advertise-addr 127.0.0.1`), which
/// `scripts/test.sh` leaves at the end (by hand: `docker swarm leave --force`).
/// Fails the test with a clear message if no swarm can be had. Safe to call
/// from parallel tests and from test binaries one after another.
pub fn ensure_swarm() {
    static READY: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return;
    }
    let run = |args: &[&str]| -> Result<String, String> {
        let out = Command::new("docker")
            .args(args)
            .output()
            .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "docker {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let mut last = String::new();
    for attempt in 0..5 {
        let state = run(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ])
        .unwrap_or_else(|e| panic!("the swarm tests need a Docker engine: {e}"));
        match state.as_str() {
            "active true" => match run(&["node", "ls", "-q"]) {
                Ok(_) => {
                    *ready = true;
                    return;
                }
                // Docker 20.10: an init right after a leave can give a
                // manager whose every call fails; leave and init again.
                Err(e) => {
                    last = e;
                    let _ = run(&["swarm", "leave", "--force"]);
                }
            },
            "active false" => panic!(
                "this engine is a swarm worker; the swarm tests need a manager (run them on a manager, or leave the swarm)"
            ),
            "inactive" => match run(&[
                "swarm",
                "init",
                "--advertise-addr",
                "127.0.0.1",
                "--listen-addr",
                "127.0.0.1:2377",
            ]) {
                Ok(_) => eprintln!(
                    "dubernetes-tests: made a single-node swarm for the swarm tests (scripts/test.sh leaves it; by hand: docker swarm leave --force)"
                ),
                Err(e) => last = e,
            },
            other => last = format!("swarm state {other:?}"),
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "back-off between synchronous attempts to make a swarm, before any runtime"
        )]
        std::thread::sleep(Duration::from_millis(500 * (attempt + 1)));
    }
    panic!("no swarm manager could be had for the swarm tests: {last}");
}

/// Connects to the engine or fails the test with a message that says what to do.
pub async fn docker() -> Docker {
    let docker = Docker::connect_with_defaults().unwrap_or_else(|e| {
        panic!("cannot connect to the Docker engine ({e}); these tests need a running Docker engine")
    });
    let docker = docker
        .negotiate_version()
        .await
        .unwrap_or_else(|e| panic!("the Docker engine does not answer ({e}); start it (e.g. `service docker start`)"));
    for image in [WHOAMI_V1, WHOAMI_V2, NGINX_LOCAL] {
        if docker.inspect_image(image).await.is_err() {
            panic!("image {image} is missing; build the test images with scripts/build-images.sh");
        }
    }
    docker
}

/// A unique instance name for a test: a DNS label.
pub fn instance_name(test: &str) -> String {
    let suffix: String = format!("{:x}", rand_u32());
    let mut name = format!("t-{test}-{suffix}");
    name.truncate(40);
    name.trim_end_matches('-').to_string()
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Racy: another
/// process (another test's ingress) may bind it before whoever it is handed to
/// does. Only for servers that cannot pick their own port; ours take
/// `127.0.0.1:0` and report the port they bound (see [`TestServer`]).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// `N` free ports, all different: each is held until all are picked (one
/// [`free_port`] after another may hand out the same port twice).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local addr").port())
}

/// Path of a workspace binary, built by `cargo build --workspace --bins`.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing; build the binaries first with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Polls `read` until `done` holds for what it read, or fails the test at
/// the deadline naming the last value read. Returns that value.
pub async fn wait_until<V, F, Fut>(what: &str, timeout: Duration, mut read: F, done: impl Fn(&V) -> bool) -> V
where
    V: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = V>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let v = read().await;
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; the last value read: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some`, or fails the test at the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes every service, container and the network of an instance.
pub async fn purge_instance(docker: &Docker, instance: &str) {
    let filters = HashMap::from([("label", vec![format!("io.dubernetes.instance={instance}")])]);
    // Swarm services of the swarm backend (an engine in no swarm refuses the list).
    let mut had_services = false;
    let options = bollard::query_parameters::ListServicesOptionsBuilder::new()
        .filters(&filters)
        .build();
    if let Ok(services) = docker.list_services(Some(options)).await {
        for s in services {
            if let Some(id) = s.id {
                had_services = true;
                let _ = docker.delete_service(&id).await;
            }
        }
    }
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    if let Ok(containers) = docker.list_containers(Some(options)).await {
        for c in containers {
            if let Some(id) = c.id {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptionsBuilder::new().force(true).v(true).build()),
                    )
                    .await;
            }
        }
    }
    // The tasks of deleted services leave the overlay network a moment later;
    // a container just removed may hold a bridge network's endpoint a moment
    // too.
    let deadline = Instant::now() + Duration::from_secs(if had_services { 20 } else { 5 });
    // By id: two networks of one name (the bug of servers starting at once)
    // cannot be removed by name.
    let name = format!("dub-{instance}");
    loop {
        let by_name = HashMap::from([("name".to_string(), vec![name.clone()])]);
        let options = bollard::query_parameters::ListNetworksOptionsBuilder::new()
            .filters(&by_name)
            .build();
        let ids: Vec<String> = match docker.list_networks(Some(options)).await {
            Ok(list) => list
                .into_iter()
                .filter(|n| n.name.as_deref() == Some(name.as_str()))
                .filter_map(|n| n.id)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut left = false;
        for id in ids {
            left |= docker.remove_network(&id).await.is_err();
        }
        if !left || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Named volumes outlive their pods on purpose: the instance's go with it here.
    let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
        .filters(&filters)
        .build();
    if let Ok(list) = docker.list_volumes(Some(options)).await {
        for v in list.volumes.unwrap_or_default() {
            let _ = docker
                .remove_volume(&v.name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await;
        }
    }
    unpin_volumes(docker, instance).await;
}

/// Removes the swarm node labels that pin the instance's volumes to a node
/// (`io.dubernetes.volume.dub-<instance>_<name>`, see docs/spec.md,
/// "Placement"); nothing when the engine is in no swarm.
async fn unpin_volumes(docker: &Docker, instance: &str) {
    let prefix = format!("io.dubernetes.volume.dub-{instance}_");
    let Ok(nodes) = docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
    else {
        return;
    };
    for node in nodes {
        let (Some(id), Some(mut spec), Some(version)) = (node.id, node.spec, node.version.and_then(|v| v.index)) else {
            continue;
        };
        let labels = spec.labels.get_or_insert_with(Default::default);
        let before = labels.len();
        labels.retain(|k, _| !k.starts_with(&prefix));
        if labels.len() != before {
            let options = bollard::query_parameters::UpdateNodeOptionsBuilder::new()
                .version(i64::try_from(version).unwrap_or(i64::MAX))
                .build();
            let _ = docker.update_node(&id, spec, options).await;
        }
    }
}

/// Replicas of an instance on the swarm backend (optionally one pod) as
/// (service id, state of its newest task as Docker names container states,
/// image as the user wrote it).
pub async fn services(docker: &Docker, instance: &str, pod: Option<&str>) -> Vec<(String, String, String)> {
    let mut labels = vec![
        format!("io.dubernetes.instance={instance}"),
        "io.dubernetes.role=replica".to_string(),
    ];
    if let Some(pod) = pod {
        labels.push(format!("io.dubernetes.pod={pod}"));
    }
    let filters = HashMap::from([("label", labels)]);
    let options = bollard::query_parameters::ListServicesOptionsBuilder::new()
        .filters(&filters)
        .build();
    let list = docker.list_services(Some(options)).await.expect("list services");
    let mut out = Vec::new();
    for s in list {
        let id = s.id.unwrap_or_default();
        let image = s
            .spec
            .and_then(|s| s.labels)
            .and_then(|mut l| l.remove("io.dubernetes.image"))
            .unwrap_or_default();
        let state = newest_task(docker, &id)
            .await
            .and_then(|t| t.status)
            .and_then(|s| s.state)
            .map_or("created", |state| {
                use bollard::models::TaskState as S;
                match state {
                    S::RUNNING => "running",
                    S::COMPLETE | S::FAILED | S::SHUTDOWN | S::REJECTED | S::ORPHANED | S::REMOVE => "exited",
                    _ => "created",
                }
            });
        out.push((id, state.to_string(), image));
    }
    out.sort();
    out
}

/// The newest task of a service.
async fn newest_task(docker: &Docker, service: &str) -> Option<bollard::models::Task> {
    let filters = HashMap::from([("service", vec![service.to_string()])]);
    let options = bollard::query_parameters::ListTasksOptionsBuilder::new()
        .filters(&filters)
        .build();
    let tasks = docker.list_tasks(Some(options)).await.ok()?;
    tasks
        .into_iter()
        .max_by_key(|t| t.version.as_ref().and_then(|v| v.index).unwrap_or(0))
}

/// Containers of an instance (optionally one pod) as (id, state, image).
pub async fn containers(docker: &Docker, instance: &str, pod: Option<&str>) -> Vec<(String, String, String)> {
    let mut labels = vec![
        format!("io.dubernetes.instance={instance}"),
        "io.dubernetes.role=replica".to_string(),
    ];
    if let Some(pod) = pod {
        labels.push(format!("io.dubernetes.pod={pod}"));
    }
    let filters = HashMap::from([("label", labels)]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let list = docker.list_containers(Some(options)).await.expect("list containers");
    let mut out: Vec<_> = list
        .into_iter()
        .map(|c| {
            (
                c.id.unwrap_or_default(),
                c.state.map(|s| s.to_string()).unwrap_or_default(),
                c.image.unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Clients drop idle connections before the server does (it closes a
/// connection that sends no request head for `--header-timeout-seconds`,
/// default 10 s); otherwise a request sent just as the server closes fails.
pub const CLIENT_IDLE: Duration = Duration::from_secs(4);

/// A fresh random API token for one test server.
pub fn random_token() -> String {
    let a = rand_u32();
    let b = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("test-{a:08x}-{b:x}-{:x}", std::process::id())
}

/// Headers that carry `token` as a bearer token.
pub fn auth_headers(token: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token is a header value"),
    );
    headers
}

/// A real `dubernetes-server` process in its own instance.
pub struct TestServer {
    /// Instance name.
    pub instance: String,
    /// API base URL.
    pub url: String,
    /// Data dir (kept across restarts of the same TestServer); the server
    /// log is written here too.
    pub data_dir: tempfile::TempDir,
    /// The `--data-dir` the server runs with: `data_dir` itself, or a path below it.
    pub data_path: PathBuf,
    child: Option<Child>,
    /// HTTP client for the API, sending the server's token.
    pub http: reqwest::Client,
    /// HTTP client without credentials (for the ingress, and to test auth).
    pub anonymous: reqwest::Client,
    /// The API token the server was started with.
    pub token: String,
    extra_args: Vec<String>,
    /// Extra environment of the server process (e.g. `DOCKER_HOST`).
    extra_env: Vec<(String, String)>,
    /// The backend it runs on.
    pub backend: Backend,
    /// Let the server generate its own token into the data dir.
    generated_token: bool,
    /// With TLS for the API: the CA file clients trust (the server's
    /// certificate and key sit beside it in the data dir).
    pub api_ca_file: Option<PathBuf>,
    /// The network namespace (`/run/netns/NAME`) the server runs in, the
    /// address of that namespace its API listens on, and the host's address
    /// the ingress publishes on; None: the host's, all on 127.0.0.1.
    netns: Option<(String, std::net::IpAddr, std::net::IpAddr)>,
}

impl TestServer {
    /// Starts a server for a new instance and waits until its API answers.
    pub async fn start(test: &str) -> TestServer {
        Self::start_with(test, &[]).await
    }

    /// Starts a server for a new instance on `backend`.
    pub async fn start_on(backend: Backend, test: &str) -> TestServer {
        Self::start_with_on(backend, test, &[]).await
    }

    /// Like [`start_on`](Self::start_on), with extra server flags.
    pub async fn start_with_on(backend: Backend, test: &str, extra_args: &[&str]) -> TestServer {
        let test = match backend {
            Backend::Docker => test.to_string(),
            Backend::Swarm => format!("sw-{test}"),
        };
        Self::start_custom_backend(backend, &test, None, None, extra_args, &[], false, None).await
    }

    /// Starts a server on the swarm backend with extra flags and environment
    /// (e.g. `DOCKER_HOST` of a [`multinode::MultiNode`]'s manager).
    pub async fn start_swarm_with_env(test: &str, extra_args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let test = format!("sw-{test}");
        Self::start_custom_backend(Backend::Swarm, &test, None, None, extra_args, env, false, None).await
    }

    /// Starts a server without `--token`/`DUBERNETES_TOKEN`: it generates its
    /// own into `<data-dir>/token`, which this then uses.
    pub async fn start_generating_token(test: &str) -> TestServer {
        Self::start_inner(test, &[], true).await
    }

    /// Like [`start`](Self::start), with extra server flags.
    pub async fn start_with(test: &str, extra_args: &[&str]) -> TestServer {
        Self::start_inner(test, extra_args, false).await
    }

    /// Like [`start_with`](Self::start_with), with extra environment variables
    /// for the server process (e.g. `DOCKER_HOST` pointing at an
    /// [`engine_proxy::EngineProxy`]).
    pub async fn start_with_env(test: &str, extra_args: &[&str], env: &[(&str, &str)]) -> TestServer {
        Self::start_full(test, extra_args, env, false).await
    }

    async fn start_inner(test: &str, extra_args: &[&str], generated_token: bool) -> TestServer {
        Self::start_custom_env(test, None, None, extra_args, &[], generated_token, None).await
    }

    async fn start_full(test: &str, extra_args: &[&str], env: &[(&str, &str)], generated_token: bool) -> TestServer {
        Self::start_custom_env(test, None, None, extra_args, env, generated_token, None).await
    }

    /// Like [`start_with`](Self::start_with), serving the API over HTTPS
    /// (`--tls-cert`/`--tls-key`) with a certificate for 127.0.0.1 from `ca`;
    /// [`url`](Self::url) is `https://127.0.0.1:PORT` and the clients trust `ca`.
    pub async fn start_with_api_tls(test: &str, extra_args: &[&str], ca: &pki::TestCa) -> TestServer {
        Self::start_custom_env(test, None, None, extra_args, &[], false, Some(ca)).await
    }

    /// Starts a server with a given instance (None: a new one) and data dir
    /// below the test's temporary directory (None: that directory itself).
    pub async fn start_custom(
        test: &str,
        instance: Option<&str>,
        data_subdir: Option<&str>,
        extra_args: &[&str],
        generated_token: bool,
    ) -> TestServer {
        Self::start_custom_env(test, instance, data_subdir, extra_args, &[], generated_token, None).await
    }

    /// Starts one of several servers of `instance` sharing the PostgreSQL
    /// store at `store` (each with its own data dir, token and API port).
    pub async fn start_shared(test: &str, instance: &str, store: &str, extra_args: &[&str]) -> TestServer {
        let mut args = vec!["--store", store];
        args.extend_from_slice(extra_args);
        Self::start_custom_env(test, Some(instance), None, &args, &[], false, None).await
    }

    /// Starts one of several servers sharing the PostgreSQL store at `store`,
    /// inside the network namespace `/run/netns/NETNS` (its API on `address`
    /// there; the Docker engine is still the host's, through its socket, and
    /// the ingress publishes on `ingress`, an address of the host that the
    /// namespace reaches).
    pub async fn start_shared_in(
        test: &str,
        instance: &str,
        store: &str,
        netns: &str,
        address: std::net::IpAddr,
        ingress: std::net::IpAddr,
    ) -> TestServer {
        let mut server = Self::unstarted(
            Backend::Docker,
            test,
            Some(instance),
            None,
            &["--store", store],
            &[],
            false,
            None,
        )
        .await;
        server.netns = Some((netns.to_string(), address, ingress));
        server.spawn().await;
        server
    }

    /// Whether this server leads its instance (`GET /healthz`); None when it does not answer.
    pub async fn leads(&self) -> Option<bool> {
        let response = self.anonymous.get(format!("{}/healthz", self.url)).send().await.ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        body["leader"].as_bool()
    }

    async fn start_custom_env(
        test: &str,
        instance: Option<&str>,
        data_subdir: Option<&str>,
        extra_args: &[&str],
        env: &[(&str, &str)],
        generated_token: bool,
        tls: Option<&pki::TestCa>,
    ) -> TestServer {
        Self::start_custom_backend(
            Backend::Docker,
            test,
            instance,
            data_subdir,
            extra_args,
            env,
            generated_token,
            tls,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_custom_backend(
        backend: Backend,
        test: &str,
        instance: Option<&str>,
        data_subdir: Option<&str>,
        extra_args: &[&str],
        env: &[(&str, &str)],
        generated_token: bool,
        tls: Option<&pki::TestCa>,
    ) -> TestServer {
        let mut server = Self::unstarted(
            backend,
            test,
            instance,
            data_subdir,
            extra_args,
            env,
            generated_token,
            tls,
        )
        .await;
        server.spawn().await;
        server
    }

    #[allow(clippy::too_many_arguments)]
    async fn unstarted(
        backend: Backend,
        test: &str,
        instance: Option<&str>,
        data_subdir: Option<&str>,
        extra_args: &[&str],
        env: &[(&str, &str)],
        generated_token: bool,
        tls: Option<&pki::TestCa>,
    ) -> TestServer {
        let docker = docker().await;
        if backend == Backend::Swarm {
            assert!(
                docker.inspect_image(PROBE_LOCAL).await.is_ok(),
                "image {PROBE_LOCAL} is missing; build the test images with scripts/build-images.sh"
            );
            ensure_swarm();
        }
        let instance = instance.map_or_else(|| instance_name(test), str::to_string);
        let data_dir = tempfile::tempdir().expect("tempdir");
        let data_path = data_subdir.map_or_else(|| data_dir.path().to_path_buf(), |sub| data_dir.path().join(sub));
        let token = random_token();
        let mut extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let mut api_ca_file = None;
        let mut scheme = "http";
        if let Some(ca) = tls {
            let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
            let dir = data_dir.path().join("api-tls");
            std::fs::create_dir_all(&dir).expect("api-tls dir");
            let (cert, key, ca_file) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
            std::fs::write(&cert, &leaf.chain_pem).expect("write cert");
            std::fs::write(&key, &leaf.key_pem).expect("write key");
            std::fs::write(&ca_file, &ca.cert_pem).expect("write CA");
            extra_args.extend(["--tls-cert".into(), cert.display().to_string()]);
            extra_args.extend(["--tls-key".into(), key.display().to_string()]);
            api_ca_file = Some(ca_file);
            scheme = "https";
        }
        let api_client = |ca: &Option<PathBuf>| {
            let builder = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout(CLIENT_IDLE);
            match ca {
                Some(file) => {
                    let pem = std::fs::read(file).expect("read CA");
                    let root = reqwest::Certificate::from_pem(&pem).expect("CA certificate");
                    builder.add_root_certificate(root).https_only(true)
                }
                None => builder,
            }
        };
        let http = api_client(&api_ca_file)
            .default_headers(auth_headers(&token))
            .build()
            .expect("client");
        let anonymous = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(CLIENT_IDLE)
            .build()
            .expect("client");
        TestServer {
            // The port is known once the server bound it (see `spawn`).
            url: format!("{scheme}://127.0.0.1:0"),
            instance,
            data_dir,
            data_path,
            child: None,
            http,
            anonymous,
            token,
            extra_args,
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            generated_token,
            backend,
            api_ca_file,
            netns: None,
        }
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))
            .expect("log file");
        // In a namespace: `nsenter` execs the server (same pid), not `ip netns
        // exec`, which remounts /sys.
        let (mut command, listen, ingress) = match &self.netns {
            Some((netns, address, ingress)) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{netns}"))
                    .arg(binary("dubernetes-server"));
                let on = |ip| std::net::SocketAddr::new(ip, 0).to_string();
                (c, on(*address), on(*ingress))
            }
            None => (
                Command::new(binary("dubernetes-server")),
                "127.0.0.1:0".to_string(),
                "127.0.0.1:0".to_string(),
            ),
        };
        command.env_remove("DUBERNETES_TOKEN");
        if !self.generated_token {
            command.env("DUBERNETES_TOKEN", &self.token);
        }
        // The server picks its own port and writes it to DATA_DIR/api-address
        // once bound: no port is handed over that another process could take
        // in between. A file left by an earlier run of this server goes first.
        let address_file = self.data_path.join(API_ADDRESS_FILE);
        match std::fs::remove_file(&address_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", address_file.display()),
        }
        let child = command
            .args(["--listen", &listen])
            .arg("--data-dir")
            .arg(&self.data_path)
            .args(["--instance", &self.instance])
            .args(["--ingress-listen", &ingress])
            .args(["--ingress-tls-listen", &ingress])
            .args(["--ingress-image", NGINX_LOCAL])
            .args(["--stop-grace-seconds", "2"])
            .args(["--backend", self.backend.as_str()])
            .args(&self.extra_args)
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info,dubernetes_core=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn dubernetes-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = loop {
            if let Ok(text) = std::fs::read_to_string(&address_file)
                && let Ok(address) = text.trim().parse::<std::net::SocketAddr>()
            {
                break address;
            }
            self.fail_if_exited("before it bound its API port");
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the server to write {}; its log ends:\n{}",
                address_file.display(),
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let scheme = if self.api_ca_file.is_some() { "https" } else { "http" };
        self.url = format!("{scheme}://{}", std::net::SocketAddr::new(address.ip(), address.port()));
        let url = format!("{}/healthz", self.url);
        let http = self.http.clone();
        loop {
            let up = http.get(&url).send().await.is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            self.fail_if_exited("before it answered");
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the server's API at {}; its log ends:\n{}",
                self.url,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.generated_token {
            let file = self.data_path.join("token");
            self.token = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
                .trim()
                .to_string();
            let builder = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_idle_timeout(CLIENT_IDLE);
            let builder = match &self.api_ca_file {
                Some(file) => builder.add_root_certificate(
                    reqwest::Certificate::from_pem(&std::fs::read(file).expect("read CA")).expect("CA certificate"),
                ),
                None => builder,
            };
            self.http = builder
                .default_headers(auth_headers(&self.token))
                .build()
                .expect("client");
        }
    }

    /// Fails the test at once, with the end of the server's log, if the
    /// server process has exited.
    fn fail_if_exited(&mut self, when: &str) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.child = None;
            panic!(
                "dubernetes-server of instance {} exited ({status}) {when}; its log ends:\n{}",
                self.instance,
                self.log_tail(40)
            );
        }
    }

    /// Stops the server with SIGTERM (graceful) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                #[expect(
                    clippy::disallowed_methods,
                    reason = "a synchronous poll of a stopping child in Drop, bounded by its deadline"
                )]
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server again on the same instance and data dir (on a port
    /// it picks again: [`url`](Self::url) changes).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Starts the server again after a stop or kill.
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// The replicas of this instance (optionally of one pod) as (id, state,
    /// image): containers on the docker backend, services on the swarm one.
    pub async fn replicas(&self, pod: Option<&str>) -> Vec<(String, String, String)> {
        let docker = docker().await;
        match self.backend {
            Backend::Docker => containers(&docker, &self.instance, pod).await,
            Backend::Swarm => services(&docker, &self.instance, pod).await,
        }
    }

    /// Kills a replica (by the id [`replicas`](Self::replicas) gives) with
    /// SIGKILL, as `docker kill`: its container, or its task's container.
    pub async fn kill_replica(&self, id: &str) {
        let docker = docker().await;
        let container = match self.backend {
            Backend::Docker => id.to_string(),
            Backend::Swarm => newest_task(&docker, id)
                .await
                .and_then(|t| t.status?.container_status?.container_id)
                .unwrap_or_else(|| panic!("service {id} has no task container")),
        };
        docker
            .kill_container(&container, None::<bollard::query_parameters::KillContainerOptions>)
            .await
            .expect("kill a replica");
    }

    /// Runs `dubectl` against this server.
    pub fn dubectl(&self, args: &[&str]) -> Output {
        Command::new(binary("dubectl"))
            .args(args)
            .env("DUBERNETES_SERVER", &self.url)
            .env("DUBERNETES_TOKEN", &self.token)
            .envs(self.api_ca_file.iter().map(|f| ("DUBERNETES_CA_FILE", f)))
            .env("NO_COLOR", "1")
            .output()
            .expect("run dubectl")
    }

    /// Runs `dubectl` with stdin.
    pub fn dubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(binary("dubectl"))
            .args(args)
            .env("DUBERNETES_SERVER", &self.url)
            .env("DUBERNETES_TOKEN", &self.token)
            .envs(self.api_ca_file.iter().map(|f| ("DUBERNETES_CA_FILE", f)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("dubectl output")
    }

    /// `GET path` on the API, as JSON.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The desired state as stored: every pod's name, generation, spec and
    /// update time (no observed status, which changes on its own).
    pub async fn desired_state(&self) -> serde_json::Value {
        let (status, pods) = self.get_json("/v1/pods").await;
        assert_eq!(status, 200, "GET /v1/pods: {pods}");
        let pods = pods.as_array().cloned().unwrap_or_default();
        serde_json::Value::Array(
            pods.iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p["name"], "generation": p["generation"],
                        "spec": p["spec"], "updated_at": p["updated_at"],
                    })
                })
                .collect(),
        )
    }

    /// Applies a YAML spec through `PUT /v1/pods/{name}`.
    pub async fn put_yaml(&self, name: &str, yaml: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .put(format!("{}/v1/pods/{name}", self.url))
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .expect("PUT");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// The ingress's host port, once it runs.
    pub async fn ingress_port(&self) -> u16 {
        wait_for("the ingress port", Duration::from_secs(60), || async {
            let (_, body) = self.get_json("/v1/ingress").await;
            body["port"].as_u64().map(|p| p as u16)
        })
        .await
    }

    /// One request through the ingress with a Host header: (status, body).
    pub async fn via_ingress(&self, host: &str) -> Result<(u16, String), String> {
        let port = self.ingress_port().await;
        let response = self
            .anonymous
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", host)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(|e| e.to_string())?))
    }

    /// Waits until the pod is fully rolled out (per the API).
    pub async fn wait_converged(&self, name: &str, timeout: Duration) -> serde_json::Value {
        wait_for(&format!("pod {name} to converge"), timeout, || async {
            let (status, pod) = self.get_json(&format!("/v1/pods/{name}")).await;
            let s = &pod["status"];
            let converged = status == 200
                && s["observed_generation"] == pod["generation"]
                && s["ready_replicas"] == s["desired_replicas"]
                && s["updated_replicas"] == s["desired_replicas"]
                && s["current_replicas"] == s["desired_replicas"];
            converged.then_some(pod)
        })
        .await
    }

    /// The nginx config the ingress container has on disk right now (what it serves).
    pub async fn ingress_config(&self) -> String {
        let docker = docker().await;
        let ingress = format!("dub-{}-ingress", self.instance);
        let bytes = container_file(&docker, &ingress, "/etc/nginx/conf.d/default.conf").await;
        String::from_utf8(bytes).expect("utf-8 config")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The events of `pod`, as the API lists them.
    pub async fn events(&self, pod: &str) -> Vec<serde_json::Value> {
        let (status, events) = self.get_json(&format!("/v1/events?pod={pod}")).await;
        assert_eq!(status, 200, "GET /v1/events: {events}");
        events.as_array().cloned().unwrap_or_default()
    }

    /// Waits for an event of `pod` with this reason (and `kind`, when
    /// given: `Normal` or `Warning`); returns it.
    pub async fn wait_event(&self, pod: &str, reason: &str, kind: Option<&str>) -> serde_json::Value {
        wait_for(
            &format!("a {reason} event of {pod}"),
            Duration::from_secs(60),
            || async {
                self.events(pod)
                    .await
                    .into_iter()
                    .find(|e| e["reason"] == reason && kind.is_none_or(|k| e["kind"] == k))
            },
        )
        .await
    }

    /// Waits for a running container of `pod` that is none of `not` (on
    /// the swarm backend, a task's container); returns its id.
    pub async fn running_container(&self, pod: &str, not: &[String]) -> String {
        let docker = docker().await;
        wait_for(
            &format!("a running replica of {pod}"),
            Duration::from_secs(90),
            || async {
                containers(&docker, &self.instance, Some(pod))
                    .await
                    .into_iter()
                    .find(|(id, state, _)| state == "running" && !not.contains(id))
                    .map(|(id, _, _)| id)
            },
        )
        .await
    }

    /// Writes `yaml` into the data dir and runs `dubectl apply -f` on it,
    /// which must succeed; returns dubectl's output.
    pub fn apply_file(&self, yaml: &str) -> Output {
        let file = self.data_dir.path().join("pod.yaml");
        std::fs::write(&file, yaml).expect("write spec");
        let out = self.dubectl(&["apply", "-f", file.to_str().expect("path")]);
        assert!(out.status.success(), "apply: {}", stderr(&out));
        out
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            // The whole log outlives the data dir, for a look afterwards.
            let kept = std::env::temp_dir()
                .join("dubernetes-test-logs")
                .join(format!("{}.log", self.instance));
            let saved = kept.parent().is_some_and(|dir| std::fs::create_dir_all(dir).is_ok())
                && std::fs::write(&kept, &log).is_ok();
            // The engine's exec events (a test's own probes) are noise here.
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !l.contains("engine event action=\"exec_"))
                .take(150)
                .collect();
            eprintln!(
                "---- server log of instance {} (last lines but exec events; whole log: {}) ----",
                self.instance,
                if saved {
                    kept.display().to_string()
                } else {
                    "not saved".to_string()
                }
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let instance = self.instance.clone();
        // Drop may run inside a runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    if let Ok(docker) = Docker::connect_with_defaults() {
                        purge_instance(&docker, &instance).await;
                        // A create the killed server had already sent may land
                        // after the first purge listed the instance: purge again.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        purge_instance(&docker, &instance).await;
                    }
                });
            }
        })
        .join();
    }
}

/// The next server-sent event of a stream as (event, data); None when it ends.
pub async fn next_sse(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
) -> Option<(String, String)> {
    use futures::StreamExt as _;
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if data.is_empty() {
                continue;
            }
            return Some((event, data));
        }
        let chunk = stream.next().await?.ok()?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Runs a command in a container (through the engine's exec API, as a test
/// looks inside a replica); its exit code and its output (stdout and stderr).
pub async fn exec_in_container(docker: &Docker, id: &str, cmd: &[&str]) -> (i64, String) {
    use futures::StreamExt as _;
    let config = bollard::exec::CreateExecOptions {
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(id, config).await.expect("create exec");
    let mut out = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.expect("start exec")
    {
        while let Some(chunk) = output.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.expect("exec output").into_bytes()));
        }
    }
    let code = docker
        .inspect_exec(&exec.id)
        .await
        .expect("inspect exec")
        .exit_code
        .unwrap_or(-1);
    (code, out)
}

/// The bytes of a file of a container, through the engine's archive API
/// (images with no shell too).
pub async fn container_file(docker: &Docker, id: &str, path: &str) -> Vec<u8> {
    use futures::TryStreamExt as _;
    let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
        .path(path)
        .build();
    let chunks: Vec<bytes::Bytes> = docker
        .download_from_container(id, Some(options))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("reading {path} in {id}: {e}"));
    let tar_bytes: Vec<u8> = chunks.concat();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entry = archive
        .entries()
        .expect("tar")
        .next()
        .expect("one file")
        .expect("entry");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read the file");
    bytes
}

/// Runs the `docker` command: (success, stdout and stderr).
pub fn docker_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().expect("run docker");
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

/// Text of a command's stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Text of a command's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Peak resident memory of a process (`VmHWM` in `/proc/<pid>/status`), in KiB.
pub fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

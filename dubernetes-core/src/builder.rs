//! Building an instance: the checks that run before anything changes (data
//! dir, ownership of what runs), then the store, the network, the ingress and
//! the controller, in that order.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::controller::{BackoffSettings, ControllerSettings};
use crate::data_dir::DataDirLock;
use crate::error::{Error, Result};
use crate::ingress::IngressSettings;
use crate::metrics::Metrics;
use crate::orchestrator::{Dubernetes, Handle};
use crate::owned_engine::Runtime;
use crate::ownership::{Facts, Ownership, Seen};
use crate::spec::PodSpec;
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::watch::Feed;

/// Where in the data dir the ingress's endpoint files are kept (see
/// [`IngressSettings::endpoints_dir`]).
pub const INGRESS_ENDPOINTS_DIR: &str = "ingress";

/// The directory of the data dir where the files of `secret_files` are
/// written (`0700`; files `0444` inside, bound read-only into replicas).
pub const SECRET_FILES_DIR: &str = "secret-files";

/// Builds a [`Dubernetes`] instance.
#[derive(Debug, Clone)]
pub struct DubernetesBuilder {
    instance: String,
    data_dir: Option<PathBuf>,
    ingress: IngressSettings,
    resync: Duration,
    stop_grace: Duration,
    engine_concurrency: usize,
    backoff: BackoffSettings,
    max_pods: u32,
    max_replicas: u32,
    runs: (usize, std::time::Duration),
    drain: Duration,
    adopt_foreign: bool,
    backend: crate::engine::Backend,
    /// The engine to use; None: connect to Docker.
    engine: Option<Arc<dyn crate::engine::Engine>>,
    /// A `postgres://` URL: a store shared by several servers (None: SQLite).
    postgres: Option<String>,
    /// Where `access.tls: auto` certificates come from; None: no ACME.
    acme: Option<crate::acme::AcmeSettings>,
    secrets_key_file: Option<PathBuf>,
}

impl Default for DubernetesBuilder {
    fn default() -> Self {
        DubernetesBuilder {
            instance: "default".into(),
            data_dir: None,
            ingress: IngressSettings::default(),
            resync: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            engine_concurrency: 16,
            backoff: BackoffSettings::default(),
            max_pods: 1000,
            max_replicas: crate::spec::MAX_REPLICAS,
            runs: (
                crate::orchestrator::runs::DEFAULT_MAX_RUNS,
                crate::orchestrator::runs::DEFAULT_RUN_RETENTION,
            ),
            drain: Duration::from_secs(1),
            adopt_foreign: false,
            backend: crate::engine::Backend::Docker,
            engine: None,
            postgres: None,
            acme: None,
            secrets_key_file: None,
        }
    }
}

impl Dubernetes {
    /// A builder with defaults: instance `default`, in-memory store, official nginx ingress on port 80.
    pub fn builder() -> DubernetesBuilder {
        DubernetesBuilder::default()
    }
}

impl DubernetesBuilder {
    /// Runs on this engine instead of connecting to Docker (the fake engine's tests).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn engine(mut self, engine: Arc<dyn crate::engine::Engine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// The instance name (a DNS label): it namespaces the network, container
    /// names and labels, so several instances share one engine safely.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = instance.into();
        self
    }

    /// Keep the SQLite store in `dir/dubernetes.db`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Keep the store in the PostgreSQL database at `url` (`postgres://...`)
    /// instead of SQLite: any number of servers of one instance may share
    /// it. One of them leads (acts on the engine); the others serve the API
    /// from the store (see [`Dubernetes::is_leader`]). The data dir, when
    /// given, is still this server's own (locked; the server keeps its token there).
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.postgres = Some(url.into());
        self
    }

    /// Keep the store in memory (throwaway use). This is the default.
    pub fn in_memory(mut self) -> Self {
        self.data_dir = None;
        self
    }

    /// Obtains certificates for `access.tls: auto` hosts from this ACME directory.
    /// The file holding the key that seals secret values (32 bytes, raw or
    /// base64; created `0600` when missing). Default: `secrets.key` in the
    /// data dir; a PostgreSQL store needs one all its servers share.
    pub fn secrets_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secrets_key_file = Some(path.into());
        self
    }

    /// Certificates by ACME for `access.tls: auto`.
    pub fn acme(mut self, acme: crate::acme::AcmeSettings) -> Self {
        self.acme = Some(acme);
        self
    }

    /// The ingress container's image, listen addresses and limits.
    pub fn ingress(mut self, ingress: IngressSettings) -> Self {
        self.ingress = ingress;
        self
    }

    /// How often everything is re-checked even without events (default 30 s).
    pub fn resync_interval(mut self, every: Duration) -> Self {
        self.resync = every;
        self
    }

    /// How long a replica gets between SIGTERM and SIGKILL (default 10 s).
    pub fn stop_grace_period(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// How long a replica taken out of the ingress keeps running before it is
    /// stopped, so requests nginx already sent it can finish (default 1 s).
    pub fn drain_period(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// How many engine calls run at once (default 16).
    pub fn engine_concurrency(mut self, n: usize) -> Self {
        self.engine_concurrency = n;
        self
    }

    /// Crash-loop backoff.
    pub fn backoff(mut self, backoff: BackoffSettings) -> Self {
        self.backoff = backoff;
        self
    }

    /// Most pods this instance accepts (default 1000).
    pub fn max_pods(mut self, n: u32) -> Self {
        self.max_pods = n;
        self
    }

    /// One-off runs (`dubectl run`): at most `max` running at once
    /// (default [`DEFAULT_MAX_RUNS`](crate::defaults::DEFAULT_MAX_RUNS)), an exited one
    /// kept `retention` for its log (default [`DEFAULT_RUN_RETENTION`](crate::defaults::DEFAULT_RUN_RETENTION)).
    pub fn runs(mut self, max: usize, retention: std::time::Duration) -> Self {
        self.runs = (max, retention);
        self
    }

    /// Most replicas one pod may ask for (default and ceiling: [`MAX_REPLICAS`](crate::limits::MAX_REPLICAS)).
    pub fn max_replicas(mut self, n: u32) -> Self {
        self.max_replicas = n.min(crate::spec::MAX_REPLICAS);
        self
    }

    /// Which engine to drive: one Docker engine (the default) or a Docker
    /// Swarm through one of its managers (each replica a service; see
    /// `docs/architecture.md`). The swarm backend refuses to start when the
    /// engine is not a swarm manager.
    pub fn backend(mut self, backend: crate::engine::Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Take over containers of this instance that another store made (or
    /// that carry no store label), instead of refusing to start
    /// ([`Error::ForeignContainers`]). They are adopted as they run: none is
    /// stopped or replaced; those of pods this store does not have are left
    /// alone until a pod of that name is applied. Default: off.
    pub fn adopt_foreign(mut self, adopt: bool) -> Self {
        self.adopt_foreign = adopt;
        self
    }

    /// The name responder's address on the instance network, or None (pods
    /// get no names, and replicas keep the engine's default DNS) when the
    /// network reserves none or the responder's image is missing: a replica
    /// must never name a DNS server that cannot run.
    async fn names_address(&self, runtime: &Runtime, network: &str, image: &str) -> Option<std::net::IpAddr> {
        let address = match runtime.names_address(network).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                tracing::warn!(
                    network,
                    "the instance network reserves no address for the name responder (made by an older version or by hand?); pods get no names until it is made anew"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(network, error = %e, "could not read the instance network; pods get no names");
                return None;
            }
        };
        if let Err(e) = runtime.ensure_image(image, &crate::engine::Pull::if_missing()).await {
            tracing::warn!(image, error = %e, "the name responder's image is missing (build it with scripts/build-images.sh, or set DUBERNETES_NAMES_IMAGE); pods get no names");
            return None;
        }
        Some(address)
    }

    /// Connects to the engine, opens the store, checks that it owns every
    /// container of the instance, and starts the controller.
    ///
    /// Order matters, so that a mistaken start harms nothing: the data dir is
    /// checked (and, if it holds a store, locked) first; then every container
    /// of the instance is listed and judged (see docs/security.md); only when
    /// none is foreign (or `adopt_foreign` is on) is a new store created, the
    /// decision recorded, and the controller started. A refusal changes
    /// nothing: no file, no container, no network.
    pub async fn build(self) -> Result<Dubernetes> {
        self.check_instance()?;
        let dir = self.data_dir.as_deref().map(crate::data_dir::absolute).transpose()?;
        let existing = self.open_existing(dir.as_deref()).await?;
        let facts = match &existing {
            Some((_, store)) => store.ownership_facts().await?,
            None => crate::store::OwnershipFacts::default(),
        };
        let store_id = facts.id.clone().unwrap_or_else(crate::ids::new_id);
        let dir_label = dir
            .as_ref()
            .map_or_else(|| crate::labels::IN_MEMORY.to_string(), |d| d.display().to_string());
        let ownership = Arc::new(Ownership::new(store_id.clone(), dir_label.clone()));
        let runtime = match &self.engine {
            Some(engine) => Runtime::new(Arc::clone(engine), Arc::clone(&ownership), Metrics::new()),
            None => Runtime::connect(self.backend, Arc::clone(&ownership), Metrics::new()).await?,
        };
        let network = format!("dub-{}", self.instance);
        let everything = runtime.list_all(&self.instance, &network).await?;
        let adopted: HashSet<String> = facts.adopted.iter().map(|(id, _, _)| id.clone()).collect();
        let seen: Vec<Seen<'_>> = everything
            .iter()
            .map(|c| Seen {
                id: &c.id,
                labels: &c.labels,
            })
            .collect();
        let decision = Facts {
            store_id: &store_id,
            upgraded: facts.id.is_none() && !facts.pods.is_empty(),
            pods: &facts.pods,
            adopted: &adopted,
        };
        // Decides only; a refusal returns here, before anything is written.
        let adoptions = crate::ownership::decide(&self.instance, &seen, &decision, self.adopt_foreign)?;
        self.refuse_running_server(&everything, &adoptions, &dir_label)?;
        let (lock, store) = open_store(existing, dir.as_deref()).await?;
        let existing_ids: HashSet<String> = everything.iter().map(|c| c.id.clone()).collect();
        store
            .record_ownership(&store_id, &dir_label, &adoptions, &existing_ids)
            .await?;
        ownership.load(
            facts
                .adopted
                .into_iter()
                .filter(|(id, _, _)| existing_ids.contains(id))
                .chain(adoptions.iter().map(|a| (a.id.clone(), a.pod.clone(), a.held))),
        );
        if facts.id.is_none() {
            tracing::info!(store_id = %store_id, data_dir = %dir_label, "this store has a new id; every container it creates is labelled with it");
        }
        log_adoptions(&adoptions);
        match store.postgres() {
            Some(pg) => {
                pg.one_at_a_time(runtime.ensure_network(&network, &self.instance))
                    .await?
            }
            None => runtime.ensure_network(&network, &self.instance).await?,
        }
        let vault = self.vault(dir.as_deref())?;
        let names_image =
            std::env::var("DUBERNETES_NAMES_IMAGE").unwrap_or_else(|_| crate::names::DEFAULT_NAMES_IMAGE.to_string());
        let names_address = self.names_address(&runtime, &network, &names_image).await;
        let settings = ControllerSettings {
            vault,
            secret_files_dir: dir.as_ref().map(|d| d.join(SECRET_FILES_DIR)),
            names_address,
            names_image,
            instance: self.instance.clone(),
            network,
            resync: self.resync,
            stop_grace: self.stop_grace,
            engine_concurrency: self.engine_concurrency,
            backoff: self.backoff,
            drain: self.drain,
        };
        let pg = store.postgres().cloned();
        let acme = self.acme.clone().map(|a| Arc::new(crate::acme::Acme::new(a)));
        let mut ingress = self.ingress.clone();
        if ingress.endpoints_dir.is_none() {
            ingress.endpoints_dir = dir.as_ref().map(|d| d.join(INGRESS_ENDPOINTS_DIR));
        }
        let handle = Arc::new(Handle::new(settings, store, runtime, ingress, acme));
        // Subscribed before the controller starts, so the feed misses no change.
        let changes = handle.changes.subscribe();
        let orchestrator = Dubernetes {
            handle: Arc::clone(&handle),
            max_pods: self.max_pods,
            max_replicas: self.max_replicas,
            feed: Feed::new(),
            data_dir: dir,
            _lock: lock.map(Arc::new),
            runs: Arc::new(crate::orchestrator::runs::RunSettings::new(self.runs.0, self.runs.1)),
        };
        start(&handle, &orchestrator, pg, changes).await;
        Ok(orchestrator)
    }

    /// The instance name is a DNS label, as a pod's name is.
    fn check_instance(&self) -> Result<()> {
        let probe = PodSpec::new(self.instance.clone(), "x");
        if let Err(e) = probe.validate() {
            let message = e.problems.first().map(|p| p.message.clone()).unwrap_or_default();
            return Err(Error::InvalidInput {
                field: "instance name".into(),
                message,
            });
        }
        Ok(())
    }

    /// The store that exists already, with the data dir's lock: the
    /// PostgreSQL store (and this server's own dir, for its token), or a
    /// SQLite store in the data dir. `None`: no store yet (made once the
    /// containers are judged).
    async fn open_existing(&self, dir: Option<&Path>) -> Result<Option<(Option<DataDirLock>, Arc<dyn Store>)>> {
        Ok(match (&self.postgres, dir) {
            (Some(url), dir) => {
                // This server's own dir (its token); the store is shared.
                let lock = match dir {
                    Some(dir) => {
                        crate::data_dir::create(dir)?;
                        Some(DataDirLock::acquire(dir)?)
                    }
                    None => None,
                };
                Some((lock, Arc::new(PgStore::open(url).await?) as Arc<dyn Store>))
            }
            (None, Some(dir)) if crate::data_dir::has_store(dir)? => {
                let lock = DataDirLock::acquire(dir)?;
                Some((Some(lock), Arc::new(SqliteStore::open(dir).await?) as Arc<dyn Store>))
            }
            _ => None,
        })
    }

    /// Taking over from a server that still runs would make two managers:
    /// an error when the data dir of a container's previous store is locked.
    fn refuse_running_server(
        &self,
        everything: &[crate::engine::Observed],
        adoptions: &[crate::ownership::Adoption],
        dir_label: &str,
    ) -> Result<()> {
        let their_dirs: std::collections::BTreeSet<&str> = everything
            .iter()
            .filter(|c| adoptions.iter().any(|a| a.id == c.id && a.previous_store.is_some()))
            .filter_map(|c| c.labels.get(crate::labels::LABEL_DATA_DIR).map(String::as_str))
            .filter(|d| *d != dir_label && Path::new(d).is_absolute())
            .collect();
        for their in their_dirs {
            if let Some(pid) = crate::data_dir::holder(Path::new(their)) {
                return Err(Error::ForeignServerRunning {
                    instance: self.instance.clone(),
                    data_dir: their.to_string(),
                    pid,
                });
            }
        }
        Ok(())
    }

    /// The vault of generic secrets, its key from `secrets_key_file`, the
    /// data dir, or (in memory) made for this process; none with PostgreSQL
    /// unless given.
    fn vault(&self, dir: Option<&Path>) -> Result<crate::vault::Vault> {
        let key_source = match (&self.secrets_key_file, &self.postgres, dir) {
            (Some(file), _, _) => crate::vault::KeySource::File(crate::data_dir::absolute(file)?),
            (None, Some(_), _) => crate::vault::KeySource::Missing,
            (None, None, Some(dir)) => crate::vault::KeySource::File(dir.join(crate::vault::KEY_FILE)),
            (None, None, None) => crate::vault::KeySource::Ephemeral,
        };
        let vault = crate::vault::Vault::new(key_source);
        if self.secrets_key_file.is_some() {
            vault.check()?;
        }
        Ok(vault)
    }
}

/// The store, once the containers are judged: the one that existed, or a
/// new SQLite store in the data dir (locked), or in memory.
async fn open_store(
    existing: Option<(Option<DataDirLock>, Arc<dyn Store>)>,
    dir: Option<&Path>,
) -> Result<(Option<DataDirLock>, Arc<dyn Store>)> {
    let (lock, store) = match (existing, dir) {
        (Some((lock, store)), _) => (lock, store),
        (None, Some(dir)) => {
            crate::data_dir::create(dir)?;
            let lock = DataDirLock::acquire(dir)?;
            (Some(lock), Arc::new(SqliteStore::open(dir).await?) as Arc<dyn Store>)
        }
        (None, None) => (None, Arc::new(SqliteStore::in_memory().await?) as Arc<dyn Store>),
    };
    // The data dir lock (or an in-memory store) makes this process the
    // only writer of a SQLite store: its reads can be served from memory.
    // A PostgreSQL store has other writers (the other servers), so it is
    // never wrapped.
    let store: Arc<dyn Store> = if store.postgres().is_some() {
        store
    } else {
        Arc::new(crate::store::cache::CachedStore::new(store))
    };
    Ok((lock, store))
}

/// Says which running containers were adopted, and which are held.
fn log_adoptions(adoptions: &[crate::ownership::Adoption]) {
    for a in adoptions {
        tracing::warn!(
            container = %a.id,
            pod = a.pod.as_deref().unwrap_or("(ingress)"),
            previous_store = a.previous_store.as_deref().unwrap_or("(none: an older version)"),
            held = a.held,
            "adopted a container as it runs{}",
            if a.held { "; its pod is not in this store, so it is left alone until such a pod is applied" } else { "" }
        );
    }
}

/// Starts what runs for the instance's life: the leadership term (one
/// server per SQLite store leads from the start), or, with PostgreSQL, the
/// view publisher, the listener and the election; then the change feed.
async fn start(
    handle: &Arc<Handle>,
    orchestrator: &Dubernetes,
    pg: Option<PgStore>,
    changes: tokio::sync::broadcast::Receiver<crate::controller::Change>,
) {
    match pg {
        // One server per store: it leads from the start to the end.
        None => handle.begin_term().await,
        Some(pg) => {
            let views = handle.changes.subscribe();
            handle.tasks.spawn(crate::leader::publish_views(
                orchestrator.clone(),
                pg.clone(),
                views,
                handle.shutdown.clone(),
            ));
            handle.tasks.spawn(crate::leader::listen(
                orchestrator.clone(),
                pg.clone(),
                handle.shutdown.clone(),
            ));
            handle.tasks.spawn(crate::leader::lead(
                orchestrator.clone(),
                pg.options().clone(),
                handle.shutdown.clone(),
            ));
        }
    }
    let feed_task = crate::watch::run(
        orchestrator.clone(),
        handle.shutdown.clone(),
        Arc::clone(&orchestrator.feed),
        changes,
    );
    handle.tasks.spawn(feed_task);
}

//! The desired state of a pod as users write it, and its validation.
//!
//! Parsing is strict on purpose: an unknown field is an error that names the
//! field and the fields allowed, so a typo such as `replica: 3` never silently
//! means "one replica". Everything that later reaches Docker or nginx (names,
//! hosts, images, env keys) is validated here first, so the nginx template and
//! the engine calls can trust what they are given.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

// This file: `PodSpec`, the pod-wide limits, the builders and the revision
// hash. Its parts each in a file named by their field: `access` (with
// `tls`), `expose`, `volume`, `health`, `strategy` (`update`,
// `restart_backoff`), `container` (`resources`, `logging`, `security`),
// `placement`, `hooks`, `cron`, `secret_refs` (secret env, files, pull
// secrets), `image`. `parse`: YAML/JSON in, with the size, nesting and alias
// bounds. `validate`: the field rules. `duration`: serde helpers.
mod access;
mod container;
mod cron;
mod duration;
pub use duration::{DURATION_PATTERN, parse_duration};
mod expose;
mod health;
mod hooks;
mod image;
mod parse;
mod placement;
mod secret_refs;
mod strategy;
#[cfg(test)]
mod tests;
mod validate;
mod volume;
pub(crate) use validate::check_dns_label;

pub use access::{Access, DEFAULT_INGRESS_TIMEOUT, DEFAULT_MAX_BODY, MAX_HOSTS, MAX_MAX_BODY, Tls};
pub use container::{Logging, MAX_PIDS, Resources, Security};
pub use expose::{Expose, MAX_EXPOSE, parse_listen};
pub use health::{CheckKind, HealthCheck, IMPLICIT_CHECK_INTERVAL};
pub use strategy::{DEFAULT_MIN_READY, RestartBackoff, Strategy, UpdateStrategy};
pub use volume::{DEFAULT_TMPFS_BYTES, MAX_MOUNT_PATH_BYTES, MAX_TMPFS_BYTES, MAX_VOLUMES, Volume, VolumeMount};

pub use cron::{
    Concurrency, CronSchedule, DEFAULT_CRON_HISTORY, DEFAULT_STARTING_DEADLINE, MAX_CRON_HISTORY, MAX_SCHEDULE_BYTES,
};
pub use hooks::{DEFAULT_HOOK_TIMEOUT, Hooks, MAX_HOOK_TIMEOUT};
pub use image::{MAX_IMAGE_NAME, MAX_IMAGE_REFERENCE};
pub use parse::{SpecError, check_stored_size, integral_numbers, parse_json_spec, parse_specs};
pub use placement::{Constraint, ConstraintKey, LabelKey, MAX_CONSTRAINTS, MAX_PLACEMENT_TOKEN, NodeFacts, Placement};
pub use secret_refs::{
    EnvValue, MAX_SECRET_FILES, PullPolicy, SecretFiles, SecretKeyRef, SecretVersions, is_latest, registry_of,
};
pub use validate::{FieldError, ValidationError, check_file_key, check_volume_name, parse_memory};

/// Most replicas a single pod may ask for.
pub const MAX_REPLICAS: u32 = 1000;

/// Largest YAML or JSON input [`parse_specs`] and [`parse_json_spec`] read.
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// Deepest nesting of `[`/`{` flow collections or indentation levels accepted.
/// A pod spec needs 4; the limit stops deeply nested input before the parser
/// spends stack or time on it.
pub const MAX_SPEC_DEPTH: usize = 64;

/// Most environment variables per pod.
pub const MAX_ENV_VARS: usize = 1024;

/// Longest environment variable value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;

/// Largest a pod spec may be once stored: its JSON encoding, in bytes. It is
/// also the most one YAML document may expand to (an alias costs the size of
/// the node it names), checked before the document is deserialized, so a
/// small input that repeats a large value through aliases is refused before
/// it takes memory. The same as the server's request body limit: a spec that
/// could not be sent as JSON cannot be stored through YAML either.
pub const MAX_STORED_SPEC_BYTES: usize = 256 * 1024;

/// The desired state of one pod: which image, how many replicas, how to reach it.
///
/// ```
/// let spec = dubernetes_api::PodSpec::new("web", "nginx:1.27").with_replicas(3).with_host("web.local");
/// spec.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PodSpec {
    /// The pod's name: a DNS label (lowercase letters, digits and `-`, at most 63).
    pub name: String,
    /// The image every replica runs, e.g. `myapp-image:latest`.
    pub image: String,
    /// How many replicas to keep running. `0` keeps the pod but runs nothing.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// The container port the app listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Environment variables of every replica: a string, or
    /// `{secret: NAME, key: KEY}` (a key of a generic secret, resolved when a replica is created).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Generic secrets mounted as read-only files, one per key, in a directory of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<SecretFiles>,
    /// The docker-registry secret whose credentials pull `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// When the image is pulled (default `if-not-present`; `always` for `:latest` or no tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullPolicy>,
    /// Set by the server at apply (what a client sends is replaced): the
    /// version of each generic secret the pod uses, so replacing one makes a new revision.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_versions: SecretVersions,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's command (the entrypoint's arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Memory and CPU limits, enforced by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The readiness check. Without one, a replica is ready when its `port`
    /// accepts a TCP connection (see [`PodSpec::readiness`]); `{type: none}`
    /// makes a running replica ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// How a new revision replaces the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateStrategy>,
    /// Time between SIGTERM and SIGKILL when a replica stops (default: the server's, 10s).
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub stop_grace_period: Option<Duration>,
    /// Crash-loop back-off overrides for this pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartBackoff>,
    /// How the pod is reached from outside, through the ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// Log rotation of every replica (default: 3 files of 10 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Privilege settings of every replica (default: `no_new_privileges: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// Storage of every replica: named volumes of the instance (kept when the
    /// pod goes) and tmpfs scratch space.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// TCP ports of the replicas the ingress publishes on the host, for
    /// clients outside the instance (a database, a queue):
    /// `[{port: 5432, listen: "127.0.0.1:15432"}]`. Ready replicas only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<Expose>,
    /// On which nodes replicas may run and how they spread over a node
    /// label (Swarm's constraints and spread preference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Deploy hooks: one-off commands of a new revision before its replicas
    /// start (`pre_deploy`) and after its rollout completes (`post_deploy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Makes this a cron pod: five-field cron, e.g. `"*/5 * * * *"`. It keeps
    /// no replicas; at each tick it starts a one-off run of its current
    /// revision (its `command` and `args`). No `replicas`, `access` or `expose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "*/5 * * * *"))]
    pub schedule: Option<String>,
    /// The IANA time zone `schedule` is read in, e.g. `Europe/Paris` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What a tick does while a run of the schedule still runs: `forbid`
    /// (skip it, the default), `allow` (run beside it), `replace` (stop it first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Exited runs kept, with exit code and log (default 5; 1 to 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<u32>,
    /// A tick missed (server down, change of leader) still runs, once, when
    /// the server gets to it within this time (default 5m; 1s to 24h).
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "5m"))]
    pub starting_deadline: Option<Duration>,
    /// A run still running this long after it started is stopped (default:
    /// none; 1s to 7d).
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "30m"))]
    pub timeout: Option<Duration>,
}

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

fn default_replicas() -> u32 {
    1
}

fn default_port() -> u16 {
    80
}

impl PodSpec {
    /// A spec with one replica on port 80 and no host.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        PodSpec {
            name: name.into(),
            image: image.into(),
            replicas: default_replicas(),
            port: default_port(),
            env: BTreeMap::new(),
            secret_files: Vec::new(),
            image_pull_secret: None,
            pull: None,
            secret_versions: BTreeMap::new(),
            command: None,
            args: None,
            resources: None,
            health: None,
            update: None,
            stop_grace_period: None,
            restart: None,
            access: None,
            logging: None,
            security: None,
            volumes: Vec::new(),
            expose: Vec::new(),
            placement: None,
            hooks: None,
            schedule: None,
            timezone: None,
            concurrency: None,
            history: None,
            starting_deadline: None,
            timeout: None,
        }
    }

    /// Adds an entry to `expose`.
    pub fn with_expose(mut self, expose: Expose) -> Self {
        self.expose.push(expose);
        self
    }

    /// The valid entries of `expose`: replica port and host address.
    pub fn exposed(&self) -> Vec<(u16, std::net::SocketAddr)> {
        self.expose
            .iter()
            .filter(|e| e.port != 0)
            .filter_map(|e| Some((e.port, e.listen_addr().ok()?)))
            .collect()
    }

    /// Sets `placement`.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Adds an entry to `volumes`.
    pub fn with_volume(mut self, volume: Volume) -> Self {
        self.volumes.push(volume);
        self
    }

    /// The named volumes the pod mounts, by name.
    pub fn named_volumes(&self) -> impl Iterator<Item = &str> {
        self.volumes
            .iter()
            .filter(|v| v.tmpfs.is_none())
            .filter_map(|v| v.name.as_deref())
    }

    /// What a careful operator should know before this spec runs: several
    /// replicas, or a rolling update (old and new replicas overlap), sharing
    /// a named volume, which two writers of one database would corrupt.
    /// Warnings, not refusals: a volume of uploads or a cache is shared on
    /// purpose, and only the app knows whether it can have two writers.
    pub fn warnings(&self) -> Vec<String> {
        let names: Vec<&str> = self.named_volumes().collect();
        if names.is_empty() {
            return Vec::new();
        }
        let list = names.join(", ");
        let mut warnings = Vec::new();
        if self.replicas > 1 {
            warnings.push(format!(
                "{} replicas share the volume(s) {list}; an app that is not built for several writers (a database) needs replicas: 1",
                self.replicas
            ));
        }
        if self.update_strategy().strategy == Strategy::Rolling && self.replicas > 0 {
            warnings.push(format!(
                "a rolling update runs old and new replicas together on the volume(s) {list}; set update.strategy: recreate so that only one writer runs at a time"
            ));
        }
        warnings
    }

    /// Sets the number of replicas.
    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets the container port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Routes `host` to this pod through the ingress.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.access = Some(Access {
            host: Some(host.into()),
            ..Access::default()
        });
        self
    }

    /// Routes these hosts (beside any already set) to this pod.
    pub fn with_hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        let access = self.access.get_or_insert_with(Access::default);
        access.hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// Routes only this path prefix of the pod's hosts (set them first).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        if let Some(access) = &mut self.access {
            access.path = Some(path.into());
        }
        self
    }

    /// Sets `access.max_body` and `access.timeout` (set the hosts first).
    pub fn with_ingress_limits(mut self, max_body: Option<String>, timeout: Option<Duration>) -> Self {
        if let Some(access) = &mut self.access {
            access.max_body = max_body;
            access.timeout = timeout;
        }
        self
    }

    /// Serves the host (set it first with [`with_host`](Self::with_host)) over HTTPS.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        if let Some(access) = &mut self.access {
            access.tls = Some(tls);
        }
        self
    }

    /// How the host is served over HTTPS, if it is.
    pub fn tls(&self) -> Option<&Tls> {
        self.access.as_ref().and_then(|a| a.tls.as_ref())
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), EnvValue::Value(value.into()));
        self
    }

    /// Sets an environment variable to a key of a generic secret.
    pub fn with_secret_env(
        mut self,
        key: impl Into<String>,
        secret: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        self.env.insert(
            key.into(),
            EnvValue::Secret(SecretKeyRef {
                secret: secret.into(),
                key: secret_key.into(),
            }),
        );
        self
    }

    /// The generic secrets the pod uses (env values and files), by name.
    pub fn generic_secrets(&self) -> std::collections::BTreeSet<&str> {
        self.env
            .values()
            .filter_map(|v| match v {
                EnvValue::Secret(r) => Some(r.secret.as_str()),
                EnvValue::Value(_) => None,
            })
            .chain(self.secret_files.iter().map(|f| f.secret.as_str()))
            .collect()
    }

    /// Whether the pod uses the secret `name` (any kind but TLS).
    pub fn uses_secret(&self, name: &str) -> bool {
        self.image_pull_secret.as_deref() == Some(name) || self.generic_secrets().contains(name)
    }

    /// The pull policy in force: `pull`, else `always` for `:latest` or no tag, else `if-not-present`.
    pub fn pull_policy(&self) -> PullPolicy {
        self.pull.unwrap_or(if is_latest(&self.image) {
            PullPolicy::Always
        } else {
            PullPolicy::IfNotPresent
        })
    }

    /// Sets an HTTP readiness check on `path`, with default timings.
    pub fn with_health(mut self, path: impl Into<String>) -> Self {
        self.health = Some(HealthCheck {
            path: path.into(),
            ..HealthCheck::new(CheckKind::Http)
        });
        self
    }

    /// The readiness check in force: the `health` block, or else a TCP
    /// connect check on `port` with the default timings, repeated every
    /// [`IMPLICIT_CHECK_INTERVAL`] once the replica is ready.
    pub fn readiness(&self) -> HealthCheck {
        self.health.clone().unwrap_or_else(|| HealthCheck {
            interval: IMPLICIT_CHECK_INTERVAL,
            ..HealthCheck::new(CheckKind::Tcp)
        })
    }

    /// Sets the image.
    pub fn with_image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// The update strategy, with defaults when unset.
    pub fn update_strategy(&self) -> UpdateStrategy {
        self.update.clone().unwrap_or_default()
    }

    /// Memory limit in bytes, if set and valid.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.resources
            .as_ref()?
            .memory
            .as_deref()
            .and_then(|m| parse_memory(m).ok())
    }

    /// The first host name routed to this pod, if any (see [`hosts`](Self::hosts)).
    pub fn host(&self) -> Option<&str> {
        self.hosts().into_iter().next()
    }

    /// Every host name routed to this pod: `access.host`, then
    /// `access.hosts`, each once, in that order.
    pub fn hosts(&self) -> Vec<&str> {
        let Some(access) = &self.access else {
            return Vec::new();
        };
        let mut hosts: Vec<&str> = Vec::with_capacity(access.hosts.len() + 1);
        for h in access.host.iter().chain(&access.hosts) {
            if !hosts.contains(&h.as_str()) {
                hosts.push(h);
            }
        }
        hosts
    }

    /// The path prefix routed to this pod (`/` when unset), without a trailing `/`
    /// except for `/` itself.
    pub fn route_path(&self) -> &str {
        match self.access.as_ref().and_then(|a| a.path.as_deref()) {
            None | Some("") => "/",
            Some(p) if p.len() > 1 => p.trim_end_matches('/'),
            Some(p) => p,
        }
    }

    /// `access.max_body` in bytes (its default when unset or invalid).
    pub fn max_body_bytes(&self) -> u64 {
        self.access
            .as_ref()
            .and_then(|a| a.max_body.as_deref())
            .and_then(|m| parse_memory(m).ok())
            .unwrap_or(DEFAULT_MAX_BODY)
    }

    /// `access.timeout` (its default when unset).
    pub fn ingress_timeout(&self) -> Duration {
        self.access
            .as_ref()
            .and_then(|a| a.timeout)
            .unwrap_or(DEFAULT_INGRESS_TIMEOUT)
    }

    /// The log rotation, pids limit and no-new-privileges its replicas get:
    /// the spec's values, the defaults of [`ContainerLimits`](crate::limits::ContainerLimits) otherwise.
    pub fn container_limits(&self) -> crate::limits::ContainerLimits {
        let defaults = crate::limits::ContainerLimits::default();
        let logging = self.logging.clone().unwrap_or_default();
        let log_max_bytes = logging
            .max_size
            .as_deref()
            .and_then(|s| parse_memory(s).ok())
            .unwrap_or(defaults.log_max_bytes);
        let pids = match self.resources.as_ref().and_then(|r| r.pids) {
            Some(0) => None,
            Some(n) => Some(n),
            None => defaults.pids,
        };
        defaults
            .with_log(log_max_bytes, logging.max_files.unwrap_or(defaults.log_max_files))
            .with_pids(pids)
            .with_no_new_privileges(
                self.security
                    .as_ref()
                    .and_then(|s| s.no_new_privileges)
                    .unwrap_or(defaults.no_new_privileges),
            )
    }

    /// A short hash of everything that decides what a container runs (image,
    /// port, env), but not of `replicas` or `access`: scaling or re-routing a
    /// pod must not replace its containers.
    pub fn revision_hash(&self) -> String {
        #[derive(Serialize)]
        struct Template<'a> {
            image: &'a str,
            port: u16,
            env: &'a BTreeMap<String, EnvValue>,
            command: &'a Option<Vec<String>>,
            args: &'a Option<Vec<String>>,
            memory: Option<u64>,
            cpus: Option<f64>,
            // Skipped when unset, so specs written before these fields existed keep their hash.
            #[serde(skip_serializing_if = "Option::is_none")]
            pids: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            logging: Option<&'a Logging>,
            #[serde(skip_serializing_if = "Option::is_none")]
            security: Option<&'a Security>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            secret_files: &'a [SecretFiles],
            #[serde(skip_serializing_if = "Option::is_none")]
            image_pull_secret: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pull: Option<PullPolicy>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            secret_versions: &'a SecretVersions,
            #[serde(skip_serializing_if = "<[Volume]>::is_empty")]
            volumes: &'a [Volume],
            // Where replicas run: a new placement moves them (a rollout).
            #[serde(skip_serializing_if = "Option::is_none")]
            placement: Option<&'a Placement>,
            // What the revision runs around its rollout (a migration) is part of it.
            #[serde(skip_serializing_if = "Option::is_none")]
            hooks: Option<&'a Hooks>,
        }
        let template = Template {
            image: &self.image,
            port: self.port,
            env: &self.env,
            command: &self.command,
            args: &self.args,
            memory: self.memory_bytes(),
            cpus: self.resources.as_ref().and_then(|r| r.cpus),
            pids: self.resources.as_ref().and_then(|r| r.pids),
            logging: self.logging.as_ref(),
            security: self.security.as_ref(),
            secret_files: &self.secret_files,
            image_pull_secret: self.image_pull_secret.as_deref(),
            pull: self.pull,
            secret_versions: &self.secret_versions,
            volumes: &self.volumes,
            placement: self.placement.as_ref().filter(|p| **p != Placement::default()),
            hooks: self.hooks.as_ref(),
        };
        // Serializing strings, integers, floats and maps cannot fail.
        let bytes = serde_json::to_vec(&template).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// A copy with the container template (what [`revision_hash`](Self::revision_hash)
    /// covers) taken from `other`, keeping this spec's replicas, access and policies.
    pub fn with_template_of(&self, other: &PodSpec) -> PodSpec {
        PodSpec {
            image: other.image.clone(),
            port: other.port,
            env: other.env.clone(),
            command: other.command.clone(),
            args: other.args.clone(),
            resources: other.resources.clone(),
            logging: other.logging.clone(),
            security: other.security.clone(),
            secret_files: other.secret_files.clone(),
            image_pull_secret: other.image_pull_secret.clone(),
            pull: other.pull,
            volumes: other.volumes.clone(),
            placement: other.placement.clone(),
            hooks: other.hooks.clone(),
            ..self.clone()
        }
    }
}

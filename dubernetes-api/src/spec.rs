//! The desired state of a pod as users write it, and its validation.
//!
//! Parsing is strict on purpose: an unknown field is an error that names the
//! field and the fields allowed, so a typo such as `replica: 3` never silently
//! means "one replica". Everything that later reaches Docker or nginx (names,
//! hosts, images, env keys) is validated here first, so the nginx template and
//! the engine calls can trust what they are given.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// Environment variables of every replica.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
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
    #[serde(default, with = "duration_opt", skip_serializing_if = "Option::is_none")]
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
}

/// How the engine keeps a replica's log: the `json-file` driver, rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Logging {
    /// Largest log file before it is rotated, e.g. `10Mi` (default 10Mi; 1Ki to 1Ti).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
    /// Log files kept, the current one included (default 3; 1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
}

/// Privilege settings of a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Security {
    /// `no-new-privileges`: no process can gain privileges through a setuid
    /// binary (default `true`). Set `false` only for an image that needs `sudo` or `ping` as a user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
}

/// Most processes a pod may allow per replica (`resources.pids`).
pub const MAX_PIDS: u32 = 4_194_304;

/// How a pod is reached through the ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Access {
    /// The host name the ingress routes to this pod (RFC 1123).
    pub host: String,
}

/// Limits the engine enforces on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Resources {
    /// Memory limit: bytes, or a number with a unit `k`, `m`, `g` (powers of 1000) or `Ki`, `Mi`, `Gi` (powers of 1024), e.g. `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Most processes (and threads) per replica (default 1024; `0` for no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

/// What a readiness check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// GET `path`; a 2xx or 3xx answer is healthy.
    #[default]
    Http,
    /// Open a TCP connection to the port.
    Tcp,
    /// No check: a running replica is ready.
    None,
}

/// A readiness check, made by the controller to each replica's address on the
/// instance network. `type` defaults to `http` (and then needs `path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, try_from = "RawHealthCheck")]
#[non_exhaustive]
pub struct HealthCheck {
    /// What the check does: `http` (the default when `path` is set), `tcp` or `none`.
    #[serde(rename = "type", default)]
    pub kind: CheckKind,
    /// Path to GET, e.g. `/healthz` (`http` only). A 2xx or 3xx answer is healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Port to check (default: the pod's `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Time between checks (until the first success, a replica is checked
    /// more often: 50ms, doubling up to this).
    #[serde(default = "default_interval", with = "duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s"))]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(default = "default_timeout", with = "duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s"))]
    pub timeout: Duration,
    /// Consecutive successes before a replica is ready.
    #[serde(default = "one")]
    pub healthy_after: u32,
    /// Consecutive failures before a ready replica is taken out of the ingress.
    #[serde(default = "three")]
    pub unhealthy_after: u32,
}

impl HealthCheck {
    /// A check of `kind` with the default timings.
    pub fn new(kind: CheckKind) -> Self {
        HealthCheck {
            kind,
            path: String::new(),
            port: None,
            interval: default_interval(),
            timeout: default_timeout(),
            healthy_after: 1,
            unhealthy_after: 3,
        }
    }
}

/// What the YAML may say; a `health` block with neither `type` nor `path`
/// is a mistake, not an HTTP check of nothing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheck {
    #[serde(rename = "type", default)]
    kind: Option<CheckKind>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default = "default_interval", with = "duration")]
    interval: Duration,
    #[serde(default = "default_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default = "one")]
    healthy_after: u32,
    #[serde(default = "three")]
    unhealthy_after: u32,
}

impl TryFrom<RawHealthCheck> for HealthCheck {
    type Error = String;

    fn try_from(raw: RawHealthCheck) -> Result<Self, String> {
        let kind = match (raw.kind, &raw.path) {
            (Some(kind), _) => kind,
            (None, Some(_)) => CheckKind::Http,
            (None, None) => {
                return Err("health needs a `path` (an HTTP check, e.g. `path: /healthz`) \
                            or a `type` (`http`, `tcp` or `none`)"
                    .to_string());
            }
        };
        let path = raw.path.unwrap_or_default();
        match kind {
            CheckKind::Http if path.is_empty() => {
                return Err("health of type http needs a `path`, e.g. `path: /healthz`".to_string());
            }
            CheckKind::Tcp | CheckKind::None if !path.is_empty() => {
                return Err("health.path is for `type: http` only; remove it or set `type: http`".to_string());
            }
            _ => {}
        }
        Ok(HealthCheck {
            kind,
            path,
            port: raw.port,
            interval: raw.interval,
            timeout: raw.timeout,
            healthy_after: raw.healthy_after,
            unhealthy_after: raw.unhealthy_after,
        })
    }
}

/// How a new revision replaces the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateStrategy {
    /// How many replicas may run above `replicas` during a rollout.
    #[serde(default = "one")]
    pub max_surge: u32,
    /// How many replicas below `replicas` may be ready during a rollout.
    #[serde(default)]
    pub max_unavailable: u32,
    /// A rollout that makes no progress for this long fails and is rolled back.
    #[serde(default = "default_progress_deadline", with = "duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s"))]
    pub progress_deadline: Duration,
    /// How long a new replica must stay ready, without a break, before it
    /// counts as available and an old replica may be removed for it (like
    /// Kubernetes' `minReadySeconds`, Swarm's `update-monitor`).
    #[serde(default = "default_min_ready", with = "duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "5s"))]
    pub min_ready: Duration,
    /// A rollout fails at once (and rolls back) when replicas of the new
    /// revision exit (on their own, or OOM) this many times.
    #[serde(default = "three")]
    pub max_failures: u32,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        UpdateStrategy {
            max_surge: 1,
            max_unavailable: 0,
            progress_deadline: default_progress_deadline(),
            min_ready: default_min_ready(),
            max_failures: 3,
        }
    }
}

/// Crash-loop back-off overrides; unset fields take the server's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RestartBackoff {
    /// Delay before the second quick restart in a row; doubles after that.
    #[serde(default, with = "duration_opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub initial_delay: Option<Duration>,
    /// Longest delay.
    #[serde(default, with = "duration_opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub max_delay: Option<Duration>,
    /// A replica that ran this long before it exited resets the back-off.
    #[serde(default, with = "duration_opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub reset_after: Option<Duration>,
}

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

fn default_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_progress_deadline() -> Duration {
    Duration::from_secs(120)
}

/// The default stabilization window of a rollout.
pub const DEFAULT_MIN_READY: Duration = Duration::from_secs(5);

fn default_min_ready() -> Duration {
    DEFAULT_MIN_READY
}

/// Durations as human strings: `500ms`, `2s`, `1m 30s`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration ({e}); write e.g. \"500ms\", \"2s\" or \"1m\""
            ))
        })
    }
}

mod duration_opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// Parses a memory size: `1048576`, `512k`, `256Mi`, `1g`, `2Gi`.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"256Mi\" or \"1g\""))?;
    let factor: u64 = match unit {
        "" | "b" | "B" => 1,
        "k" | "K" | "kb" | "KB" => 1000,
        "m" | "M" | "mb" | "MB" => 1000 * 1000,
        "g" | "G" | "gb" | "GB" => 1000 * 1000 * 1000,
        "Ki" => 1024,
        "Mi" => 1024 * 1024,
        "Gi" => 1024 * 1024 * 1024,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; use k, m, g, Ki, Mi or Gi"
            ));
        }
    };
    n.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
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
        }
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
        self.access = Some(Access { host: host.into() });
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
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
    /// connect check on `port` with the default timings.
    pub fn readiness(&self) -> HealthCheck {
        self.health.clone().unwrap_or_else(|| HealthCheck::new(CheckKind::Tcp))
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

    /// The host name routed to this pod, if any.
    pub fn host(&self) -> Option<&str> {
        self.access.as_ref().map(|a| a.host.as_str())
    }

    /// Checks every field; returns all problems at once, each naming its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut problems = Vec::new();
        if let Err(m) = check_dns_label(&self.name) {
            problems.push(FieldError::new("name", m));
        }
        if let Err(m) = check_image(&self.image) {
            problems.push(FieldError::new("image", m));
        }
        if self.replicas > MAX_REPLICAS {
            problems.push(FieldError::new(
                "replicas",
                format!("{} is more than the limit of {MAX_REPLICAS}", self.replicas),
            ));
        }
        if self.port == 0 {
            problems.push(FieldError::new("port", "must be between 1 and 65535"));
        }
        if self.env.len() > MAX_ENV_VARS {
            problems.push(FieldError::new(
                "env",
                format!("has {} variables; at most {MAX_ENV_VARS} are allowed", self.env.len()),
            ));
        }
        for (key, value) in &self.env {
            // A bad key is named by its escaped form so nothing odd reaches a terminal or log.
            let field = format!("env.{}", key.escape_default());
            if let Err(m) = check_env_key(key) {
                problems.push(FieldError::new(field.clone(), m));
            }
            if value.contains('\0') {
                problems.push(FieldError::new(field, "value must not contain a NUL byte"));
            } else if value.len() > MAX_ENV_VALUE_BYTES {
                problems.push(FieldError::new(
                    field,
                    format!("value is longer than {MAX_ENV_VALUE_BYTES} bytes"),
                ));
            }
        }
        for (field, list) in [("command", &self.command), ("args", &self.args)] {
            if let Some(list) = list {
                if field == "command" && list.is_empty() {
                    problems.push(FieldError::new(
                        field,
                        "must not be empty; remove the field to use the image's entrypoint",
                    ));
                }
                if list.len() > 256 {
                    problems.push(FieldError::new(field, "has more than 256 items"));
                }
                if let Some(i) = list.iter().position(|a| a.contains('\0') || a.len() > 8192) {
                    problems.push(FieldError::new(
                        format!("{field}[{i}]"),
                        "must not contain a NUL byte or exceed 8192 bytes",
                    ));
                }
            }
        }
        if let Some(resources) = &self.resources {
            if let Some(memory) = &resources.memory {
                match parse_memory(memory) {
                    Ok(bytes) if bytes < 6 * 1024 * 1024 => problems.push(FieldError::new(
                        "resources.memory",
                        format!("{memory:?} is below the engine's minimum of 6Mi"),
                    )),
                    Ok(bytes) if bytes > (1u64 << 42) => problems.push(FieldError::new(
                        "resources.memory",
                        format!("{memory:?} is more than 4Ti"),
                    )),
                    Ok(_) => {}
                    Err(m) => problems.push(FieldError::new("resources.memory", m)),
                }
            }
            if let Some(cpus) = resources.cpus
                && !(cpus.is_finite() && (0.01..=1024.0).contains(&cpus))
            {
                problems.push(FieldError::new(
                    "resources.cpus",
                    format!("{cpus} is not between 0.01 and 1024 cores"),
                ));
            }
        }
        self.validate_host_limits(&mut problems);
        if let Some(h) = &self.health {
            if h.kind == CheckKind::Http
                && let Err(m) = check_http_path(&h.path)
            {
                problems.push(FieldError::new("health.path", m));
            }
            if h.port == Some(0) {
                problems.push(FieldError::new("health.port", "must be between 1 and 65535"));
            }
            if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&h.interval) {
                problems.push(FieldError::new("health.interval", "must be between 100ms and 1h"));
            }
            if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&h.timeout) {
                problems.push(FieldError::new("health.timeout", "must be between 10ms and 60s"));
            }
            for (field, n) in [
                ("health.healthy_after", h.healthy_after),
                ("health.unhealthy_after", h.unhealthy_after),
            ] {
                if !(1..=100).contains(&n) {
                    problems.push(FieldError::new(field, format!("{n} is not between 1 and 100")));
                }
            }
        }
        if let Some(u) = &self.update {
            if u.max_surge == 0 && u.max_unavailable == 0 {
                problems.push(FieldError::new(
                    "update",
                    "max_surge and max_unavailable are both 0, so a rollout could never make progress; raise one of them",
                ));
            }
            if u.max_surge > MAX_REPLICAS || u.max_unavailable > MAX_REPLICAS {
                problems.push(FieldError::new(
                    "update",
                    format!("max_surge and max_unavailable are at most {MAX_REPLICAS}"),
                ));
            }
            if !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&u.progress_deadline) {
                problems.push(FieldError::new(
                    "update.progress_deadline",
                    "must be between 1s and 24h",
                ));
            }
            if u.min_ready > Duration::from_secs(3600) {
                problems.push(FieldError::new("update.min_ready", "must be at most 1h"));
            }
            if !(1..=1000).contains(&u.max_failures) {
                problems.push(FieldError::new(
                    "update.max_failures",
                    format!("{} is not between 1 and 1000", u.max_failures),
                ));
            }
        }
        if let Some(grace) = self.stop_grace_period
            && grace > Duration::from_secs(3600)
        {
            problems.push(FieldError::new("stop_grace_period", "must be at most 1h"));
        }
        if let Some(r) = &self.restart {
            for (field, d) in [
                ("restart.initial_delay", r.initial_delay),
                ("restart.max_delay", r.max_delay),
                ("restart.reset_after", r.reset_after),
            ] {
                if d.is_some_and(|d| d > Duration::from_secs(24 * 3600)) {
                    problems.push(FieldError::new(field, "must be at most 24h"));
                }
            }
        }
        if let Some(access) = &self.access
            && let Err(m) = check_host(&access.host)
        {
            problems.push(FieldError::new("access.host", m));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                pod: self.name.clone(),
                problems,
            })
        }
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

    /// Checks `logging` and `resources.pids`.
    fn validate_host_limits(&self, problems: &mut Vec<FieldError>) {
        if let Some(pids) = self.resources.as_ref().and_then(|r| r.pids)
            && pids > MAX_PIDS
        {
            problems.push(FieldError::new(
                "resources.pids",
                format!("{pids} is more than {MAX_PIDS}; use 0 for no limit"),
            ));
        }
        if let Some(logging) = &self.logging {
            if let Some(size) = &logging.max_size {
                match parse_memory(size) {
                    Ok(bytes) if !(1024..=(1u64 << 40)).contains(&bytes) => problems.push(FieldError::new(
                        "logging.max_size",
                        format!("{size:?} is not between 1Ki and 1Ti"),
                    )),
                    Ok(_) => {}
                    Err(m) => problems.push(FieldError::new("logging.max_size", m)),
                }
            }
            if let Some(files) = logging.max_files
                && !(1..=100).contains(&files)
            {
                problems.push(FieldError::new(
                    "logging.max_files",
                    format!("{files} is not between 1 and 100"),
                ));
            }
        }
    }

    /// A short hash of everything that decides what a container runs (image,
    /// port, env), but not of `replicas` or `access`: scaling or re-routing a
    /// pod must not replace its containers.
    pub fn revision_hash(&self) -> String {
        #[derive(Serialize)]
        struct Template<'a> {
            image: &'a str,
            port: u16,
            env: &'a BTreeMap<String, String>,
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
            ..self.clone()
        }
    }
}

/// One invalid field of a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct FieldError {
    /// The field, as a path like `access.host`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A spec that parsed but has invalid fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pod {pod:?}: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
#[non_exhaustive]
pub struct ValidationError {
    /// The pod's name as given.
    pub pod: String,
    /// Every invalid field.
    pub problems: Vec<FieldError>,
}

impl ValidationError {
    /// The problems of pod `pod`.
    pub fn new(pod: impl Into<String>, problems: Vec<FieldError>) -> Self {
        ValidationError {
            pod: pod.into(),
            problems,
        }
    }
}

/// A YAML document that could not be read as a pod spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The YAML itself is broken, or has a field of the wrong type or an unknown field.
    #[error("document {document}{}: {message}", location.map(|(l, c)| format!(", line {l}, column {c}")).unwrap_or_default())]
    Syntax {
        /// Index of the document in a multi-document file, from 1.
        document: usize,
        /// Line and column, from 1, where known.
        location: Option<(usize, usize)>,
        /// What the parser said.
        message: String,
    },
    /// The document parsed but a field is invalid.
    #[error("document {document}: {source}")]
    Invalid {
        /// Index of the document in a multi-document file, from 1.
        document: usize,
        /// The invalid fields.
        #[source]
        source: ValidationError,
    },
    /// Two documents name the same pod.
    #[error("document {document}: pod {name:?} is defined twice in the same input")]
    Duplicate {
        /// Index of the second document, from 1.
        document: usize,
        /// The repeated name.
        name: String,
    },
    /// The input is larger than [`MAX_SPEC_BYTES`].
    #[error("the input is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input nests deeper than [`MAX_SPEC_DEPTH`].
    #[error("the input nests deeper than {max} levels (line {line}); a pod spec needs a handful")]
    TooDeep {
        /// Line where the limit was passed, from 1.
        line: usize,
        /// The limit.
        max: usize,
    },
    /// A document expands (aliases repeated in full) to more than
    /// [`MAX_STORED_SPEC_BYTES`], or a spec encodes to more than that.
    #[error(
        "document {document}{}: the pod spec would be {} bytes or more once {}; at most {max} bytes are stored (MAX_STORED_SPEC_BYTES){}",
        line.map(|l| format!(", line {l}")).unwrap_or_default(),
        size,
        if *aliases { "its aliases are expanded" } else { "stored" },
        if *aliases { ": repeat less through anchors and aliases (`*name`), or move large values into the image" } else { ": move large values (env, args) into the image or a file it reads" }
    )]
    SpecTooLarge {
        /// Index of the document in a multi-document file, from 1.
        document: usize,
        /// Line where the expansion passed the limit, when found by the YAML pre-pass.
        line: Option<usize>,
        /// The size reached (a lower bound when the pre-pass stopped early).
        size: usize,
        /// The limit.
        max: usize,
        /// Whether aliases made it that large.
        aliases: bool,
    },
}

impl SpecError {
    /// The field at fault, as a path like `replicas` or `access.host`, when known.
    pub fn field(&self) -> Option<String> {
        match self {
            SpecError::Syntax { message, .. } => syntax_field(message),
            SpecError::Invalid { source, .. } => source.problems.first().map(|p| p.field.clone()),
            SpecError::Duplicate { .. } => Some("name".into()),
            SpecError::TooLarge { .. } | SpecError::TooDeep { .. } => None,
            SpecError::SpecTooLarge { .. } => Some("body".into()),
        }
    }
}

/// The field a parser message is about: its leading `path: ` (serde_yaml_ng
/// prefixes nested errors with it), else the field named by
/// "unknown field `x`" or "missing field `x`".
fn syntax_field(message: &str) -> Option<String> {
    let named = |marker: &str| {
        let rest = &message[message.find(marker)? + marker.len()..];
        Some(rest[..rest.find('`')?].to_string())
    };
    let prefix = message.split_once(": ").map(|(head, _)| head).filter(|head| {
        !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']'))
    });
    let leaf = named("unknown field `").or_else(|| named("missing field `"));
    match (prefix, leaf) {
        (Some(p), Some(l)) => Some(format!("{p}.{l}")),
        (Some(p), None) => Some(p.to_string()),
        (None, l) => l,
    }
}

/// Rejects input that is too large or nests too deep, before any parser sees it.
///
/// Two counts, because the YAML parser's cost grows fast with nesting:
/// - depth of `[`/`{` outside quoted strings and comments, and indentation,
///   against [`MAX_SPEC_DEPTH`];
/// - as a backstop that no quoting trick can fool (a block scalar holding a
///   quote, a `#` that is not a comment...), the depth counting *every*
///   bracket, quoted or not, against four times that.
fn check_shape(text: &str) -> Result<(), SpecError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(SpecError::TooLarge {
            size: text.len(),
            max: MAX_SPEC_BYTES,
        });
    }
    let mut depth = 0usize;
    let mut raw_depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        let too_deep = || SpecError::TooDeep {
            line: i + 1,
            max: MAX_SPEC_DEPTH,
        };
        if quote.is_none() && indent / 2 > MAX_SPEC_DEPTH {
            return Err(too_deep());
        }
        for b in line.bytes() {
            match b {
                b'[' | b'{' => {
                    raw_depth += 1;
                    if raw_depth > 4 * MAX_SPEC_DEPTH {
                        return Err(too_deep());
                    }
                }
                b']' | b'}' => raw_depth = raw_depth.saturating_sub(1),
                _ => {}
            }
        }
        // Where a quote may open a quoted scalar: at the start of a value.
        let mut previous = b' ';
        for b in line.bytes() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' && q == '"' {
                        escaped = true;
                    } else if char::from(b) == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'"' | b'\'' if matches!(previous, b' ' | b'\t' | b':' | b'-' | b'[' | b'{' | b',' | b'?') => {
                        quote = Some(char::from(b));
                    }
                    b'#' if matches!(previous, b' ' | b'\t') => break,
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > MAX_SPEC_DEPTH {
                            return Err(too_deep());
                        }
                    }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            previous = b;
        }
        escaped = false;
    }
    Ok(())
}

/// Parses one pod spec from JSON with the same strictness, limits and field
/// paths as [`parse_specs`]: the JSON is read, then handed to the YAML reader
/// (JSON values are YAML values), so both formats report errors alike.
pub fn parse_json_spec(json: &str) -> Result<PodSpec, SpecError> {
    check_shape(json)?;
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| SpecError::Syntax {
        document: 1,
        location: Some((e.line(), e.column())),
        message: format!("invalid JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(SpecError::Syntax {
            document: 1,
            location: None,
            message: "a pod spec is a JSON object, e.g. {\"name\": \"web\", \"image\": \"nginx\"}".into(),
        });
    }
    let yaml = serde_yaml_ng::to_string(&value).map_err(|e| SpecError::Syntax {
        document: 1,
        location: None,
        message: e.to_string(),
    })?;
    let mut specs = parse_specs(&yaml).map_err(|e| match e {
        // Lines of the intermediate YAML mean nothing to the client.
        SpecError::Syntax { document, message, .. } => SpecError::Syntax {
            document,
            location: None,
            message,
        },
        other => other,
    })?;
    match specs.len() {
        1 => Ok(specs.remove(0)),
        n => Err(SpecError::Syntax {
            document: 1,
            location: None,
            message: format!("expected one pod spec, got {n}"),
        }),
    }
}

/// Parses one or more pod specs from YAML (documents separated by `---`) and
/// validates each. Empty documents are skipped.
///
/// ```
/// use dubernetes_api::{parse_specs, SpecError};
///
/// let specs = parse_specs("name: web\nimage: nginx:1.27\nreplicas: 3\naccess: {host: web.local}\n").unwrap();
/// assert_eq!(specs[0].replicas, 3);
/// assert_eq!(specs[0].host(), Some("web.local"));
///
/// // A typo is an error that names the field, never silently ignored.
/// let err = parse_specs("name: web\nimage: nginx\nreplica: 3\n").unwrap_err();
/// assert!(err.to_string().contains("replica"), "{err}");
/// assert!(matches!(err, SpecError::Syntax { .. } | SpecError::Invalid { .. }));
/// ```
pub fn parse_specs(yaml: &str) -> Result<Vec<PodSpec>, SpecError> {
    check_shape(yaml)?;
    check_expansion(yaml, MAX_STORED_SPEC_BYTES)?;
    let mut specs: Vec<PodSpec> = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let index = i + 1;
        let spec: Option<PodSpec> = Option::deserialize(document).map_err(|e| SpecError::Syntax {
            document: index,
            location: e.location().map(|l| (l.line(), l.column())),
            message: e.to_string(),
        })?;
        let Some(spec) = spec else { continue };
        spec.validate().map_err(|source| SpecError::Invalid {
            document: index,
            source,
        })?;
        check_stored_size(&spec).map_err(|e| e.in_document(index))?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(SpecError::Duplicate {
                document: index,
                name: spec.name,
            });
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// What one node adds to a spec's expanded size beyond its scalar text: about
/// the punctuation its JSON encoding needs (quotes, `:` or `,`).
const NODE_OVERHEAD: usize = 2;

/// Refuses a YAML input any of whose documents would expand to more than
/// `max` bytes, before any of it is deserialized.
///
/// serde_yaml_ng replays an anchored node at every alias, so 44 KB whose
/// `env` repeats a 32 KiB value through 1023 aliases deserializes into 32 MiB.
/// This pass reads the YAML events once (saphyr-parser, no values built) and
/// computes each node's expanded size: a scalar costs its length, a
/// collection the sum of its items, an alias the expanded size of the node
/// its anchor names (so nested aliases multiply, as they would in memory).
/// The count is kept per document and checked as it grows, so it stops at the
/// first event past the limit; its own memory is one number per anchor and
/// one per open collection.
///
/// Anchors and aliases stay allowed: a spec that uses them sensibly expands
/// to far less than the limit.
fn check_expansion(yaml: &str, max: usize) -> Result<(), SpecError> {
    use saphyr_parser::{Event, Parser};

    let mut document = 0usize;
    let mut anchors: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    // Open collections: (anchor id, 0 for none; expanded size so far).
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut size = 0usize;
    for item in Parser::new_from_str(yaml) {
        let (event, span) = match item {
            Ok(item) => item,
            Err(e) => return Err(syntax_error(yaml, document.max(1), &e)),
        };
        let done: Option<(usize, usize)> = match event {
            Event::DocumentStart(_) => {
                document += 1;
                size = 0;
                open.clear();
                None
            }
            Event::Scalar(value, _, anchor, _) => Some((anchor, value.len().saturating_add(NODE_OVERHEAD))),
            Event::Alias(id) => Some((0, anchors.get(&id).copied().unwrap_or(0))),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, NODE_OVERHEAD));
                size = size.saturating_add(NODE_OVERHEAD);
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                // The collection's own size is already in `size`; only its parent learns it now.
                if let Some((anchor, total)) = open.pop() {
                    if anchor != 0 {
                        anchors.insert(anchor, total);
                    }
                    if let Some((_, parent)) = open.last_mut() {
                        *parent = parent.saturating_add(total);
                    }
                }
                None
            }
            _ => None,
        };
        if let Some((anchor, node)) = done {
            if anchor != 0 {
                anchors.insert(anchor, node);
            }
            if let Some((_, parent)) = open.last_mut() {
                *parent = parent.saturating_add(node);
            }
            size = size.saturating_add(node);
        }
        if size > max {
            return Err(SpecError::SpecTooLarge {
                document: document.max(1),
                line: Some(span.start.line()),
                size,
                max,
                aliases: !anchors.is_empty(),
            });
        }
    }
    Ok(())
}

/// The error for YAML the pre-pass cannot read. The deserializer's own
/// message is the familiar one (and the one every other error uses), so it is
/// preferred: the input is read again without building any value
/// (`IgnoredAny`: no memory beyond its events; its alias replay is bounded by
/// its own repetition limit). Should it accept what the pre-pass refused, the
/// input is refused anyway with the pre-pass's message: what cannot be
/// measured is not let through.
fn syntax_error(yaml: &str, document: usize, scan: &saphyr_parser::ScanError) -> SpecError {
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        if let Err(e) = serde::de::IgnoredAny::deserialize(doc) {
            return SpecError::Syntax {
                document: i + 1,
                location: e.location().map(|l| (l.line(), l.column())),
                message: e.to_string(),
            };
        }
    }
    SpecError::Syntax {
        document,
        location: Some((scan.marker().line(), scan.marker().col() + 1)),
        message: scan.info().to_string(),
    }
}

/// Refuses a spec whose JSON encoding (what the store keeps) is larger than
/// [`MAX_STORED_SPEC_BYTES`]. [`parse_specs`] and [`parse_json_spec`] call it,
/// and the store checks again before it writes, so every way in is bounded.
pub fn check_stored_size(spec: &PodSpec) -> Result<(), SpecError> {
    // Serializing strings, numbers and maps cannot fail; a failure counts as too large.
    let size = serde_json::to_vec(spec).map_or(usize::MAX, |json| json.len());
    if size > MAX_STORED_SPEC_BYTES {
        return Err(SpecError::SpecTooLarge {
            document: 1,
            line: None,
            size,
            max: MAX_STORED_SPEC_BYTES,
            aliases: false,
        });
    }
    Ok(())
}

impl SpecError {
    fn in_document(self, index: usize) -> SpecError {
        match self {
            SpecError::SpecTooLarge {
                line,
                size,
                max,
                aliases,
                ..
            } => SpecError::SpecTooLarge {
                document: index,
                line,
                size,
                max,
                aliases,
            },
            other => other,
        }
    }
}

fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "{name:?} is {} characters long; at most 63 are allowed",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{name:?} may contain only lowercase letters, digits and '-' (a DNS label, e.g. \"my-app\")"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("{name:?} must start and end with a letter or digit"));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty; remove `access` for a pod without a host".into());
    }
    if host.len() > 253 {
        return Err(format!(
            "is {} characters long; a host name has at most 253",
            host.len()
        ));
    }
    if host == "invalid" || host.ends_with(".invalid") {
        return Err(format!(
            "{host:?}: the .invalid domain is reserved (RFC 2606) and used by the ingress's own probes"
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!(
                "{host:?} has an empty label (two dots in a row, or a dot at an end)"
            ));
        }
        if label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "{host:?} is not an RFC 1123 host name: use lowercase letters, digits, '-' and '.', e.g. \"myapp.local\""
            ));
        }
    }
    Ok(())
}

/// An HTTP path we may write into a request line: RFC 3986 characters only,
/// so nothing can inject a header.
fn check_http_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/', e.g. \"/healthz\""));
    }
    if path.len() > 1024 {
        return Err("is longer than 1024 characters".into());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%?".contains(c);
    if !path.chars().all(allowed) {
        return Err(format!(
            "{path:?} may contain only URL path characters (no spaces, quotes or control characters)"
        ));
    }
    Ok(())
}

fn check_env_key(key: &str) -> Result<(), String> {
    static KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));
    if KEY.is_match(key) {
        Ok(())
    } else {
        Err("an environment variable name uses letters, digits and '_', and does not start with a digit".into())
    }
}

/// The image reference grammar of the distribution project (docker's
/// `reference` package): `[domain[:port]/]path[:tag][@digest]`.
fn check_image(image: &str) -> Result<(), String> {
    static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
        let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!(r"{domain_component}(?:\.{domain_component})*(?::[0-9]+)?");
        let path_component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let name = format!(r"(?:{domain}/)?{path_component}(?:/{path_component})*");
        // `\w` of the regex crate is Unicode-aware: spell the ASCII classes out.
        let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        Regex::new(&format!(r"^{name}(?::{tag})?(?:@{digest})?$")).expect("valid regex")
    });
    if image.is_empty() {
        return Err("must not be empty, e.g. \"nginx:1.27\"".into());
    }
    if image.len() > 512 {
        return Err("is longer than 512 characters".into());
    }
    if !REFERENCE.is_match(image) {
        return Err(format!(
            "{image:?} is not a valid image reference: use [registry/]name[:tag][@digest] with a lowercase name, e.g. \"myapp-image:latest\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(yaml: &str) -> Result<PodSpec, SpecError> {
        let mut specs = parse_specs(yaml)?;
        assert_eq!(specs.len(), 1);
        Ok(specs.remove(0))
    }

    fn invalid_fields(yaml: &str) -> Vec<String> {
        match parse_specs(yaml) {
            Err(SpecError::Invalid { source, .. }) => source.problems.into_iter().map(|p| p.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn seed_shape_parses_with_defaults() {
        let spec = parse_one("name: myapp\nimage: myapp-image:latest\nreplicas: 3\naccess: {host: myapp.local}\n")
            .expect("valid");
        assert_eq!(spec.name, "myapp");
        assert_eq!(spec.replicas, 3);
        assert_eq!(spec.port, 80);
        assert_eq!(spec.host(), Some("myapp.local"));
        let minimal = parse_one("name: a\nimage: b\n").expect("valid");
        assert_eq!(minimal.replicas, 1);
        assert_eq!(minimal.access, None);
    }

    #[test]
    fn zero_replicas_is_allowed() {
        assert_eq!(
            parse_one("name: a\nimage: b\nreplicas: 0\n").expect("valid").replicas,
            0
        );
    }

    #[test]
    fn unknown_field_names_the_field_and_the_allowed_ones() {
        let err = parse_specs("name: a\nimage: b\nreplica: 3\n").expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("unknown field `replica`"), "{text}");
        assert!(text.contains("`replicas`"), "{text}");
        assert!(
            matches!(
                err,
                SpecError::Syntax {
                    document: 1,
                    location: Some((3, _)),
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_field_in_access_is_an_error() {
        let err = parse_specs("name: a\nimage: b\naccess: {hots: x.local}\n").expect_err("typo");
        assert!(err.to_string().contains("unknown field `hots`"), "{err}");
    }

    #[test]
    fn multi_document_files_parse_in_order_and_skip_empty_documents() {
        let specs = parse_specs("name: a\nimage: b\n---\n---\nname: c\nimage: d\n").expect("valid");
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn broken_yaml_reports_document_line_and_column() {
        let err = parse_specs("name: a\nimage: b\n---\nname: c\nimage: [d\n").expect_err("broken");
        match err {
            SpecError::Syntax { document, location, .. } => {
                assert_eq!(document, 2);
                assert!(location.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_types_are_syntax_errors() {
        assert!(matches!(
            parse_specs("name: a\nimage: b\nreplicas: many\n"),
            Err(SpecError::Syntax { .. })
        ));
        assert!(matches!(
            parse_specs("name: a\nimage: b\nreplicas: -1\n"),
            Err(SpecError::Syntax { .. })
        ));
        assert!(matches!(
            parse_specs("name: a\nimage: b\nport: 70000\n"),
            Err(SpecError::Syntax { .. })
        ));
        assert!(matches!(parse_specs("- a\n- b\n"), Err(SpecError::Syntax { .. })));
    }

    #[test]
    fn missing_required_fields_are_named() {
        let err = parse_specs("name: a\n").expect_err("no image");
        assert!(err.to_string().contains("missing field `image`"), "{err}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let err = parse_specs("name: a\nimage: b\n---\nname: a\nimage: c\n").expect_err("dup");
        assert!(matches!(err, SpecError::Duplicate { document: 2, .. }), "{err:?}");
    }

    #[test]
    fn bad_names_are_rejected() {
        for name in [
            "",
            "My-App",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "../etc",
            &"a".repeat(64),
            "a b",
            "ä",
        ] {
            let spec = PodSpec::new(name, "img");
            let err = spec.validate().expect_err(name);
            assert_eq!(err.problems[0].field, "name", "{name}");
        }
        for name in ["a", "my-app", "a1", "1a", &"a".repeat(63)] {
            PodSpec::new(name, "img").validate().expect(name);
        }
    }

    #[test]
    fn bad_hosts_are_rejected() {
        for host in [
            "",
            "a.com; include /etc/passwd",
            "a.com\nreturn 200",
            "$host",
            "a{b}.com",
            "a..com",
            ".a.com",
            "a.com.",
            "-a.com",
            "a-.com",
            "аpple.com", // Cyrillic a
            "a_b.com",
            "A.COM",
            "dubernetes-probe.invalid",
            &format!("{}.com", "a".repeat(64)),
            &vec!["a"; 130].join("."),
        ] {
            let err = PodSpec::new("p", "img").with_host(host).validate().expect_err(host);
            assert_eq!(err.problems[0].field, "access.host", "{host:?}");
        }
        for host in ["a", "myapp.local", "x-1.example.com", "1.2.3.4"] {
            PodSpec::new("p", "img").with_host(host).validate().expect(host);
        }
    }

    #[test]
    fn bad_images_are_rejected() {
        for image in [
            "",
            "UPPER:latest",
            "a b",
            "a:",
            ":tag",
            "a@sha256:xyz",
            "a;rm -rf /",
            "a\nb",
            "a:-tag",
        ] {
            let err = PodSpec::new("p", image).validate().expect_err(image);
            assert_eq!(err.problems[0].field, "image", "{image:?}");
        }
        for image in [
            "nginx",
            "nginx:1.27-alpine",
            "myapp-image:latest",
            "library/nginx",
            "localhost:5000/team/app:v1.2",
            "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "dubernetes/whoami:v1",
        ] {
            PodSpec::new("p", image).validate().expect(image);
        }
    }

    #[test]
    fn bad_replicas_ports_and_env_are_rejected() {
        let err = PodSpec::new("p", "i")
            .with_replicas(MAX_REPLICAS + 1)
            .validate()
            .expect_err("too many");
        assert_eq!(err.problems[0].field, "replicas");
        let err = PodSpec::new("p", "i").with_port(0).validate().expect_err("port 0");
        assert_eq!(err.problems[0].field, "port");
        assert_eq!(invalid_fields("name: p\nimage: i\nenv: {1A: x}\n"), ["env.1A"]);
        assert_eq!(invalid_fields("name: p\nimage: i\nenv: {\"A=B\": x}\n"), ["env.A=B"]);
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        assert_eq!(
            invalid_fields("name: Bad\nimage: Bad\naccess: {host: bad_host}\n"),
            ["name", "image", "access.host"]
        );
    }

    #[test]
    fn revision_hash_ignores_replicas_and_host() {
        let a = PodSpec::new("p", "img:1");
        let scaled = a.clone().with_replicas(7).with_host("x.local");
        assert_eq!(a.revision_hash(), scaled.revision_hash());
        assert_ne!(a.revision_hash(), PodSpec::new("p", "img:2").revision_hash());
        assert_ne!(a.revision_hash(), a.clone().with_port(8080).revision_hash());
        assert_ne!(a.revision_hash(), a.clone().with_env("K", "v").revision_hash());
        assert_eq!(a.revision_hash().len(), 12);
    }

    #[test]
    fn deploy_fields_parse_with_defaults() {
        let spec = parse_one(
            "name: a\nimage: b\ncommand: [/app]\nargs: [--port, \"8080\"]\nresources: {memory: 256Mi, cpus: 0.5}\n\
             health: {path: /healthz}\nupdate: {max_surge: 2, progress_deadline: 30s}\nstop_grace_period: 5s\n\
             restart: {initial_delay: 500ms}\n",
        )
        .expect("valid");
        assert_eq!(spec.memory_bytes(), Some(256 * 1024 * 1024));
        let h = spec.health.as_ref().expect("health");
        assert_eq!(
            (h.interval, h.timeout, h.healthy_after, h.unhealthy_after),
            (Duration::from_secs(2), Duration::from_secs(1), 1, 3)
        );
        let u = spec.update_strategy();
        assert_eq!(
            (u.max_surge, u.max_unavailable, u.progress_deadline),
            (2, 0, Duration::from_secs(30))
        );
        assert_eq!(spec.stop_grace_period, Some(Duration::from_secs(5)));
        assert_eq!(
            spec.restart.as_ref().and_then(|r| r.initial_delay),
            Some(Duration::from_millis(500))
        );
        // Round trip through JSON (what the store keeps) and YAML (what `get -o yaml` prints).
        let json = serde_json::to_string(&spec).expect("json");
        assert_eq!(serde_json::from_str::<PodSpec>(&json).expect("back"), spec);
        let yaml = serde_yaml_ng::to_string(&spec).expect("yaml");
        assert_eq!(parse_one(&yaml).expect("yaml back"), spec);
    }

    #[test]
    fn bad_deploy_fields_are_rejected() {
        let cases = [
            ("command: []", "command"),
            ("resources: {memory: 1k}", "resources.memory"),
            ("resources: {memory: 12 parsecs}", "resources.memory"),
            ("resources: {cpus: 0}", "resources.cpus"),
            ("resources: {cpus: .nan}", "resources.cpus"),
            ("health: {path: healthz}", "health.path"),
            ("health: {path: \"/a b\"}", "health.path"),
            ("health: {path: \"/a\\r\\nX: y\"}", "health.path"),
            ("health: {path: /h, interval: 1ms}", "health.interval"),
            ("health: {path: /h, healthy_after: 0}", "health.healthy_after"),
            ("health: {path: /h, port: 0}", "health.port"),
            ("update: {max_surge: 0, max_unavailable: 0}", "update"),
            ("update: {progress_deadline: 0s}", "update.progress_deadline"),
            ("update: {min_ready: 2h}", "update.min_ready"),
            ("update: {max_failures: 0}", "update.max_failures"),
            ("stop_grace_period: 2h", "stop_grace_period"),
        ];
        for (yaml, field) in cases {
            assert_eq!(
                invalid_fields(&format!("name: p\nimage: i\n{yaml}\n")),
                [field],
                "{yaml}"
            );
        }
        for yaml in [
            "stop_grace_period: soon",
            "health: {path: /h, timeout: 5}",
            "update: {max_surge: -1}",
            "health: {}",
            "health: {type: http}",
            "health: {type: tcp, path: /h}",
            "health: {type: grpc}",
        ] {
            assert!(
                matches!(
                    parse_specs(&format!("name: p\nimage: i\n{yaml}\n")),
                    Err(SpecError::Syntax { .. })
                ),
                "{yaml}"
            );
        }
    }

    #[test]
    fn readiness_defaults_to_tcp_and_the_old_health_shape_means_http() {
        let spec = parse_one("name: p\nimage: i\n").expect("parse");
        assert_eq!(spec.readiness().kind, CheckKind::Tcp);
        let u = spec.update_strategy();
        assert_eq!((u.min_ready, u.max_failures), (Duration::from_secs(5), 3));
        let kind = |yaml: &str| {
            parse_one(&format!("name: p\nimage: i\n{yaml}\n"))
                .expect(yaml)
                .readiness()
                .kind
        };
        assert_eq!(kind("health: {path: /healthz}"), CheckKind::Http);
        assert_eq!(kind("health: {type: http, path: /healthz}"), CheckKind::Http);
        assert_eq!(kind("health: {type: tcp, port: 81}"), CheckKind::Tcp);
        assert_eq!(kind("health: {type: none}"), CheckKind::None);
        let spec = parse_one("name: p\nimage: i\nhealth: {type: tcp}\nupdate: {min_ready: 0s, max_failures: 5}\n")
            .expect("parse");
        assert_eq!(spec.update_strategy().min_ready, Duration::ZERO);
        // Round trips (what the store keeps, what `get -o yaml` prints).
        let yaml = serde_yaml_ng::to_string(&spec).expect("yaml");
        assert_eq!(parse_one(&yaml).expect("back"), spec);
    }

    #[test]
    fn template_changes_make_new_revisions_policies_do_not() {
        let a = PodSpec::new("p", "img:1");
        let mut b = a.clone();
        b.command = Some(vec!["/x".into()]);
        assert_ne!(a.revision_hash(), b.revision_hash());
        let mut c = a.clone();
        c.resources = Some(Resources {
            memory: Some("64Mi".into()),
            cpus: None,
            pids: None,
        });
        assert_ne!(a.revision_hash(), c.revision_hash());
        let d = a.clone().with_health("/healthz");
        assert_eq!(a.revision_hash(), d.revision_hash());
        let e = PodSpec::new("p", "img:2").with_replicas(4).with_host("h.local");
        let undone = e.with_template_of(&a);
        assert_eq!(undone.revision_hash(), a.revision_hash());
        assert_eq!((undone.replicas, undone.host()), (4, Some("h.local")));
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        assert_eq!(parse_memory("512k"), Ok(512_000));
        assert_eq!(parse_memory("2Gi"), Ok(2 << 30));
        assert!(parse_memory("99999999999999999999g").is_err());
        assert!(parse_memory("1.5g").is_err());
    }

    #[test]
    fn billion_laughs_is_rejected() {
        let yaml = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
        assert!(parse_specs(yaml).is_err());
    }

    /// The issue's input: 44 KB of YAML whose `env` repeats one 32 KiB value
    /// through 1023 aliases (32 MiB once expanded).
    pub(crate) fn alias_bomb() -> String {
        let mut yaml = format!("name: bomb\nimage: b\nenv:\n  V0: &big \"{}\"\n", "x".repeat(32 * 1024));
        for i in 1..1024 {
            yaml.push_str(&format!("  V{i}: *big\n"));
        }
        yaml
    }

    #[test]
    fn aliases_count_their_expansion_against_the_stored_limit() {
        let yaml = alias_bomb();
        assert!(yaml.len() < 48 * 1024, "{}", yaml.len());
        let err = parse_specs(&yaml).expect_err("32 MiB expanded");
        match &err {
            SpecError::SpecTooLarge {
                document: 1,
                max,
                aliases: true,
                size,
                line: Some(line),
            } => {
                assert_eq!(*max, MAX_STORED_SPEC_BYTES);
                // Stopped at the first alias past the limit, not at the end.
                assert!(*size <= MAX_STORED_SPEC_BYTES + 33 * 1024, "{size}");
                assert!(*line < 20, "{line}");
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&MAX_STORED_SPEC_BYTES.to_string()) && text.contains("alias"),
            "{text}"
        );
        assert_eq!(err.field().as_deref(), Some("body"));
    }

    #[test]
    fn nested_aliases_multiply_and_are_refused_in_later_documents_too() {
        let mut yaml = String::from("name: ok\nimage: b\n---\nname: n\nimage: b\nargs: &a [");
        yaml.push_str(&vec![format!("\"{}\"", "y".repeat(1000)); 10].join(","));
        yaml.push_str("]\ncommand: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nenv: {K: *b}\n");
        // 10 KB anchored, 100 KB through `b`, nested once more by the alias to `b`:
        // small enough. Ten more aliases to `b` pass the limit.
        assert!(
            matches!(parse_specs(&yaml), Err(SpecError::Syntax { .. })),
            "types differ, but not too large"
        );
        let bigger = yaml.replace("env: {K: *b}", "labels: [*b, *b, *b]");
        match parse_specs(&bigger) {
            Err(SpecError::SpecTooLarge { document: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sensible_anchors_are_still_accepted() {
        let yaml = "name: a\nimage: b\nenv: &common {A: \"1\", B: \"2\"}\n---\nname: c\nimage: d\nargs: &args [x, y]\ncommand: [/bin/app]\n";
        let specs = parse_specs(yaml).expect("anchors are legitimate YAML");
        assert_eq!(specs[0].env.len(), 2);
        let reuse = "name: a\nimage: b\nargs: [&p \"--port\", *p]\n";
        assert_eq!(
            parse_one(reuse).expect("valid").args,
            Some(vec!["--port".into(), "--port".into()])
        );
    }

    #[test]
    fn the_stored_size_is_bounded_without_aliases_too() {
        // 9 values of 31 KiB: each valid, together over the stored limit.
        let mut spec = PodSpec::new("p", "i");
        for i in 0..9 {
            spec = spec.with_env(format!("V{i}"), "z".repeat(31 * 1024));
        }
        spec.validate().expect("every field is valid");
        assert!(matches!(
            check_stored_size(&spec),
            Err(SpecError::SpecTooLarge { aliases: false, .. })
        ));
        let json = serde_json::to_string(&spec).expect("json");
        assert!(matches!(parse_json_spec(&json), Err(SpecError::SpecTooLarge { .. })));
        let yaml = serde_yaml_ng::to_string(&spec).expect("yaml");
        assert!(matches!(parse_specs(&yaml), Err(SpecError::SpecTooLarge { .. })));
        check_stored_size(&PodSpec::new("p", "i").with_env("V", "z".repeat(31 * 1024))).expect("one is fine");
    }

    #[test]
    fn host_limits_default_on_and_can_be_overridden() {
        let spec = parse_one("name: a\nimage: b\n").expect("valid");
        let d = spec.container_limits();
        assert_eq!(
            (d.log_max_bytes, d.log_max_files, d.pids, d.no_new_privileges),
            (10 * 1024 * 1024, 3, Some(1024), true)
        );
        let spec = parse_one(
            "name: a\nimage: b\nlogging: {max_size: 1Mi, max_files: 5}\nresources: {pids: 0}\nsecurity: {no_new_privileges: false}\n",
        )
        .expect("valid");
        let o = spec.container_limits();
        assert_eq!(
            (o.log_max_bytes, o.log_max_files, o.pids, o.no_new_privileges),
            (1024 * 1024, 5, None, false)
        );
        assert_eq!(
            parse_one("name: a\nimage: b\nresources: {pids: 64}\n")
                .expect("valid")
                .container_limits()
                .pids,
            Some(64)
        );
        // What the container runs with is part of its revision...
        assert_ne!(spec.revision_hash(), PodSpec::new("a", "b").revision_hash());
        // ...but specs that do not set the new fields keep the hash they had before them.
        assert_eq!(PodSpec::new("p", "img:1").revision_hash(), "a7f00d741e54");
        for (yaml, field) in [
            ("logging: {max_size: 10}", "logging.max_size"),
            ("logging: {max_size: 2Ti}", "logging.max_size"),
            ("logging: {max_size: lots}", "logging.max_size"),
            ("logging: {max_files: 0}", "logging.max_files"),
            ("logging: {max_files: 101}", "logging.max_files"),
            ("resources: {pids: 4194305}", "resources.pids"),
        ] {
            assert_eq!(
                invalid_fields(&format!("name: p\nimage: i\n{yaml}\n")),
                [field],
                "{yaml}"
            );
        }
        assert!(matches!(
            parse_specs("name: p\nimage: i\nsecurity: {privileged: true}\n"),
            Err(SpecError::Syntax { .. })
        ));
    }

    #[test]
    fn broken_yaml_keeps_the_deserializers_message() {
        let yaml = "name: a\nimage: b\n---\nname: c\nimage: [d\n";
        let pre = match check_expansion(yaml, MAX_STORED_SPEC_BYTES) {
            Err(SpecError::Syntax { document, message, .. }) => (document, message),
            other => panic!("{other:?}"),
        };
        let serde_message = serde_yaml_ng::Deserializer::from_str(yaml)
            .filter_map(|d| serde::de::IgnoredAny::deserialize(d).err())
            .map(|e| e.to_string())
            .next()
            .expect("serde refuses it too");
        assert_eq!(pre, (2, serde_message));
    }
}

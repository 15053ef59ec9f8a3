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

// This file: `PodSpec` and its parts, the limits, the builders and the
// revision hash. `parse`: YAML/JSON in, with the size, nesting and alias
// bounds. `validate`: the field rules. `duration`: serde helpers.
mod cron;
mod duration;
pub use duration::{DURATION_PATTERN, parse_duration};
mod hooks;
mod image;
mod parse;
mod placement;
mod secret_refs;
#[cfg(test)]
mod tests;
mod validate;
pub(crate) use validate::check_dns_label;

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

/// Most entries of `expose` per pod.
pub const MAX_EXPOSE: usize = 16;

/// One entry of `expose`: the ingress accepts TCP connections on `listen`
/// (on the host) and passes each to a ready replica's `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Expose {
    /// The replicas' TCP port (1 to 65535).
    pub port: u16,
    /// Where the ingress listens on the host: `IPv4:PORT` (`127.0.0.1:15432`,
    /// `0.0.0.0:15432`), `[IPv6]:PORT` (`[::1]:15432`, `[::]:15432`), or a
    /// port alone (`"15432"`) for 127.0.0.1. The port (1 to 65535, not 80
    /// or 443) is unique in the instance.
    #[cfg_attr(feature = "openapi", schema(example = "127.0.0.1:15432"))]
    pub listen: String,
}

impl Expose {
    /// An entry publishing the replicas' `port` on `listen`.
    pub fn new(port: u16, listen: impl Into<String>) -> Self {
        Expose {
            port,
            listen: listen.into(),
        }
    }

    /// The host address of `listen` (a port alone means 127.0.0.1), or what is wrong with it.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, String> {
        parse_listen(&self.listen)
    }
}

/// `expose[].listen` as a host address: `IPv4:PORT`, `[IPv6]:PORT`, or a
/// port alone for 127.0.0.1. Decimal ports without leading zeros, 1 to
/// 65535, not 80 or 443.
pub fn parse_listen(listen: &str) -> Result<std::net::SocketAddr, String> {
    let bad = || {
        "must be IPv4:PORT (e.g. \"127.0.0.1:15432\", \"0.0.0.0:15432\"), [IPv6]:PORT (\"[::1]:15432\", \"[::]:15432\") or a port alone (\"15432\", on 127.0.0.1)"
            .to_string()
    };
    let (ip, port): (std::net::IpAddr, &str) = match listen.rsplit_once(':') {
        Some((ip, port)) => match ip.strip_prefix('[').and_then(|ip| ip.strip_suffix(']')) {
            // No zone (`%eth0`): the engine's port binding cannot carry one.
            Some(v6) => (v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?.into(), port),
            None => (ip.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?.into(), port),
        },
        None => (std::net::Ipv4Addr::LOCALHOST.into(), listen),
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number = match port.parse::<u16>() {
        Ok(0) => return Err("the port must be 1 to 65535 (clients need to know it)".into()),
        Ok(_) if port.starts_with('0') => return Err(format!("{port:?}: write the port without leading zeros")),
        Ok(n) => n,
        Err(_) => return Err(format!("{port:?}: the port must be 1 to 65535")),
    };
    if number == 80 || number == 443 {
        return Err(format!(
            "port {number} is the ingress container's own HTTP or HTTPS port; choose another"
        ));
    }
    Ok(std::net::SocketAddr::from((ip, number)))
}

/// Most entries of `volumes` per pod.
pub const MAX_VOLUMES: usize = 16;

/// Size of a tmpfs without `size`.
pub const DEFAULT_TMPFS_BYTES: u64 = 64 * 1024 * 1024;

/// Largest tmpfs `size`. It is a cap, not a reservation: what is written
/// there is memory, counted against the replica's memory limit.
pub const MAX_TMPFS_BYTES: u64 = 1 << 40;

/// Longest volume `path` or `tmpfs` path, in bytes.
pub const MAX_MOUNT_PATH_BYTES: usize = 1024;

/// One entry of `volumes`: `{name: NAME, path: PATH}`, a named volume of the
/// instance mounted at `path` (created on first use, never deleted with a
/// pod: `dubectl delete volume NAME`), or `{tmpfs: PATH, size: SIZE}`,
/// scratch space in memory, empty whenever a replica starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Volume {
    /// The named volume (a DNS label, e.g. `pgdata`); every pod naming it shares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the named volume appears in the container: an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Mounts a tmpfs at this absolute path instead (no `name`, no `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<String>,
    /// The tmpfs's size limit, e.g. `64Mi` (default 64Mi; 1Mi to 1Ti).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
}

/// What one valid entry of `volumes` mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeMount {
    /// The instance's named volume `name` at `path`.
    Named {
        /// The volume's name as the pod gives it.
        name: String,
        /// The absolute path in the container.
        path: String,
    },
    /// A tmpfs of `bytes` at `path`.
    Tmpfs {
        /// The absolute path in the container.
        path: String,
        /// Its size limit.
        bytes: u64,
    },
}

impl Volume {
    /// The named volume `name` at `path`.
    pub fn named(name: impl Into<String>, path: impl Into<String>) -> Volume {
        Volume {
            name: Some(name.into()),
            path: Some(path.into()),
            ..Volume::default()
        }
    }

    /// A tmpfs at `path`, `size` (e.g. `64Mi`) or the default.
    pub fn tmpfs(path: impl Into<String>, size: Option<&str>) -> Volume {
        Volume {
            tmpfs: Some(path.into()),
            size: size.map(str::to_string),
            ..Volume::default()
        }
    }

    /// What it mounts; `None` for an entry [`PodSpec::validate`] refuses.
    pub fn mount(&self) -> Option<VolumeMount> {
        match (&self.name, &self.path, &self.tmpfs) {
            (Some(name), Some(path), None) if self.size.is_none() => Some(VolumeMount::Named {
                name: name.clone(),
                path: path.clone(),
            }),
            (None, None, Some(path)) => {
                let bytes = match &self.size {
                    Some(size) => parse_memory(size).ok()?,
                    None => DEFAULT_TMPFS_BYTES,
                };
                Some(VolumeMount::Tmpfs {
                    path: path.clone(),
                    bytes,
                })
            }
            _ => None,
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Access {
    /// The host name the ingress routes to this pod (RFC 1123), or a
    /// wildcard `*.example.com` (one leading label). Merged with `hosts`:
    /// the pod serves `host` and every name of `hosts` (a name given twice
    /// is served once); at least one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// More host names (or `*.` wildcards) routed to this pod, beside `host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The path prefix of the hosts routed to this pod (default `/`, the
    /// whole host): whole segments, so `/api` routes `/api` and `/api/x` but
    /// not `/apix`. Several pods share a host with different paths; the
    /// longest prefix wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTPS for the hosts (none: plain HTTP only): `auto` (a certificate from
    /// the server's ACME directory) or `{secret: NAME}` (a certificate from
    /// `dubectl create secret tls NAME`, which must cover every host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Largest request body the ingress passes on, e.g. `10Mi` (default
    /// 100Mi; 1Ki to 1Ti); larger requests get 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<String>,
    /// How long the ingress waits on the replica between two reads or two
    /// writes (default 60s; 1s to 24h): a stream that sends something more
    /// often than this stays open for ever.
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "60s"))]
    pub timeout: Option<Duration>,
}

/// `access.max_body` when unset: 100 MiB.
pub const DEFAULT_MAX_BODY: u64 = 100 * 1024 * 1024;
/// Largest `access.max_body`: 1 TiB.
pub const MAX_MAX_BODY: u64 = 1 << 40;
/// `access.timeout` when unset.
pub const DEFAULT_INGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Most names in `access.hosts` (beside `access.host`).
pub const MAX_HOSTS: usize = 100;

/// Where the certificate of a host comes from (`access.tls`): the word `auto`
/// or the map `{secret: NAME}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Obtained (and renewed) from the server's ACME directory by HTTP-01 through the ingress.
    Auto,
    /// The TLS secret of this name (`dubectl create secret tls NAME --cert FILE --key FILE`).
    Secret(String),
}

impl Serialize for Tls {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Tls::Auto => serializer.serialize_str("auto"),
            Tls::Secret(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("secret", name)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Tls;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`auto` or `{secret: NAME}`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Tls, E> {
                match v {
                    "auto" => Ok(Tls::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tls, A::Error> {
                let mut secret = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "secret" {
                        return Err(serde::de::Error::unknown_field(&key, &["secret"]));
                    }
                    if secret.is_some() {
                        return Err(serde::de::Error::duplicate_field("secret"));
                    }
                    secret = Some(map.next_value::<String>()?);
                }
                secret
                    .map(Tls::Secret)
                    .ok_or_else(|| serde::de::Error::missing_field("secret"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Tls {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["auto"]))
                    .description(Some("a certificate from the server's ACME directory")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "secret",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))
                            .min_length(Some(1))
                            .max_length(Some(63)),
                    )
                    .required("secret")
                    .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
                    .description(Some("the TLS secret of this name")),
            )
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Tls {}

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

/// How the replicas of a new revision take over from the old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// New replicas start while the old ones serve; an old one goes once a
    /// new one is ready (`max_surge`, `max_unavailable`). No downtime.
    #[default]
    Rolling,
    /// Every old replica is stopped (and gone) before any new one starts:
    /// never two revisions at once (one writer on a volume), at the price of
    /// a gap in service. `max_surge` and `max_unavailable` do not apply.
    Recreate,
}

impl Strategy {
    fn is_rolling(&self) -> bool {
        *self == Strategy::Rolling
    }
}

/// How a new revision replaces the old one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateStrategy {
    /// `rolling` (the default) or `recreate`.
    #[serde(default, skip_serializing_if = "Strategy::is_rolling")]
    pub strategy: Strategy,
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
            strategy: Strategy::Rolling,
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
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub initial_delay: Option<Duration>,
    /// Longest delay.
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub max_delay: Option<Duration>,
    /// A replica that ran this long before it exited resets the back-off.
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10s"))]
    pub reset_after: Option<Duration>,
}

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

/// How often the implicit check (no `health` block: a TCP connect) repeats
/// once a replica is ready. It gates a new replica's traffic (checked at
/// once, then every 15 ms until it first passes); after that it only
/// catches a process that stays up but closes its port (an exit is an
/// engine event, seen at once), so it is cheap rather than quick: 350
/// replicas checked every 2 s cost the server 2-3% of a core, every 10 s
/// about 0.5%. Set a `health` block for a closer watch.
pub const IMPLICIT_CHECK_INTERVAL: Duration = Duration::from_secs(10);

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

//! `health`: the readiness check the controller makes of each replica.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, one, three};

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

//! Validation of a parsed spec: [`PodSpec::validate`], field by field
//! (`rules.rs`: the rules of single values).

mod rules;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use self::rules::check_dns_label;
use self::rules::{
    check_env_key, check_host_pattern, check_http_path, check_mount_path, check_route_path, check_secret_dir,
};
pub use self::rules::{check_file_key, check_volume_name, parse_memory};
use super::image::check_image;
use super::{
    CheckKind, EnvValue, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, MAX_HOSTS, MAX_MAX_BODY, MAX_PIDS, MAX_REPLICAS,
    MAX_SECRET_FILES, MAX_TMPFS_BYTES, MAX_VOLUMES, PodSpec, Tls,
};

impl PodSpec {
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
        self.validate_env(&mut problems);
        self.validate_command(&mut problems);
        self.validate_resources(&mut problems);
        self.validate_host_limits(&mut problems);
        self.validate_volumes(&mut problems);
        if let Some(hooks) = &self.hooks {
            hooks.validate(&mut problems);
        }
        self.validate_health(&mut problems);
        self.validate_update(&mut problems);
        if let Some(grace) = self.stop_grace_period
            && grace > Duration::from_secs(3600)
        {
            problems.push(FieldError::new("stop_grace_period", "must be at most 1h"));
        }
        self.validate_restart(&mut problems);
        self.validate_access(&mut problems);
        self.validate_expose(&mut problems);
        self.validate_secret_refs(&mut problems);
        if let Some(placement) = &self.placement {
            problems.extend(placement.problems());
        }
        self.validate_cron(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                pod: self.name.clone(),
                problems,
            })
        }
    }

    /// `env`: names, values, secret references.
    fn validate_env(&self, problems: &mut Vec<FieldError>) {
        for (key, value) in &self.env {
            // A bad key is named by its escaped form so nothing odd reaches a terminal or log.
            let field = format!("env.{}", key.escape_default());
            if let Err(m) = check_env_key(key) {
                problems.push(FieldError::new(field.clone(), m));
            }
            let value = match value {
                EnvValue::Value(v) => v,
                EnvValue::Secret(r) => {
                    check_secret_ref(problems, &format!("{field}.secret"), &r.secret);
                    if let Err(m) = check_env_key(&r.key).or_else(|_| check_file_key(&r.key)) {
                        problems.push(FieldError::new(format!("{field}.key"), m));
                    }
                    continue;
                }
            };
            if value.contains('\0') {
                problems.push(FieldError::new(field, "value must not contain a NUL byte"));
            } else if value.len() > MAX_ENV_VALUE_BYTES {
                problems.push(FieldError::new(
                    field,
                    format!("value is longer than {MAX_ENV_VALUE_BYTES} bytes"),
                ));
            }
        }
    }

    /// `command` and `args`.
    fn validate_command(&self, problems: &mut Vec<FieldError>) {
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
    }

    /// `resources`: memory and CPU limits.
    fn validate_resources(&self, problems: &mut Vec<FieldError>) {
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
    }

    /// `health`: path, port, timings, thresholds.
    fn validate_health(&self, problems: &mut Vec<FieldError>) {
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
    }

    /// `update`: surge, unavailability, deadlines.
    fn validate_update(&self, problems: &mut Vec<FieldError>) {
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
    }

    /// `restart`: the back-off delays.
    fn validate_restart(&self, problems: &mut Vec<FieldError>) {
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
    }

    /// Checks `expose`: ports, listen addresses, no listen port twice.
    fn validate_expose(&self, problems: &mut Vec<FieldError>) {
        if self.expose.len() > super::MAX_EXPOSE {
            problems.push(FieldError::new(
                "expose",
                format!("at most {} entries", super::MAX_EXPOSE),
            ));
            return;
        }
        let mut seen: Vec<(u16, usize)> = Vec::new();
        for (i, e) in self.expose.iter().enumerate() {
            if e.port == 0 {
                problems.push(FieldError::new(format!("expose[{i}].port"), "must be 1 to 65535"));
            }
            match e.listen_addr() {
                Ok(addr) => {
                    if let Some((_, j)) = seen.iter().find(|(p, _)| *p == addr.port()) {
                        problems.push(FieldError::new(
                            format!("expose[{i}].listen"),
                            format!("port {} is also the listen port of expose[{j}]", addr.port()),
                        ));
                    }
                    seen.push((addr.port(), i));
                }
                Err(m) => problems.push(FieldError::new(format!("expose[{i}].listen"), m)),
            }
        }
    }

    /// Checks `access`: its hosts, path, limits and what TLS can cover.
    fn validate_access(&self, problems: &mut Vec<FieldError>) {
        let Some(access) = &self.access else {
            return;
        };
        if access.host.is_none() && access.hosts.is_empty() {
            problems.push(FieldError::new(
                "access.host",
                "set `host` or `hosts`; remove `access` for a pod without a host",
            ));
        }
        if let Some(host) = &access.host
            && let Err(m) = check_host_pattern(host)
        {
            problems.push(FieldError::new("access.host", m));
        }
        if access.hosts.len() > MAX_HOSTS {
            problems.push(FieldError::new(
                "access.hosts",
                format!("has more than {MAX_HOSTS} names; split the pod's hosts or use a wildcard"),
            ));
        }
        for (i, host) in access.hosts.iter().enumerate() {
            let field = format!("access.hosts[{i}]");
            // A name given twice (or in both `host` and `hosts`) is served once.
            if let Err(m) = check_host_pattern(host) {
                problems.push(FieldError::new(field, m));
            }
        }
        if let Some(path) = &access.path
            && let Err(m) = check_route_path(path)
        {
            problems.push(FieldError::new("access.path", m));
        }
        if let Some(size) = &access.max_body {
            match parse_memory(size) {
                Ok(bytes) if !(1024..=MAX_MAX_BODY).contains(&bytes) => problems.push(FieldError::new(
                    "access.max_body",
                    format!("{size:?} is not between 1Ki and 1Ti"),
                )),
                Ok(_) => {}
                Err(m) => problems.push(FieldError::new("access.max_body", m)),
            }
        }
        if let Some(timeout) = access.timeout
            && !(Duration::from_secs(1)..=Duration::from_secs(24 * 3600)).contains(&timeout)
        {
            problems.push(FieldError::new(
                "access.timeout",
                "must be between 1s and 24h, e.g. \"60s\" or \"1h\"",
            ));
        }
        match &access.tls {
            Some(Tls::Secret(name)) => {
                if let Err(m) = check_dns_label(name) {
                    problems.push(FieldError::new("access.tls.secret", m));
                }
            }
            Some(Tls::Auto) => {
                if let Some(wild) = self.hosts().into_iter().find(|h| h.starts_with("*.")) {
                    problems.push(FieldError::new(
                        "access.tls",
                        format!(
                            "`auto` cannot cover the wildcard {wild:?}: ACME validates names by HTTP-01, which does not issue wildcards; use `tls: {{secret: NAME}}` with a wildcard certificate, or list the exact names"
                        ),
                    ));
                }
            }
            None => {}
        }
    }

    /// Checks `volumes`: each entry one shape, absolute paths, no path twice, no volume twice.
    fn validate_volumes(&self, problems: &mut Vec<FieldError>) {
        if self.volumes.len() > MAX_VOLUMES {
            problems.push(FieldError::new(
                "volumes",
                format!("has {} entries; at most {MAX_VOLUMES} are allowed", self.volumes.len()),
            ));
            return;
        }
        let mut paths: Vec<&str> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let at = |f: &str| format!("volumes[{i}].{f}");
            let path_field;
            let path = match (&v.name, &v.path, &v.tmpfs) {
                (Some(name), Some(path), None) => {
                    if let Err(m) = check_volume_name(name) {
                        problems.push(FieldError::new(at("name"), m));
                    } else if names.contains(&name.as_str()) {
                        problems.push(FieldError::new(
                            at("name"),
                            format!("volume {name:?} is mounted twice; mount it once"),
                        ));
                    } else {
                        names.push(name);
                    }
                    if v.size.is_some() {
                        problems.push(FieldError::new(
                            at("size"),
                            "only a tmpfs has a size; a named volume grows on the engine's disk",
                        ));
                    }
                    path_field = at("path");
                    path
                }
                (None, None, Some(path)) => {
                    if let Some(size) = &v.size {
                        match parse_memory(size) {
                            Ok(bytes) if (1024 * 1024..=MAX_TMPFS_BYTES).contains(&bytes) => {}
                            Ok(_) => problems.push(FieldError::new(
                                at("size"),
                                format!("{:?} is not between 1Mi and 1Ti", size.escape_default().to_string()),
                            )),
                            Err(m) => problems.push(FieldError::new(at("size"), m)),
                        }
                    }
                    path_field = at("tmpfs");
                    path
                }
                _ => {
                    problems.push(FieldError::new(
                        format!("volumes[{i}]"),
                        "use {name: NAME, path: /abs/path} for a named volume or {tmpfs: /abs/path, size: 64Mi} for scratch space",
                    ));
                    continue;
                }
            };
            if let Err(m) = check_mount_path(path) {
                problems.push(FieldError::new(path_field, m));
            } else if paths.contains(&path.as_str()) {
                problems.push(FieldError::new(
                    path_field,
                    format!("{path:?} is mounted twice; give each entry its own path"),
                ));
            } else {
                paths.push(path);
            }
        }
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

impl PodSpec {
    /// `secret_files` and `image_pull_secret`.
    fn validate_secret_refs(&self, problems: &mut Vec<FieldError>) {
        if self.secret_files.len() > MAX_SECRET_FILES {
            problems.push(FieldError::new(
                "secret_files",
                format!(
                    "has {} entries; at most {MAX_SECRET_FILES} are allowed",
                    self.secret_files.len()
                ),
            ));
        }
        let mut paths = std::collections::HashSet::new();
        for (i, f) in self.secret_files.iter().enumerate() {
            check_secret_ref(problems, &format!("secret_files[{i}].secret"), &f.secret);
            let field = format!("secret_files[{i}].path");
            if let Err(m) = check_secret_dir(&f.path) {
                problems.push(FieldError::new(field, m));
            } else if !paths.insert(f.path.trim_end_matches('/')) {
                problems.push(FieldError::new(
                    field,
                    "is used by another entry; give each secret its own directory",
                ));
            }
        }
        if let Some(name) = &self.image_pull_secret {
            check_secret_ref(problems, "image_pull_secret", name);
        }
    }
}

/// A secret's name where a pod names one: a DNS label.
fn check_secret_ref(problems: &mut Vec<FieldError>, field: &str, name: &str) {
    if let Err(m) = check_dns_label(name) {
        problems.push(FieldError::new(field, m));
    }
}

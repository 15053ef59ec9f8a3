//! Validation of a parsed spec: [`PodSpec::validate`] and the rules of each field.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::image::check_image;
use super::{
    CheckKind, EnvValue, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, MAX_HOSTS, MAX_MAX_BODY, MAX_MOUNT_PATH_BYTES, MAX_PIDS,
    MAX_REPLICAS, MAX_SECRET_FILES, MAX_TMPFS_BYTES, MAX_VOLUMES, PodSpec, Tls,
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
        for (key, value) in &self.env {
            // A bad key is named by its escaped form so nothing odd reaches a terminal or log.
            let field = format!("env.{}", key.escape_default());
            if let Err(m) = check_env_key(key) {
                problems.push(FieldError::new(field.clone(), m));
            }
            let value = match value {
                EnvValue::Value(v) => v,
                EnvValue::Secret(r) => {
                    check_secret_ref(&mut problems, &format!("{field}.secret"), &r.secret);
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
        self.validate_volumes(&mut problems);
        if let Some(hooks) = &self.hooks {
            hooks.validate(&mut problems);
        }
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

pub(crate) fn check_dns_label(name: &str) -> Result<(), String> {
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

/// A volume name: a DNS label, as pod names are (the engine's volume is
/// `dub-<instance>-<name>`, see the engine's volumes).
pub fn check_volume_name(name: &str) -> Result<(), String> {
    check_dns_label(name)
}

/// A mount path: absolute, plain (no `.`, `..` or empty component, not `/`
/// itself), of characters that need no quoting anywhere.
fn check_mount_path(path: &str) -> Result<(), String> {
    let shown = || path.escape_default().to_string();
    if !path.starts_with('/') {
        return Err(format!("{:?} must be an absolute path, e.g. \"/data\"", shown()));
    }
    if path.len() > MAX_MOUNT_PATH_BYTES {
        return Err(format!("is longer than {MAX_MOUNT_PATH_BYTES} bytes"));
    }
    if path == "/" {
        return Err("cannot be `/` itself; mount below it, e.g. \"/data\"".into());
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._@+~=,".contains(&b))
    {
        return Err(format!(
            "{:?} may contain only letters, digits and / - . _ @ + ~ = ,",
            shown()
        ));
    }
    if path[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!(
            "{:?} must be a plain path: no `//`, no trailing `/`, no `.` or `..`",
            shown()
        ));
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

/// A host of `access`: an RFC 1123 name, or `*.` and one (a wildcard for one leading label).
fn check_host_pattern(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err(format!(
            "is {} characters long; a host name has at most 253",
            host.len()
        ));
    }
    match host.strip_prefix("*.") {
        Some(rest) if !rest.contains('*') => {
            if !rest.contains('.') {
                return Err(format!(
                    "{host:?}: a wildcard needs a parent domain of two labels or more, e.g. \"*.example.com\""
                ));
            }
            check_host(rest).map_err(|m| format!("after \"*.\": {m}"))
        }
        _ if host.contains('*') => Err(format!(
            "{host:?}: a wildcard is only allowed as the whole first label, e.g. \"*.example.com\""
        )),
        _ => check_host(host),
    }
}

/// `access.path`: `/`, or `/` and segments of letters, digits, `-`, `.`, `_`
/// and `~` (no `.` or `..` segment, no trailing `/`): what nginx's location
/// match sees after it decodes the request path, and safe in its config.
fn check_route_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/', e.g. \"/api\""));
    }
    if path.len() > 256 {
        return Err("is longer than 256 characters".into());
    }
    if path == "/" {
        return Ok(());
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "{path:?} has an empty, \".\" or \"..\" segment; write the prefix like \"/api/v2\""
            ));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(format!(
                "{path:?} may contain only letters, digits, '-', '.', '_', '~' and '/' (no spaces, quotes, '%', '*' or regex)"
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

/// A key of a generic secret (a file name in `secret_files`, or an env name):
/// letters, digits, `-`, `_` and `.`, not `.` or `..`, at most 253.
pub fn check_file_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err("a secret key uses letters, digits, '-', '_' and '.' (at most 253), and is not '.' or '..'".into())
    }
}

/// An absolute directory in a container: `/` then segments of letters,
/// digits, `-`, `_`, `.` (no `..`), not `/` itself, at most 256 bytes.
fn check_secret_dir(path: &str) -> Result<(), String> {
    let trimmed = path.trim_end_matches('/');
    let ok = path.starts_with('/')
        && path.len() <= 256
        && !trimmed.is_empty()
        && trimmed[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(
            "must be an absolute directory such as /run/secrets/db (letters, digits, '-', '_', '.'; no '..'; not '/')"
                .into(),
        )
    }
}

fn check_env_key(key: &str) -> Result<(), String> {
    static KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));
    if KEY.is_match(key) {
        Ok(())
    } else {
        Err("an environment variable name uses letters, digits and '_', and does not start with a digit".into())
    }
}

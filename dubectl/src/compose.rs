//! Compose files (`docker-compose.yml`, `compose.yaml`) read as pods.
//!
//! Each service becomes one pod; every key of the file is either mapped to a
//! pod field, kept as a note (a YAML comment: `depends_on`, what a published
//! host port becomes), or reported as **unmapped** with its path
//! (`services.web.volumes[0]`) and the reason. Nothing is dropped silently:
//! `convert` prints the pods and lists the unmapped keys on stderr
//! (`--strict` makes them an error), `apply` refuses a file with any.
//!
//! Why our own walk over a `serde_yaml_ng::Value` rather than a typed crate
//! (`docker-compose-types`): naming *every* key we cannot map needs every key
//! the file has, and a typed model drops or refuses the ones it does not
//! know; that crate also parses with `serde_yaml` 0.9 or `serde_yml`, a
//! second YAML parser beside the one the workspace uses. The compose
//! grammar we read (short and long forms of ports, volumes, environment,
//! healthcheck, secrets; `${VAR:-default}` interpolation; `<<` merge keys)
//! is documented in docs/compose.md. Command strings are split with `shlex`
//! (POSIX shell words, as Compose does), `env_file`s read with `dotenvy`.
//!
//! The conversion is pure: files (`env_file`, `.env`) and the environment
//! come in through [`Source`], so the unit tests below run on fixed inputs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use dubernetes_api::{
    Access, CheckKind, EnvValue, Expose, HealthCheck, Logging, MAX_SPEC_BYTES, PodSpec, PullPolicy, Resources,
    SecretFiles, Security, Strategy, Volume,
};
use serde_yaml_ng::{Mapping, Value};

/// Where the files a compose file names and the variables it interpolates come from.
pub struct Source<'a> {
    /// The compose file's directory: `env_file`, `.env` and secret files are relative to it.
    pub dir: PathBuf,
    /// A variable of the environment dubectl runs in.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Reads a file (at most [`MAX_SPEC_BYTES`]).
    pub read: &'a dyn Fn(&Path) -> std::io::Result<String>,
}

impl Source<'static> {
    /// The real environment and file system, for a compose file in `dir`.
    pub fn system(dir: PathBuf) -> Source<'static> {
        Source {
            dir,
            env: &|name| std::env::var(name).ok(),
            read: &read_bounded,
        }
    }
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_SPEC_BYTES {
        return Err(std::io::Error::other(format!("larger than {MAX_SPEC_BYTES} bytes")));
    }
    Ok(text)
}

/// Choices the compose file cannot make.
#[derive(Debug, Clone)]
pub struct Options {
    /// Hosts of published HTTP ports are `SERVICE.DOMAIN` (default `localhost`).
    pub domain: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            domain: "localhost".into(),
        }
    }
}

/// A key of the compose file with no equivalent in a pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// Where it is, e.g. `services.web.volumes[0]`.
    pub path: String,
    /// Why it does not map, and what to do instead.
    pub reason: String,
}

/// One service as a pod.
#[derive(Debug, Clone)]
pub struct ConvertedPod {
    /// The service's name in the compose file.
    pub service: String,
    /// The pod.
    pub spec: PodSpec,
    /// What a reader should know (written as YAML comments above the pod).
    pub notes: Vec<String>,
}

/// The whole file as pods.
#[derive(Debug, Clone, Default)]
pub struct Conversion {
    /// The pods, in the file's order of services.
    pub pods: Vec<ConvertedPod>,
    /// Every key that did not map.
    pub unmapped: Vec<Unmapped>,
    /// Not a lost key, but worth a look (an unset variable, a renamed service).
    pub warnings: Vec<String>,
}

/// Whether `text` is a compose file rather than pod specs: a YAML mapping with
/// a top-level `services` key (a pod spec has no such field).
pub fn is_compose(text: &str) -> bool {
    use serde::Deserialize as _;
    let Some(first) = serde_yaml_ng::Deserializer::from_str(text).next() else {
        return false;
    };
    match Value::deserialize(first) {
        Ok(Value::Mapping(m)) => m.contains_key("services"),
        _ => false,
    }
}

/// Container ports that speak something other than HTTP, so that a published
/// one is a TCP port (not a route of the ingress): databases, queues, mail, SSH...
const TCP_PORTS: &[u16] = &[
    21, 22, 23, 25, 53, 110, 143, 389, 465, 587, 636, 993, 995, 1433, 1521, 1883, 2049, 2181, 3306, 4222, 5432, 5672,
    6379, 8883, 9042, 9092, 11211, 26257, 27017, 33060,
];

/// The port an image listens on, for services that name none (so that the
/// pod's readiness check, a TCP connect to `port`, can pass).
const IMAGE_PORTS: &[(&str, u16)] = &[
    ("postgres", 5432),
    ("postgis", 5432),
    ("mysql", 3306),
    ("mariadb", 3306),
    ("redis", 6379),
    ("valkey", 6379),
    ("mongo", 27017),
    ("memcached", 11211),
    ("rabbitmq", 5672),
];

/// Reads a compose file and returns its services as pods, with every key
/// that did not map. An error only for input that is not a compose file at
/// all (not YAML, no `services`), or an interpolation that fails (`${VAR:?message}`).
pub fn convert(text: &str, source: &Source<'_>, options: &Options) -> anyhow::Result<Conversion> {
    if text.len() > MAX_SPEC_BYTES {
        bail!(
            "the compose file is {} bytes; at most {MAX_SPEC_BYTES} are read",
            text.len()
        );
    }
    let mut root: Value = serde_yaml_ng::from_str(text).context("not a YAML document")?;
    root.apply_merge().context("a `<<` merge key")?;
    let mut out = Conversion::default();
    let dotenv = read_dotenv(source, &mut out)?;
    let lookup = |name: &str| (source.env)(name).or_else(|| dotenv.get(name).cloned());
    interpolate_tree(&mut root, "", &lookup, &mut out.warnings)?;
    let Value::Mapping(root) = root else {
        bail!("a compose file is a mapping with `services`");
    };
    let Some(Value::Mapping(services)) = root.get("services") else {
        bail!("no `services` mapping: not a compose file");
    };
    let top = Top::read(&root, &mut out);
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (key, service) in services {
        let Some(name) = key.as_str() else {
            out.unmapped
                .push(unmapped("services", "a service name that is not a string"));
            continue;
        };
        let path = format!("services.{name}");
        let Value::Mapping(service) = service else {
            out.unmapped.push(unmapped(&path, "a service is a mapping"));
            continue;
        };
        let pod_name = dns_name(name);
        if let Some(other) = names.insert(pod_name.clone(), name.to_string()) {
            out.unmapped.push(unmapped(
                &path,
                &format!("services {other:?} and {name:?} would both be pod {pod_name:?}; rename one"),
            ));
            continue;
        }
        if let Some(pod) = Service::new(name, &pod_name, &path, service, &top, source, options, &mut out).convert() {
            out.pods.push(pod);
        }
    }
    if out.pods.is_empty() && out.unmapped.is_empty() {
        bail!("`services` is empty");
    }
    Ok(out)
}

/// The pods as YAML documents, each with its notes as comments above it.
pub fn to_yaml(conversion: &Conversion) -> anyhow::Result<String> {
    let mut out = String::new();
    for pod in &conversion.pods {
        out.push_str("---\n");
        let _ = writeln!(out, "# compose service {}", crate::escape::line(&pod.service));
        for note in &pod.notes {
            let _ = writeln!(out, "# {}", crate::escape::line(note));
        }
        out.push_str(&crate::escape::yaml(&pod.spec).context("writing a pod as YAML")?);
    }
    Ok(out)
}

/// A lowercase DNS label from a compose name (`my_app` → `my-app`).
fn dns_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    mapped.trim_matches('-').chars().take(63).collect()
}

fn unmapped(path: &str, reason: &str) -> Unmapped {
    Unmapped {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// `.env` beside the compose file: variables for interpolation (the
/// environment wins), as Compose reads it.
fn read_dotenv(source: &Source<'_>, out: &mut Conversion) -> anyhow::Result<BTreeMap<String, String>> {
    let path = source.dir.join(".env");
    match (source.read)(&path) {
        Ok(text) => parse_env_file(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => {
            out.warnings.push(format!("{}: not read ({e})", path.display()));
            Ok(BTreeMap::new())
        }
    }
}

/// `KEY=VALUE` lines (comments, quotes, `export`) as dotenv files have them.
fn parse_env_file(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (key, value) = item.map_err(|e| anyhow::anyhow!("{e}"))?;
        vars.insert(key, value);
    }
    Ok(vars)
}

/// Replaces `${VAR}`, `$VAR`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` in
/// every string value of the tree (not in keys), as Compose does.
fn interpolate_tree(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = interpolate(s, lookup, warnings).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), lookup, warnings)?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = key_text(k);
                let child = if path.is_empty() { key } else { format!("{path}.{key}") };
                interpolate_tree(v, &child, lookup, warnings)?;
            }
        }
        Value::Tagged(tagged) => interpolate_tree(&mut tagged.value, path, lookup, warnings)?,
        _ => {}
    }
    Ok(())
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            // The matching `}`, counting nested `${`.
            let mut depth = 1;
            let mut end = None;
            let bytes = inner.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'$' if bytes.get(i + 1) == Some(&b'{') => {
                        depth += 1;
                        i += 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            let end = end.ok_or_else(|| format!("{text:?}: a `${{` without its `}}`"))?;
            out.push_str(&expand(&inner[..end], lookup, warnings)?);
            rest = &inner[end + 1..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
                out.push('$');
            } else {
                out.push_str(&expand(&rest[..len], lookup, warnings)?);
                rest = &rest[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` body: `NAME`, or `NAME` with an operator and its word.
fn expand(body: &str, lookup: &dyn Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Result<String, String> {
    let len = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, op) = body.split_at(len);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("`${{{body}}}` names no variable"));
    }
    let value = lookup(name);
    let set = value.is_some();
    let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
    let word = |w: &str, warnings: &mut Vec<String>| interpolate(w, lookup, warnings);
    let result = match op {
        "" => match value {
            Some(v) => v,
            None => {
                warnings.push(format!(
                    "the variable {name} is not set: an empty string is used (as compose does)"
                ));
                String::new()
            }
        },
        _ if op.starts_with(":-") => {
            if nonempty {
                value.unwrap_or_default()
            } else {
                word(&op[2..], warnings)?
            }
        }
        _ if op.starts_with('-') => {
            if set {
                value.unwrap_or_default()
            } else {
                word(&op[1..], warnings)?
            }
        }
        _ if op.starts_with(":?") => {
            if nonempty {
                value.unwrap_or_default()
            } else {
                return Err(format!("{name} is required: {}", word(&op[2..], warnings)?));
            }
        }
        _ if op.starts_with('?') => {
            if set {
                value.unwrap_or_default()
            } else {
                return Err(format!("{name} is required: {}", word(&op[1..], warnings)?));
            }
        }
        _ if op.starts_with(":+") => {
            if nonempty {
                word(&op[2..], warnings)?
            } else {
                String::new()
            }
        }
        _ if op.starts_with('+') => {
            if set {
                word(&op[1..], warnings)?
            } else {
                String::new()
            }
        }
        _ => return Err(format!("`${{{body}}}`: unknown operator (use :-, -, :?, ?, :+ or +)")),
    };
    Ok(result)
}

/// The top-level declarations services refer to.
struct Top {
    /// Named volumes declared at the top, with whether they can be used.
    volumes: BTreeMap<String, Result<(), String>>,
    /// Secrets declared at the top: where their value comes from.
    secrets: BTreeMap<String, SecretSource>,
}

enum SecretSource {
    File(String),
    Environment(String),
    Unusable,
}

impl Top {
    fn read(root: &Mapping, out: &mut Conversion) -> Top {
        let mut top = Top {
            volumes: BTreeMap::new(),
            secrets: BTreeMap::new(),
        };
        for (key, value) in root {
            let key = key_text(key);
            match key.as_str() {
                "services" => {}
                // Obsolete; Compose ignores it too.
                "version" => {}
                // The project name prefixes Compose's containers; pods are named by service.
                "name" => {}
                _ if key.starts_with("x-") => {}
                // Networks are judged where services use them.
                "networks" => {}
                "volumes" => top.read_volumes(value, out),
                "secrets" => top.read_secrets(value, out),
                "configs" => out.unmapped.push(unmapped(
                    "configs",
                    "configs have no equivalent: put the file in the image, or in a generic secret (secret_files)",
                )),
                _ => out.unmapped.push(unmapped(
                    &key,
                    "no equivalent in Dubernetes (not a key converted from compose)",
                )),
            }
        }
        top
    }

    fn read_volumes(&mut self, value: &Value, out: &mut Conversion) {
        let Value::Mapping(volumes) = value else {
            if !value.is_null() {
                out.unmapped.push(unmapped("volumes", "`volumes` is a mapping"));
            }
            return;
        };
        for (name, decl) in volumes {
            let name = key_text(name);
            let path = format!("volumes.{name}");
            let mut usable = Ok(());
            if let Value::Mapping(decl) = decl {
                for (k, v) in decl {
                    let k = key_text(k);
                    let reason = match k.as_str() {
                        "external" if v.as_bool() == Some(false) => continue,
                        "external" => {
                            "an external volume is made outside Dubernetes, which never mounts a volume it did not make; drop `external` (a new, empty volume is made) or copy the data in"
                        }
                        "driver" if v.as_str() == Some("local") => continue,
                        "driver" | "driver_opts" => "volumes use the engine's local driver only",
                        "name" => {
                            "the engine name of a volume is Dubernetes' own (dub-INSTANCE_NAME); the pod uses the key's name"
                        }
                        "labels" => "volumes carry Dubernetes' own labels only",
                        _ if k.starts_with("x-") => continue,
                        _ => "no equivalent for a volume",
                    };
                    out.unmapped.push(unmapped(&format!("{path}.{k}"), reason));
                    usable = Err(format!("see {path}.{k}"));
                }
            }
            self.volumes.insert(name, usable);
        }
    }

    fn read_secrets(&mut self, value: &Value, out: &mut Conversion) {
        let Value::Mapping(secrets) = value else {
            out.unmapped.push(unmapped("secrets", "`secrets` is a mapping"));
            return;
        };
        for (name, decl) in secrets {
            let name = key_text(name);
            let path = format!("secrets.{name}");
            let source = match decl.get("file").and_then(Value::as_str) {
                Some(file) => SecretSource::File(file.to_string()),
                None => match decl.get("environment").and_then(Value::as_str) {
                    Some(var) => SecretSource::Environment(var.to_string()),
                    None => {
                        out.unmapped.push(unmapped(
                            &path,
                            "only secrets from a `file` or an `environment` variable map (to a generic secret made with dubectl create secret generic)",
                        ));
                        SecretSource::Unusable
                    }
                },
            };
            self.secrets.insert(name, source);
        }
    }
}

/// One service being converted.
struct Service<'a> {
    name: &'a str,
    path: String,
    map: &'a Mapping,
    top: &'a Top,
    source: &'a Source<'a>,
    options: &'a Options,
    out: &'a mut Conversion,
    spec: PodSpec,
    notes: Vec<String>,
}

/// A port of a service: its container port and how it is published.
struct Port {
    path: String,
    target: u16,
    published: Option<String>,
    host_ip: Option<String>,
    udp: bool,
}

impl<'a> Service<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'a str,
        pod_name: &str,
        path: &str,
        map: &'a Mapping,
        top: &'a Top,
        source: &'a Source<'a>,
        options: &'a Options,
        out: &'a mut Conversion,
    ) -> Service<'a> {
        Service {
            name,
            path: path.to_string(),
            map,
            top,
            source,
            options,
            out,
            spec: PodSpec::new(pod_name, ""),
            notes: Vec::new(),
        }
    }

    fn lost(&mut self, key: &str, reason: &str) {
        self.out
            .unmapped
            .push(unmapped(&format!("{}.{key}", self.path), reason));
    }

    fn convert(mut self) -> Option<ConvertedPod> {
        if self.spec.name != self.name {
            self.notes.push(format!(
                "pod name {:?}: the service name {:?} made a DNS label; other services reach it by the new name",
                self.spec.name, self.name
            ));
        }
        let mut ports: Vec<Port> = Vec::new();
        let mut exposed: Vec<u16> = Vec::new();
        let mut healthcheck = None;
        for (key, value) in self.map {
            let key = key_text(key);
            match key.as_str() {
                "image" => match value.as_str() {
                    Some(image) => self.spec.image = image.to_string(),
                    None => self.lost("image", "`image` is a string"),
                },
                "build" => self.lost(
                    "build",
                    "Dubernetes runs images and builds none: build and push the image (docker build -t NAME .), then set `image`",
                ),
                "environment" => self.environment(value),
                "env_file" => self.env_file(value),
                "command" => self.spec.args = self.words("command", value),
                "entrypoint" => self.spec.command = self.words("entrypoint", value),
                "ports" => ports = self.ports(value),
                "expose" => exposed = self.expose(value),
                "volumes" => self.volumes(value),
                "tmpfs" => self.tmpfs(value),
                "healthcheck" => healthcheck = Some(value),
                "depends_on" => self.depends_on(value),
                "links" => self.links(value),
                "secrets" => self.secrets(value),
                "deploy" => self.deploy(value),
                "scale" => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => self.spec.replicas = n,
                    None => self.lost("scale", "`scale` is a number of replicas"),
                },
                "restart" => match value.as_str() {
                    Some("always" | "unless-stopped") => {}
                    _ => self.lost(
                        "restart",
                        "a pod's replicas are always replaced when they exit (restart: always); a one-off is `dubectl run`",
                    ),
                },
                "mem_limit" => self.memory("mem_limit", value),
                "cpus" => self.cpus("cpus", value),
                "pids_limit" => match value.as_i64() {
                    Some(-1) => self.resources().pids = Some(0),
                    Some(n) => match u32::try_from(n) {
                        Ok(n) => self.resources().pids = Some(n),
                        Err(_) => self.lost("pids_limit", "not a number of processes"),
                    },
                    None => self.lost("pids_limit", "not a number of processes"),
                },
                "stop_grace_period" => match value.as_str().and_then(duration) {
                    Some(d) => self.spec.stop_grace_period = Some(d),
                    None => self.lost("stop_grace_period", "not a duration like 10s or 1m30s"),
                },
                "pull_policy" => match value.as_str() {
                    Some("always") => self.spec.pull = Some(PullPolicy::Always),
                    Some("never") => self.spec.pull = Some(PullPolicy::Never),
                    Some("missing" | "if_not_present") => self.spec.pull = Some(PullPolicy::IfNotPresent),
                    _ => self.lost("pull_policy", "only always, never, missing and if_not_present map"),
                },
                "logging" => self.logging(value),
                "security_opt" => self.security_opt(value),
                "networks" => self.networks(value),
                "network_mode" => self.lost(
                    "network_mode",
                    "every pod joins its instance's network; another network mode has no equivalent",
                ),
                "container_name" | "hostname" => self.lost(
                    &key,
                    "a replica is named by Dubernetes; other pods reach it by the pod's name",
                ),
                "labels" => self.lost("labels", "pods carry no labels of their own"),
                _ if key.starts_with("x-") => {}
                _ => self.lost(&key, "no equivalent in a pod spec"),
            }
        }
        self.ports_and_access(&ports, &exposed);
        if let Some(healthcheck) = healthcheck {
            self.healthcheck(healthcheck);
        }
        if self.spec.image.is_empty() {
            if !self.map.contains_key("build") {
                self.lost("image", "a service without `image` cannot be a pod");
            }
            return None;
        }
        if let Err(e) = self.spec.validate() {
            for problem in e.problems {
                self.out.unmapped.push(unmapped(
                    &self.path,
                    &format!("the pod would be invalid: {}: {}", problem.field, problem.message),
                ));
            }
        }
        Some(ConvertedPod {
            service: self.name.to_string(),
            spec: self.spec,
            notes: self.notes,
        })
    }

    fn resources(&mut self) -> &mut Resources {
        self.spec.resources.get_or_insert_with(Resources::default)
    }

    fn environment(&mut self, value: &Value) {
        match value {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(text) = scalar(item) else {
                        self.lost(&format!("environment[{i}]"), "an entry is KEY=VALUE or KEY");
                        continue;
                    };
                    match text.split_once('=') {
                        Some((k, v)) => self.set_env(k, Some(v.to_string())),
                        None => self.set_env(&text, None),
                    }
                }
            }
            Value::Mapping(map) => {
                for (k, v) in map {
                    let k = key_text(k);
                    match v {
                        Value::Null => self.set_env(&k, None),
                        v => match scalar(v) {
                            Some(v) => self.set_env(&k, Some(v)),
                            None => self.lost(&format!("environment.{k}"), "a value is a string, number or boolean"),
                        },
                    }
                }
            }
            _ => self.lost("environment", "a list of KEY=VALUE or a mapping"),
        }
    }

    /// `KEY` alone takes its value from dubectl's environment, as Compose
    /// takes it from the shell's; unset, the variable is left out.
    fn set_env(&mut self, key: &str, value: Option<String>) {
        let value = match value {
            Some(v) => v,
            None => match (self.source.env)(key) {
                Some(v) => v,
                None => {
                    self.out.warnings.push(format!(
                        "{}.environment.{key}: no value and not set in this environment: left out (as compose does)",
                        self.path
                    ));
                    return;
                }
            },
        };
        self.spec.env.insert(key.to_string(), EnvValue::Value(value));
    }

    fn env_file(&mut self, value: &Value) {
        let entries: Vec<(String, bool)> = match value {
            Value::String(s) => vec![(s.clone(), true)],
            Value::Sequence(items) => items
                .iter()
                .filter_map(|item| match item {
                    Value::String(s) => Some((s.clone(), true)),
                    Value::Mapping(m) => Some((
                        m.get("path").and_then(Value::as_str)?.to_string(),
                        m.get("required").and_then(Value::as_bool).unwrap_or(true),
                    )),
                    _ => None,
                })
                .collect(),
            _ => {
                self.lost("env_file", "a path or a list of paths");
                return;
            }
        };
        for (file, required) in entries {
            let path = self.source.dir.join(&file);
            match (self.source.read)(&path) {
                Ok(text) => match parse_env_file(&text) {
                    Ok(vars) => {
                        for (k, v) in vars {
                            // `environment` wins over env_file, whatever the order of the keys.
                            if !self.has_environment(&k) {
                                self.spec.env.insert(k, EnvValue::Value(v));
                            }
                        }
                    }
                    Err(e) => self.lost("env_file", &format!("{file}: {e}")),
                },
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.lost("env_file", &format!("{}: not read: {e}", path.display())),
            }
        }
    }

    fn has_environment(&self, key: &str) -> bool {
        match self.map.get("environment") {
            Some(Value::Mapping(m)) => m.contains_key(key),
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .any(|item| item.split_once('=').map(|(k, _)| k).unwrap_or(item) == key),
            _ => false,
        }
    }

    /// `command` and `entrypoint`: a list, or a string split as a shell would.
    fn words(&mut self, key: &str, value: &Value) -> Option<Vec<String>> {
        match value {
            Value::Null => None,
            Value::String(s) => match shlex::split(s) {
                Some(words) => Some(words),
                None => {
                    self.lost(key, "unbalanced quotes");
                    None
                }
            },
            Value::Sequence(items) => {
                let words: Option<Vec<String>> = items.iter().map(scalar).collect();
                if words.is_none() {
                    self.lost(key, "a list of strings");
                }
                words
            }
            _ => {
                self.lost(key, "a string or a list of strings");
                None
            }
        }
    }

    fn ports(&mut self, value: &Value) -> Vec<Port> {
        let Value::Sequence(items) = value else {
            self.lost("ports", "a list");
            return Vec::new();
        };
        let mut ports = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("ports[{i}]");
            let port = match item {
                Value::Mapping(m) => {
                    let target = m.get("target").and_then(port_number);
                    let Some(target) = target else {
                        self.lost(&path, "`target` is a port number");
                        continue;
                    };
                    for k in m.keys().map(key_text) {
                        if !matches!(
                            k.as_str(),
                            "target" | "published" | "protocol" | "host_ip" | "mode" | "name"
                        ) && !k.starts_with("x-")
                        {
                            self.lost(&format!("{path}.{k}"), "no equivalent for a port");
                        }
                    }
                    if m.get("mode").and_then(Value::as_str) == Some("host") {
                        self.lost(
                            &format!("{path}.mode"),
                            "replicas publish no host ports; the ingress does",
                        );
                    }
                    Port {
                        path,
                        target,
                        published: m.get("published").and_then(scalar),
                        host_ip: m.get("host_ip").and_then(Value::as_str).map(str::to_string),
                        udp: m.get("protocol").and_then(Value::as_str) == Some("udp"),
                    }
                }
                other => {
                    let Some(text) = scalar(other) else {
                        self.lost(&path, "a port is a string, a number or a mapping");
                        continue;
                    };
                    match parse_short_port(&text) {
                        Some((host_ip, published, target, udp)) => Port {
                            path,
                            target,
                            published,
                            host_ip,
                            udp,
                        },
                        None => {
                            self.lost(
                                &path,
                                &format!("{text:?}: a port range, or not [IP:][HOST:]CONTAINER[/PROTOCOL]: one port per entry maps"),
                            );
                            continue;
                        }
                    }
                }
            };
            ports.push(port);
        }
        ports
    }

    fn expose(&mut self, value: &Value) -> Vec<u16> {
        let Value::Sequence(items) = value else {
            self.lost("expose", "a list of ports");
            return Vec::new();
        };
        let mut ports = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let text = scalar(item).unwrap_or_default();
            match text.trim_end_matches("/tcp").parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => self.lost(&format!("expose[{i}]"), "one TCP port per entry maps"),
            }
        }
        ports
    }

    /// Chooses the pod's `port` and routes the first published HTTP port
    /// through the ingress; other published TCP ports become `expose`
    /// entries, UDP ports are lost (with why).
    fn ports_and_access(&mut self, ports: &[Port], exposed: &[u16]) {
        let is_tcp = |p: u16| TCP_PORTS.contains(&p);
        let http = ports.iter().find(|p| !p.udp && !is_tcp(p.target));
        let port = http
            .map(|p| p.target)
            .or_else(|| exposed.first().copied())
            .or_else(|| ports.iter().find(|p| !p.udp).map(|p| p.target))
            .or_else(|| image_port(&self.spec.image));
        match port {
            Some(port) => self.spec.port = port,
            None => {
                self.spec.health = Some(HealthCheck::new(CheckKind::None));
                self.notes
                    .push("no port: the pod is ready as soon as its container runs (health: {type: none})".to_string());
            }
        }
        if let Some(p) = port
            && ports.is_empty()
            && exposed.is_empty()
        {
            self.notes.push(format!(
                "port {p}: what the image {} listens on (no ports in the compose file)",
                self.spec.image
            ));
        }
        for e in exposed.iter().filter(|e| Some(**e) != port) {
            self.notes.push(format!(
                "expose: port {e} needs nothing: other pods reach {}:{e} on the instance network",
                self.spec.name
            ));
        }
        for p in ports {
            let routed = http.is_some_and(|h| std::ptr::eq(h, p));
            if p.udp {
                self.lost(&p.path, "UDP ports are not published: the ingress routes HTTP");
            } else if routed {
                let host = format!("{}.{}", self.spec.name, self.options.domain);
                let mut access = Access::default();
                access.host = Some(host.clone());
                self.spec.access = Some(access);
                let published = p.published.as_deref().unwrap_or("a random port");
                self.notes.push(format!(
                    "ports: container port {} (published on {published} by compose) is served by the ingress as http://{host}/",
                    p.target
                ));
                if let Some(ip) = p.host_ip.as_deref().filter(|ip| !matches!(*ip, "0.0.0.0" | "::" | "")) {
                    self.lost(
                        &p.path,
                        &format!(
                            "published on {ip} only; the ingress serves every host of every pod on its own listen address"
                        ),
                    );
                }
            } else {
                self.expose_port(p);
            }
        }
    }

    /// A published port that the ingress does not route as HTTP (a TCP port,
    /// a second port) becomes an `expose` entry: the ingress listens on the
    /// host port Compose published it on, on 127.0.0.1 (Compose publishes on
    /// every interface; we open nothing to other machines unless asked).
    fn expose_port(&mut self, p: &Port) {
        let reach = format!("other pods still reach {}:{}", self.spec.name, p.target);
        let ip = match p.host_ip.as_deref() {
            None | Some("" | "0.0.0.0" | "::") => None,
            Some(ip) => match ip.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.lost(
                        &p.path,
                        &format!("published on {ip}: `expose` listens on an IPv4 address only; {reach}"),
                    );
                    return;
                }
            },
        };
        let host_port = p.published.clone().unwrap_or_else(|| p.target.to_string());
        let listen = format!("{}:{host_port}", ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST));
        if let Err(e) = dubernetes_api::parse_listen(&listen) {
            self.lost(
                &p.path,
                &format!("cannot expose port {} on {listen}: {e}; {reach}", p.target),
            );
            return;
        }
        let published = match &p.published {
            Some(port) => format!("published on {port} by compose"),
            None => "published on a random port by compose".to_string(),
        };
        let widen = if ip.is_none() {
            format!(
                ", on every interface; here on 127.0.0.1 only: write listen: \"0.0.0.0:{host_port}\" to accept other machines"
            )
        } else {
            String::new()
        };
        self.notes.push(format!(
            "ports: container port {} ({published}{widen}) is exposed as TCP on {listen} through the ingress",
            p.target
        ));
        self.spec.expose.push(Expose::new(p.target, listen));
    }

    fn volumes(&mut self, value: &Value) {
        let Value::Sequence(items) = value else {
            self.lost("volumes", "a list");
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("volumes[{i}]");
            let (kind, source, target, read_only) = match item {
                Value::String(s) => {
                    let parts: Vec<&str> = s.split(':').collect();
                    let (source, target, mode) = match parts.as_slice() {
                        [target] => (None, *target, None),
                        [source, target] => (Some(*source), *target, None),
                        [source, target, mode] => (Some(*source), *target, Some(*mode)),
                        _ => {
                            self.lost(&path, &format!("{s:?} is not SOURCE:TARGET[:MODE]"));
                            continue;
                        }
                    };
                    let kind = match source {
                        None => "anonymous",
                        Some(s) if s.starts_with(['/', '.', '~']) || s.contains('/') => "bind",
                        Some(_) => "volume",
                    };
                    let modes: Vec<&str> = mode.map(|m| m.split(',').collect()).unwrap_or_default();
                    if let Some(other) = modes.iter().find(|m| !matches!(**m, "ro" | "rw")) {
                        self.lost(&path, &format!("the mount option {other:?} has no equivalent"));
                    }
                    (
                        kind,
                        source.map(str::to_string),
                        target.to_string(),
                        modes.contains(&"ro"),
                    )
                }
                Value::Mapping(m) => {
                    for k in m.keys().map(key_text) {
                        if !matches!(k.as_str(), "type" | "source" | "target" | "read_only" | "tmpfs")
                            && !k.starts_with("x-")
                        {
                            self.lost(&format!("{path}.{k}"), "no equivalent for a mount");
                        }
                    }
                    let kind = match m.get("type").and_then(Value::as_str) {
                        Some("volume") if m.get("source").is_none() => "anonymous",
                        Some("volume") => "volume",
                        Some("bind") => "bind",
                        Some("tmpfs") => "tmpfs",
                        other => {
                            self.lost(&path, &format!("a mount of type {other:?} has no equivalent"));
                            continue;
                        }
                    };
                    let Some(target) = m.get("target").and_then(Value::as_str) else {
                        self.lost(&path, "`target` is the path in the container");
                        continue;
                    };
                    if kind == "tmpfs" {
                        let size = m.get("tmpfs").and_then(|t| t.get("size")).and_then(scalar);
                        match size.as_deref().map(binary_size) {
                            Some(None) => self.lost(&format!("{path}.tmpfs.size"), "not a size like 64m"),
                            Some(Some(size)) => self.spec.volumes.push(Volume::tmpfs(target, Some(&size))),
                            None => self.spec.volumes.push(Volume::tmpfs(target, None)),
                        }
                        continue;
                    }
                    (
                        kind,
                        m.get("source").and_then(Value::as_str).map(str::to_string),
                        target.to_string(),
                        m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
                    )
                }
                _ => {
                    self.lost(&path, "a mount is a string or a mapping");
                    continue;
                }
            };
            match (kind, source) {
                ("volume", Some(source)) => {
                    if read_only {
                        self.lost(&path, "read-only mounts have no equivalent: the volume is mounted read-write");
                    }
                    match self.top.volumes.get(&source) {
                        None => {
                            self.lost(&path, &format!("the volume {source:?} is not declared under the top-level `volumes`"));
                        }
                        Some(Err(_)) => {} // reported at the top level
                        Some(Ok(())) => {
                            let name = dns_name(&source);
                            if name != source {
                                self.notes.push(format!("volume {source:?} is named {name:?} (a DNS label)"));
                            }
                            self.spec.volumes.push(Volume::named(name, target));
                        }
                    }
                }
                ("bind", Some(source)) => self.lost(
                    &path,
                    &format!(
                        "{source} is a bind mount of a host path: pods mount named volumes and tmpfs only; put the files in the image, in a named volume, or in a generic secret (secret_files)"
                    ),
                ),
                _ => self.lost(
                    &path,
                    &format!(
                        "an anonymous volume at {target}: name it (a top-level volume) so that it maps to a named volume"
                    ),
                ),
            }
        }
    }

    fn tmpfs(&mut self, value: &Value) {
        let items: Vec<&Value> = match value {
            Value::Sequence(items) => items.iter().collect(),
            v => vec![v],
        };
        for (i, item) in items.into_iter().enumerate() {
            let Some(text) = item.as_str() else {
                self.lost(&format!("tmpfs[{i}]"), "a path");
                continue;
            };
            let (path, opts) = text.split_once(':').unwrap_or((text, ""));
            let mut size = None;
            for opt in opts.split(',').filter(|o| !o.is_empty()) {
                match opt.strip_prefix("size=").map(binary_size) {
                    Some(Some(s)) => size = Some(s),
                    _ => self.lost(&format!("tmpfs[{i}]"), &format!("the option {opt:?} has no equivalent")),
                }
            }
            self.spec.volumes.push(Volume::tmpfs(path, size.as_deref()));
        }
    }

    fn healthcheck(&mut self, value: &Value) {
        let Value::Mapping(h) = value else {
            self.lost("healthcheck", "a mapping");
            return;
        };
        if h.get("disable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let test: Option<Vec<String>> = match h.get("test") {
            Some(Value::String(s)) => Some(vec!["CMD-SHELL".to_string(), s.clone()]),
            Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
            Some(_) => None,
            None => {
                self.notes.push(
                    "healthcheck without `test`: the image's own check is not run; readiness is a TCP connect".into(),
                );
                return;
            }
        };
        let Some(test) = test else {
            self.lost("healthcheck.test", "a string or a list of strings");
            return;
        };
        if test.first().map(String::as_str) == Some("NONE") {
            return;
        }
        let words: Vec<String> = match test.first().map(String::as_str) {
            Some("CMD") => test[1..].to_vec(),
            Some("CMD-SHELL") => test.get(1).and_then(|s| shlex::split(s)).unwrap_or_default(),
            _ => Vec::new(),
        };
        let Some((port, path)) = http_probe(&words) else {
            self.lost(
                "healthcheck.test",
                "runs a command in the container, and Dubernetes checks readiness from outside (HTTP GET or TCP connect): the pod keeps its TCP check on its port; write `health: {path: ...}` if the app answers HTTP",
            );
            return;
        };
        let mut check = HealthCheck::new(CheckKind::Http);
        check.path = path;
        if let Some(port) = port.filter(|p| *p != self.spec.port) {
            check.port = Some(port);
        }
        for (k, v) in h {
            let k = key_text(k);
            match k.as_str() {
                "test" | "disable" => {}
                "interval" | "timeout" => match v.as_str().and_then(duration) {
                    Some(d) if k == "interval" => check.interval = d,
                    Some(d) => check.timeout = d,
                    None => self.lost(&format!("healthcheck.{k}"), "not a duration like 10s"),
                },
                "retries" => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => check.unhealthy_after = n,
                    None => self.lost("healthcheck.retries", "a number"),
                },
                "start_period" | "start_interval" => self.notes.push(format!(
                    "healthcheck.{k}: not needed: a replica that has not passed its check yet is only not ready (never restarted for it)"
                )),
                _ if k.starts_with("x-") => {}
                _ => self.lost(&format!("healthcheck.{k}"), "no equivalent for a readiness check"),
            }
        }
        self.spec.health = Some(check);
    }

    fn depends_on(&mut self, value: &Value) {
        let deps: Vec<String> = match value {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
            Value::Mapping(m) => m
                .iter()
                .map(|(k, v)| match v.get("condition").and_then(Value::as_str) {
                    Some(c) => format!("{} ({c})", key_text(k)),
                    None => key_text(k),
                })
                .collect(),
            _ => {
                self.lost("depends_on", "a list or a mapping of services");
                return;
            }
        };
        self.notes.push(format!(
            "depends_on: {} (an order Dubernetes does not keep: pods start together; a pod's name resolves once it has a ready replica, and a replica that exits is restarted with back-off)",
            deps.join(", ")
        ));
    }

    fn links(&mut self, value: &Value) {
        let Value::Sequence(items) = value else {
            self.lost("links", "a list");
            return;
        };
        for (i, item) in items.iter().enumerate() {
            if item.as_str().is_some_and(|l| l.contains(':')) {
                self.lost(
                    &format!("links[{i}]"),
                    "a link alias has no equivalent: use the pod's name",
                );
            }
        }
    }

    fn secrets(&mut self, value: &Value) {
        let Value::Sequence(items) = value else {
            self.lost("secrets", "a list");
            return;
        };
        let secret = format!("{}-secrets", self.spec.name);
        let mut keys: Vec<(String, String)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("secrets[{i}]");
            let (name, target) = match item {
                Value::String(s) => (s.clone(), s.clone()),
                Value::Mapping(m) => {
                    let Some(name) = m.get("source").and_then(Value::as_str) else {
                        self.lost(&path, "`source` names the secret");
                        continue;
                    };
                    for k in m.keys().map(key_text) {
                        if !matches!(k.as_str(), "source" | "target") {
                            self.lost(&format!("{path}.{k}"), "secret files are 0444, owned by root");
                        }
                    }
                    let target = m.get("target").and_then(Value::as_str).unwrap_or(name);
                    (
                        name.to_string(),
                        target.strip_prefix("/run/secrets/").unwrap_or(target).to_string(),
                    )
                }
                _ => {
                    self.lost(&path, "a secret name or a mapping");
                    continue;
                }
            };
            if !target.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || target.is_empty() {
                self.lost(
                    &path,
                    &format!("the target {target:?} is not a file name in /run/secrets (letters, digits, -, _, .)"),
                );
                continue;
            }
            let how = match self.top.secrets.get(&name) {
                Some(SecretSource::File(file)) => format!("--from-file={target}={file}"),
                Some(SecretSource::Environment(var)) => format!("--from-literal={target}=\"${var}\""),
                Some(SecretSource::Unusable) => continue,
                None => {
                    self.lost(
                        &path,
                        &format!("the secret {name:?} is not declared under the top-level `secrets`"),
                    );
                    continue;
                }
            };
            keys.push((target, how));
        }
        if keys.is_empty() {
            return;
        }
        self.spec.secret_files.push(SecretFiles {
            secret: secret.clone(),
            path: "/run/secrets".into(),
        });
        let flags: Vec<&str> = keys.iter().map(|(_, how)| how.as_str()).collect();
        self.notes.push(format!(
            "secrets: create them first: dubectl create secret generic {secret} {}",
            flags.join(" ")
        ));
    }

    fn deploy(&mut self, value: &Value) {
        let Value::Mapping(d) = value else {
            self.lost("deploy", "a mapping");
            return;
        };
        for (k, v) in d {
            let k = key_text(k);
            let path = format!("deploy.{k}");
            match k.as_str() {
                "replicas" => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => self.spec.replicas = n,
                    None => self.lost(&path, "a number"),
                },
                "mode" if v.as_str() == Some("replicated") => {}
                "mode" => self.lost(&path, "only `replicated` maps (a pod has `replicas`)"),
                "resources" => {
                    let Value::Mapping(r) = v else {
                        self.lost(&path, "a mapping");
                        continue;
                    };
                    for (rk, rv) in r {
                        let rk = key_text(rk);
                        if rk != "limits" {
                            self.lost(&format!("{path}.{rk}"), "only limits map (the engine reserves nothing)");
                            continue;
                        }
                        let Value::Mapping(limits) = rv else { continue };
                        for (lk, lv) in limits {
                            let lk = key_text(lk);
                            let lpath = format!("{path}.limits.{lk}");
                            match lk.as_str() {
                                "memory" => self.memory(&lpath, lv),
                                "cpus" => self.cpus(&lpath, lv),
                                "pids" => match lv.as_u64().and_then(|n| u32::try_from(n).ok()) {
                                    Some(n) => self.resources().pids = Some(n),
                                    None => self.lost(&lpath, "a number"),
                                },
                                _ => self.lost(&lpath, "no equivalent limit"),
                            }
                        }
                    }
                }
                "update_config" => {
                    let Value::Mapping(u) = v else { continue };
                    let mut update = self.spec.update.clone().unwrap_or_default();
                    for (uk, uv) in u {
                        let uk = key_text(uk);
                        match (uk.as_str(), uv.as_str()) {
                            ("order", Some("start-first")) => update.strategy = Strategy::Rolling,
                            ("order", Some("stop-first")) => update.strategy = Strategy::Recreate,
                            ("parallelism", _) => match uv.as_u64().and_then(|n| u32::try_from(n).ok()) {
                                Some(n) if n > 0 => update.max_surge = n,
                                _ => self.lost(&format!("{path}.parallelism"), "a number above 0"),
                            },
                            _ => self.lost(
                                &format!("{path}.{uk}"),
                                "no equivalent: a rollout waits for readiness and rolls back on its own",
                            ),
                        }
                    }
                    self.spec.update = Some(update);
                }
                "placement" => self.placement(&path, v),
                "restart_policy" => {
                    if v.get("condition").and_then(Value::as_str).unwrap_or("any") != "any" {
                        self.lost(&path, "a pod's replicas are always replaced when they exit");
                    }
                }
                _ => self.lost(&path, "no equivalent in a pod spec"),
            }
        }
    }

    /// `deploy.placement`: constraints as they are (Swarm's syntax is ours),
    /// one `spread` preference; `max_replicas_per_node` has no equivalent.
    fn placement(&mut self, path: &str, value: &Value) {
        let Value::Mapping(p) = value else {
            self.lost(path, "a mapping");
            return;
        };
        let mut placement = dubernetes_api::Placement::default();
        for (k, v) in p {
            let k = key_text(k);
            let at = format!("{path}.{k}");
            match (k.as_str(), v) {
                ("constraints", Value::Sequence(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        match item.as_str().map(dubernetes_api::Constraint::parse) {
                            Some(Ok(c)) => placement.constraints.push(c.to_string()),
                            Some(Err(why)) => self.lost(&format!("{at}[{i}]"), &why),
                            None => self.lost(&format!("{at}[{i}]"), "a string like node.role==worker"),
                        }
                    }
                }
                ("preferences", Value::Sequence(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let spread = item.get("spread").and_then(Value::as_str);
                        match spread.map(dubernetes_api::LabelKey::parse_spread) {
                            Some(Ok(key)) if placement.spread.is_none() => placement.spread = Some(key.to_string()),
                            Some(Ok(_)) => self.lost(&format!("{at}[{i}]"), "a pod spreads over one label"),
                            Some(Err(why)) => self.lost(&format!("{at}[{i}]"), &why),
                            None => self.lost(&format!("{at}[{i}]"), "only `spread: node.labels.NAME` maps"),
                        }
                    }
                }
                _ => self.lost(&at, "no equivalent (placement has constraints and one spread)"),
            }
        }
        if placement != dubernetes_api::Placement::default() {
            self.spec.placement = Some(placement);
        }
    }

    fn memory(&mut self, path: &str, value: &Value) {
        match scalar(value).as_deref().and_then(binary_size) {
            Some(size) => self.resources().memory = Some(size),
            None => self
                .out
                .unmapped
                .push(unmapped(&format!("{}.{path}", self.path), "not a size like 512m")),
        }
    }

    fn cpus(&mut self, path: &str, value: &Value) {
        let cpus = match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        match cpus {
            Some(c) => self.resources().cpus = Some(c),
            None => self
                .out
                .unmapped
                .push(unmapped(&format!("{}.{path}", self.path), "a number of cores")),
        }
    }

    fn logging(&mut self, value: &Value) {
        let driver = value.get("driver").and_then(Value::as_str).unwrap_or("json-file");
        if driver != "json-file" {
            self.lost(
                "logging.driver",
                "replicas log with the json-file driver (so that `dubectl logs` works)",
            );
            return;
        }
        let mut logging = Logging::default();
        if let Some(Value::Mapping(options)) = value.get("options") {
            for (k, v) in options {
                let k = key_text(k);
                match (k.as_str(), scalar(v)) {
                    // Docker reads json-file's max-size in powers of 1000, as the spec's k/m/g.
                    ("max-size", Some(size)) => logging.max_size = Some(size),
                    ("max-file", Some(n)) => match n.parse() {
                        Ok(n) => logging.max_files = Some(n),
                        Err(_) => self.lost("logging.options.max-file", "a number"),
                    },
                    _ => self.lost(&format!("logging.options.{k}"), "no equivalent"),
                }
            }
        }
        if logging != Logging::default() {
            self.spec.logging = Some(logging);
        }
    }

    fn security_opt(&mut self, value: &Value) {
        let Value::Sequence(items) = value else {
            self.lost("security_opt", "a list");
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let set = match item.as_str() {
                Some("no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true") => true,
                Some("no-new-privileges:false" | "no-new-privileges=false") => false,
                _ => {
                    self.lost(
                        &format!("security_opt[{i}]"),
                        "only no-new-privileges maps (security.no_new_privileges)",
                    );
                    continue;
                }
            };
            self.spec.security = Some(Security::default());
            if let Some(s) = &mut self.spec.security {
                s.no_new_privileges = Some(set);
            }
        }
    }

    fn networks(&mut self, value: &Value) {
        let names: Vec<String> = match value {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
            Value::Mapping(m) => m.keys().map(key_text).collect(),
            _ => Vec::new(),
        };
        if names.iter().all(|n| n == "default") {
            return;
        }
        self.lost(
            "networks",
            "every pod of an instance joins one network: the separation between compose networks, and their aliases, is lost",
        );
    }
}

/// A string, number or boolean as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn port_number(value: &Value) -> Option<u16> {
    scalar(value)?.parse().ok().filter(|p| *p > 0)
}

/// `[IP:][HOST:]CONTAINER[/PROTOCOL]`, one port (no range): (IP, host port, container port, udp).
fn parse_short_port(text: &str) -> Option<(Option<String>, Option<String>, u16, bool)> {
    let (spec, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let udp = match protocol {
        "tcp" => false,
        "udp" => true,
        _ => return None,
    };
    // An IPv6 host IP is in brackets: [::1]:8080:80.
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(r) => {
            let (ip, rest) = r.split_once("]:")?;
            (Some(ip.to_string()), rest)
        }
        None => (None, spec),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, published, target) = match (ip, parts.as_slice()) {
        (None, [target]) => (None, None, *target),
        (ip, [published, target]) => (ip, Some(*published), *target),
        (None, [ip, published, target]) => (Some(ip.to_string()), Some(*published), *target),
        _ => return None,
    };
    let target: u16 = target.parse().ok().filter(|p| *p > 0)?;
    let published = published.filter(|p| !p.is_empty());
    if published.is_some_and(|p| p.parse::<u16>().is_err()) {
        return None;
    }
    Some((ip, published.map(str::to_string), target, udp))
}

/// The port well-known images listen on (`postgres:16` → 5432).
fn image_port(image: &str) -> Option<u16> {
    let repo = image.split(['@']).next().unwrap_or(image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let name = last.split(':').next().unwrap_or(last);
    IMAGE_PORTS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// A Docker size (powers of 1024: `64m`, `1g`, `512k`, `1gb`, or bytes) in
/// the spec's units (`64Mi`).
fn binary_size(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let unit = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        "t" => "Ti",
        _ => return None,
    };
    Some(format!("{n}{unit}"))
}

/// A compose duration (`1m30s`, `500ms`, `10s`).
fn duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// An HTTP probe of the container's own address in a health check command
/// (`curl -f http://localhost:8080/health`, `wget -qO- http://127.0.0.1/ping`):
/// its port (if any) and path.
fn http_probe(words: &[String]) -> Option<(Option<u16>, String)> {
    let program = words.first()?;
    let program = program.rsplit('/').next().unwrap_or(program);
    if !matches!(program, "curl" | "wget") {
        return None;
    }
    // Only a command that is just the probe: `curl ... || exit 1` is fine, a pipeline into a test is not.
    let url = words.iter().skip(1).find_map(|w| w.strip_prefix("http://"))?;
    let (authority, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
        None => (authority, None),
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "[::1]") {
        return None;
    }
    let port = port.or(Some(80));
    Some((port, path.to_string()))
}

#[cfg(test)]
mod tests;

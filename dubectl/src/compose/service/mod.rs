//! One service of a compose file converted into a pod: the keys of the
//! service, each mapped to a field of the pod, kept as a note, or lost with why.

mod deploy;
mod health;
mod links;
mod ports;
mod volumes;

#[cfg(test)]
pub(super) use self::{health::http_probe, ports::parse_short_port};

use dubernetes_api::{EnvValue, Logging, PodSpec, PullPolicy, Resources, Security};
use serde_yaml_ng::{Mapping, Value};

use super::interpolate::parse_env_file;
use super::top::Top;
use super::values::{duration, key_text, scalar};
use super::{Conversion, ConvertedPod, Options, Source, unmapped};

/// One service being converted.
pub(super) struct Service<'a> {
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
    pub(super) fn new(
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

    pub(super) fn convert(mut self) -> Option<ConvertedPod> {
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
}

//! A service's `volumes`, `tmpfs` and `secrets`: named volumes, tmpfs
//! mounts, and secret files from a generic secret.

use dubernetes_api::{SecretFiles, Volume};
use serde_yaml_ng::Value;

use super::Service;
use crate::compose::dns_name;
use crate::compose::top::SecretSource;
use crate::compose::values::{binary_size, key_text, scalar};

impl Service<'_> {
    pub(super) fn volumes(&mut self, value: &Value) {
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

    pub(super) fn tmpfs(&mut self, value: &Value) {
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

    pub(super) fn secrets(&mut self, value: &Value) {
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
}

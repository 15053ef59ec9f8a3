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
//! come in through [`Source`], so the unit tests (`tests.rs`) run on fixed inputs.

mod interpolate;
mod service;
mod top;
mod values;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use dubernetes_api::{MAX_SPEC_BYTES, PodSpec};
use serde_yaml_ng::Value;

use self::interpolate::{interpolate_tree, read_dotenv};
use self::service::Service;
use self::top::Top;

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

#[cfg(test)]
mod tests;

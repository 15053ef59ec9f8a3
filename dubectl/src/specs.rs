//! Pod specs read from what `apply`, `diff` and `delete -f` name: YAML files, directories
//! (recursively, *.yaml/*.yml, sorted), `-` for stdin, and compose files (converted).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use dubernetes_api::PodSpec;

use crate::{compose, escape, style};

/// Turns pods as `get -o json|yaml` prints them (objects with `spec` and
/// `status`, alone or in a list) back into plain specs, so output round-trips
/// through `apply -f -`; anything else is returned unchanged.
fn unwrap_pod_objects(text: &str) -> anyhow::Result<String> {
    use serde::Deserialize as _;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        match serde_yaml_ng::Value::deserialize(doc) {
            Ok(v) => docs.push(v),
            // Not even YAML: let the spec parser report it with its line and column.
            Err(_) => return Ok(text.to_string()),
        }
    }
    fn is_pod(v: &serde_yaml_ng::Value) -> bool {
        v.get("spec").is_some() && v.get("status").is_some()
    }
    let any = docs
        .iter()
        .any(|d| is_pod(d) || d.as_sequence().is_some_and(|s| s.iter().any(is_pod)));
    if !any {
        return Ok(text.to_string());
    }
    let mut specs = Vec::new();
    for doc in docs {
        match doc {
            serde_yaml_ng::Value::Sequence(items) => {
                specs.extend(
                    items
                        .into_iter()
                        .map(|i| if is_pod(&i) { i["spec"].clone() } else { i }),
                );
            }
            d if is_pod(&d) => specs.push(d["spec"].clone()),
            serde_yaml_ng::Value::Null => {}
            d => specs.push(d),
        }
    }
    let mut out = String::new();
    for spec in specs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&spec)?);
    }
    Ok(out)
}
/// Warnings and unmapped keys of a conversion, on stderr.
pub(crate) fn report_compose(file: &str, conversion: &compose::Conversion) {
    let on = style::enabled(true);
    for warning in &conversion.warnings {
        eprintln!(
            "{} {}: {}",
            style::paint(on, 33, "warning:"),
            escape::line(file),
            escape::line(warning)
        );
    }
    for lost in &conversion.unmapped {
        eprintln!(
            "{} {}: {}: {}",
            style::paint(on, 33, "unmapped:"),
            escape::line(file),
            escape::line(&lost.path),
            escape::line(&lost.reason)
        );
    }
}

/// The pods of a compose file for apply, diff and delete; `refuse_unmapped`
/// (apply) makes any key that does not map an error, with the list.
fn compose_specs(
    text: &str,
    dir: PathBuf,
    name: &str,
    options: &compose::Options,
    refuse_unmapped: bool,
) -> anyhow::Result<Vec<PodSpec>> {
    let conversion =
        compose::convert(text, &compose::Source::system(dir), options).with_context(|| escape::line(name))?;
    report_compose(name, &conversion);
    if refuse_unmapped && !conversion.unmapped.is_empty() {
        bail!(
            "{}: not applied: {} compose key(s) do not map (listed above); `dubectl convert -f {}` prints the pods to edit and apply",
            escape::line(name),
            conversion.unmapped.len(),
            escape::line(name)
        );
    }
    Ok(conversion.pods.into_iter().map(|p| p.spec).collect())
}

/// Reads every spec from files, directories (recursively, *.yaml/*.yml, sorted) and `-`.
pub(crate) fn read_specs(sources: &[String]) -> anyhow::Result<Vec<PodSpec>> {
    read_specs_with(sources, &compose::Options::default(), false)
}

/// [`read_specs`], with the options of compose files; a compose file (a
/// top-level `services`) is converted, and refused with a key that does not
/// map when `refuse_unmapped`.
pub(crate) fn read_specs_with(
    sources: &[String],
    options: &compose::Options,
    refuse_unmapped: bool,
) -> anyhow::Result<Vec<PodSpec>> {
    let mut specs: Vec<PodSpec> = Vec::new();
    for source in sources {
        let mut files = Vec::new();
        if source == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            if compose::is_compose(&text) {
                specs.extend(compose_specs(
                    &text,
                    PathBuf::from("."),
                    "stdin",
                    options,
                    refuse_unmapped,
                )?);
                continue;
            }
            let text = unwrap_pod_objects(&text)?;
            specs.extend(dubernetes_api::parse_specs(&text).map_err(|e| anyhow::anyhow!("stdin: {e}"))?);
            continue;
        }
        let path = PathBuf::from(source);
        if path.is_dir() {
            collect_yaml(&path, &mut files)?;
        } else {
            files.push(path);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = if compose::is_compose(&text) {
                let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                };
                compose_specs(&text, dir, &file.display().to_string(), options, refuse_unmapped)?
            } else {
                let text = unwrap_pod_objects(&text)?;
                dubernetes_api::parse_specs(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            };
            for spec in parsed {
                if specs.iter().any(|s| s.name == spec.name) {
                    bail!("{}: pod {:?} is defined more than once", file.display(), spec.name);
                }
                specs.push(spec);
            }
        }
    }
    Ok(specs)
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(path);
        }
    }
    Ok(())
}

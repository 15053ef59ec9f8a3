//! Variables in a compose file: `.env` beside it, `env_file`s, and the
//! `${VAR}` forms, replaced in every string value as Compose does.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_yaml_ng::Value;

use super::values::key_text;
use super::{Conversion, Source};

/// `.env` beside the compose file: variables for interpolation (the
/// environment wins), as Compose reads it.
pub(super) fn read_dotenv(source: &Source<'_>, out: &mut Conversion) -> anyhow::Result<BTreeMap<String, String>> {
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
pub(super) fn parse_env_file(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
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
pub(super) fn interpolate_tree(
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

pub(super) fn interpolate(
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

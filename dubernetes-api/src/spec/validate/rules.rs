//! The rules of single values, each returning what is wrong: names (DNS
//! labels, volume and secret keys, env names), hosts and host patterns,
//! paths (mount, route, HTTP, secret directory) and memory sizes.

use std::sync::LazyLock;

use regex::Regex;

use crate::spec::MAX_MOUNT_PATH_BYTES;

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
pub(super) fn check_mount_path(path: &str) -> Result<(), String> {
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
pub(super) fn check_host_pattern(host: &str) -> Result<(), String> {
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
pub(super) fn check_route_path(path: &str) -> Result<(), String> {
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
pub(super) fn check_http_path(path: &str) -> Result<(), String> {
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
pub(super) fn check_secret_dir(path: &str) -> Result<(), String> {
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

pub(super) fn check_env_key(key: &str) -> Result<(), String> {
    static KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));
    if KEY.is_match(key) {
        Ok(())
    } else {
        Err("an environment variable name uses letters, digits and '_', and does not start with a digit".into())
    }
}

//! Compose values read as text: keys, scalars, port numbers, sizes, durations.

use std::time::Duration;

use serde_yaml_ng::Value;

pub(super) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// A string, number or boolean as text.
pub(super) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn port_number(value: &Value) -> Option<u16> {
    scalar(value)?.parse().ok().filter(|p| *p > 0)
}

/// A Docker size (powers of 1024: `64m`, `1g`, `512k`, `1gb`, or bytes) in
/// the spec's units (`64Mi`).
pub(super) fn binary_size(text: &str) -> Option<String> {
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
pub(super) fn duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

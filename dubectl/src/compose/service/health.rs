//! A service's `healthcheck` as the pod's readiness check: an HTTP probe
//! of its own address becomes an HTTP check.

use dubernetes_api::{CheckKind, HealthCheck};
use serde_yaml_ng::Value;

use super::Service;
use crate::compose::values::{duration, key_text, scalar};

impl Service<'_> {
    pub(super) fn healthcheck(&mut self, value: &Value) {
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
}

/// An HTTP probe of the container's own address in a health check command
/// (`curl -f http://localhost:8080/health`, `wget -qO- http://127.0.0.1/ping`):
/// its port (if any) and path.
pub(in crate::compose) fn http_probe(words: &[String]) -> Option<(Option<u16>, String)> {
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

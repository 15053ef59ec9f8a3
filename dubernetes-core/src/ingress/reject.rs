//! When `nginx -t` rejects a config: finding the routes that cause it (the
//! line nginx names, else bisection, within a budget), and reporting them
//! against their pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::render::{Route, render};
use super::{CONF_DIR, CONF_FILE, Ingress, lock};
use crate::error::{Error, Result};

/// Most `nginx -t` runs spent finding the routes of a rejected config (the
/// first check of the whole config not included). One culprit among `n`
/// routes takes 1–3 checks when nginx names a line of ours, about
/// `2·log2(n)` otherwise. Routes still unresolved when the budget runs out
/// are left out too, and reported as such.
pub(crate) const MAX_ISOLATION_CHECKS: usize = 24;

/// Of those, most spent following the lines nginx names before bisecting.
const MAX_BY_LINE: usize = 8;

/// A pod whose route nginx rejected, with nginx's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RejectionChange {
    /// Newly rejected, or rejected for another reason than before.
    Rejected(String),
    /// No longer rejected (applied, or the pod lost its route).
    Cleared,
}

#[derive(Debug, Default)]
pub(super) struct Rejections {
    pub(super) now: Arc<BTreeMap<String, String>>,
    pub(super) reported: BTreeMap<String, String>,
}

/// The result of one `nginx -t`.
pub(super) enum Check {
    Passed,
    Rejected(String),
}

impl Ingress {
    /// Writes nothing; runs `nginx -t` on what is on disk.
    pub(super) async fn check(&self, id: &str) -> Result<Check> {
        let (code, output) = self.runtime.exec(id, &["nginx", "-t", "-q"]).await?;
        Ok(if code == 0 {
            Check::Passed
        } else {
            Check::Rejected(nginx_error(&output))
        })
    }

    pub(super) async fn check_routes(&self, id: &str, routes: &[Route]) -> Result<(Check, String)> {
        let (text, _) = render(&self.instance, routes)?;
        self.runtime
            .write_file(id, CONF_DIR, CONF_FILE, text.as_bytes())
            .await?;
        Ok((self.check(id).await?, text))
    }

    /// Finds the routes that make nginx reject the config `text` of `routes`
    /// (rejected with `output`). Returns the routes to apply (a set nginx
    /// accepted) and the rejected pods with nginx's message. First the line
    /// nginx names, if it is inside one route's block; then bisection of the
    /// remaining routes. At most [`MAX_ISOLATION_CHECKS`] checks.
    pub(super) async fn isolate(
        &self,
        id: &str,
        text: &str,
        routes: &[Route],
        output: String,
    ) -> Result<(Vec<Route>, BTreeMap<String, String>)> {
        let mut budget = MAX_ISOLATION_CHECKS;
        let mut rejected: BTreeMap<String, String> = BTreeMap::new();
        // 1. The line nginx names, while it points into a route.
        let mut text = text.to_string();
        let mut output = output;
        let mut remaining: Vec<Route> = routes.to_vec();
        let mut by_line = 0;
        while budget > 0 && by_line < MAX_BY_LINE {
            by_line += 1;
            let Some(pod) = error_line(&output).and_then(|line| route_at_line(&text, line)) else {
                break;
            };
            if rejected.contains_key(&pod) {
                break;
            }
            rejected.insert(pod.clone(), output.clone());
            remaining.retain(|r| r.pod != pod);
            budget -= 1;
            let (check, tried) = self.check_routes(id, &remaining).await?;
            match check {
                Check::Passed => {
                    tracing::info!(checks = MAX_ISOLATION_CHECKS - budget, rejected = ?rejected.keys().collect::<Vec<_>>(), "isolated the routes nginx rejects from the line it names");
                    return Ok((remaining, rejected));
                }
                Check::Rejected(next) => {
                    output = next;
                    text = tried;
                }
            }
        }
        // 2. Is it any route at all?
        if budget > 0 {
            budget -= 1;
            if let (Check::Rejected(output), _) = self.check_routes(id, &[]).await? {
                return Err(Error::Ingress(format!(
                    "nginx -t rejects the config even without routes, kept the last good one: {output}"
                )));
            }
        }
        // 3. Bisection: a group that passes with what is accepted so far joins
        // it; a rejected single route is a culprit; a rejected group is split.
        let mut accepted: Vec<usize> = Vec::new();
        let mut groups: Vec<Vec<usize>> = vec![(0..remaining.len()).collect()];
        while let Some(group) = groups.pop() {
            if group.is_empty() {
                continue;
            }
            if budget == 0 {
                for i in group {
                    rejected.insert(
                        remaining[i].pod.clone(),
                        format!(
                            "nginx rejected a config with this route and others, and the culprit was not found within {MAX_ISOLATION_CHECKS} checks: {output}"
                        ),
                    );
                }
                continue;
            }
            budget -= 1;
            let mut trial: Vec<usize> = accepted.iter().chain(&group).copied().collect();
            trial.sort_unstable();
            let trial_routes: Vec<Route> = trial.iter().map(|&i| remaining[i].clone()).collect();
            match self.check_routes(id, &trial_routes).await?.0 {
                Check::Passed => accepted = trial,
                Check::Rejected(message) if group.len() == 1 => {
                    rejected.insert(remaining[group[0]].pod.clone(), message);
                }
                Check::Rejected(_) => {
                    let (a, b) = group.split_at(group.len() / 2);
                    // `a` is tried first (the stack pops the last one pushed).
                    groups.push(b.to_vec());
                    groups.push(a.to_vec());
                }
            }
        }
        accepted.sort_unstable();
        tracing::info!(checks = MAX_ISOLATION_CHECKS - budget, rejected = ?rejected.keys().collect::<Vec<_>>(), "isolated the routes nginx rejects by bisection");
        Ok((accepted.iter().map(|&i| remaining[i].clone()).collect(), rejected))
    }

    /// Pods whose route the live config leaves out because nginx rejected it,
    /// with nginx's message. Never waits for a sync.
    pub(crate) fn rejections(&self) -> Arc<BTreeMap<String, String>> {
        Arc::clone(&lock(&self.rejected).now)
    }

    /// What changed in [`Ingress::rejections`] since the last call, by pod.
    pub(crate) fn take_rejection_changes(&self) -> Vec<(String, RejectionChange)> {
        let mut r = lock(&self.rejected);
        let now = Arc::clone(&r.now);
        let mut changes = Vec::new();
        for (pod, message) in now.iter() {
            if r.reported.get(pod) != Some(message) {
                changes.push((pod.clone(), RejectionChange::Rejected(message.clone())));
            }
        }
        for pod in r.reported.keys() {
            if !now.contains_key(pod) {
                changes.push((pod.clone(), RejectionChange::Cleared));
            }
        }
        r.reported = (*now).clone();
        changes
    }
}

/// nginx's complaint without its boilerplate: the `[emerg]` lines, without
/// the timestamp and process id an `error_log` setting may put before them
/// (so the same problem reads the same every time).
fn nginx_error(output: &str) -> String {
    let lines: Vec<String> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with("test failed"))
        .map(|l| match l.find(" [") {
            // "2026/12/01 08:02:59 [emerg] 536#536: text" -> "[emerg] text"
            Some(at) if !l.starts_with("nginx:") => {
                let rest = &l[at + 1..];
                match rest.split_once("] ") {
                    Some((level, text)) => {
                        let text = match text.split_once(": ") {
                            Some((pid, text)) if pid.chars().all(|c| c.is_ascii_digit() || c == '#') => text,
                            _ => text,
                        };
                        format!("{level}] {text}")
                    }
                    None => rest.to_string(),
                }
            }
            _ => l.trim_start_matches("nginx: ").to_string(),
        })
        .collect();
    let text = lines.join("; ");
    if text.is_empty() {
        output.trim().to_string()
    } else {
        text
    }
}

/// The line of our config file an nginx error names (`... in /etc/nginx/conf.d/default.conf:12`).
fn error_line(output: &str) -> Option<usize> {
    let marker = format!("{CONF_DIR}/{CONF_FILE}:");
    let at = output.find(&marker)? + marker.len();
    let digits: String = output[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The pod whose block holds line `line` (1-based) of a rendered config: the
/// template marks every route's blocks with `# route <pod>` and the default
/// server with `# default server`.
fn route_at_line(text: &str, line: usize) -> Option<String> {
    let mut current = None;
    for (n, l) in text.lines().enumerate() {
        // `# route web`, `# route web, HTTPS (...)`, and indented before a location.
        if let Some(pod) = l.trim_start().strip_prefix("# route ") {
            current = pod.split(',').next().map(|p| p.trim().to_string());
        } else if l.starts_with("# default server") {
            current = None;
        }
        if n + 1 == line {
            return current;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::render::Route;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_error_line_maps_to_its_route() {
        let routes = [
            Route::new("web", "web.local", vec![(ip("172.18.0.2"), 80)]),
            Route::new("api", "api.local", vec![]),
        ];
        let (conf, _) = render("t", &routes).expect("render");
        let line_of = |needle: &str| conf.lines().position(|l| l.contains(needle)).expect(needle) + 1;
        assert_eq!(route_at_line(&conf, line_of("set $dub_pod web;")), Some("web".into()));
        assert_eq!(
            route_at_line(&conf, line_of("server_name web.local")),
            Some("web".into())
        );
        assert_eq!(
            route_at_line(&conf, line_of("server_name api.local")),
            Some("api".into())
        );
        assert_eq!(route_at_line(&conf, line_of("set $dub_pod api;")), Some("api".into()));
        assert_eq!(route_at_line(&conf, line_of("server_name _;")), None);
        // Pods sharing a host: each location is its pod's; HTTPS blocks too.
        let mut shop = Route::new("shop", "shop.local", vec![]);
        shop.tls = Some(crate::ingress::RouteTls {
            fingerprint: "f00".into(),
            port_suffix: String::new(),
        });
        let mut api = Route::new("api", "shop.local", vec![]);
        api.path = "/api".into();
        let (conf, _) = render("t", &[shop, api]).expect("render");
        let line_of = |needle: &str| conf.lines().position(|l| l.contains(needle)).expect(needle) + 1;
        assert_eq!(route_at_line(&conf, line_of("set $dub_pod api;")), Some("api".into()));
        assert_eq!(route_at_line(&conf, line_of("set $dub_pod shop;")), Some("shop".into()));
        assert_eq!(route_at_line(&conf, line_of("ssl_certificate ")), Some("shop".into()));
        assert_eq!(route_at_line(&conf, line_of("server_names_hash_bucket_size")), None);
        let output = "nginx: [emerg] duplicate upstream \"pod_web\" in /etc/nginx/conf.d/default.conf:12\nnginx: configuration file /etc/nginx/nginx.conf test failed\n";
        assert_eq!(error_line(output), Some(12));
        assert_eq!(
            nginx_error(output),
            "[emerg] duplicate upstream \"pod_web\" in /etc/nginx/conf.d/default.conf:12"
        );
        assert_eq!(
            nginx_error(
                "2026/12/01 08:02:59 [emerg] 536#536: duplicate upstream \"pod_bad\" in /etc/nginx/conf.d/default.conf:12\nnginx: configuration file /etc/nginx/nginx.conf test failed"
            ),
            "[emerg] duplicate upstream \"pod_bad\" in /etc/nginx/conf.d/default.conf:12"
        );
        assert_eq!(error_line("nginx: [emerg] could not build server_names_hash"), None);
        assert_eq!(error_line("in /etc/nginx/conf.d/other.conf:3"), None);
    }
}

//! A service's `deploy` (replicas, resources, placement, update order) and
//! the memory and CPU limits also written outside it.

use dubernetes_api::Strategy;
use serde_yaml_ng::Value;

use super::Service;
use crate::compose::unmapped;
use crate::compose::values::{binary_size, key_text, scalar};

impl Service<'_> {
    pub(super) fn deploy(&mut self, value: &Value) {
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

    pub(super) fn memory(&mut self, path: &str, value: &Value) {
        match scalar(value).as_deref().and_then(binary_size) {
            Some(size) => self.resources().memory = Some(size),
            None => self
                .out
                .unmapped
                .push(unmapped(&format!("{}.{path}", self.path), "not a size like 512m")),
        }
    }

    pub(super) fn cpus(&mut self, path: &str, value: &Value) {
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
}

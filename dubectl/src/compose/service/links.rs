//! How a service reaches others: `depends_on` (a note), `links` and
//! `networks` (one network per instance).

use serde_yaml_ng::Value;

use super::Service;
use crate::compose::values::{key_text, scalar};

impl Service<'_> {
    pub(super) fn depends_on(&mut self, value: &Value) {
        let deps: Vec<String> = match value {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
            Value::Mapping(m) => m
                .iter()
                .map(|(k, v)| match v.get("condition").and_then(Value::as_str) {
                    Some(c) => format!("{} ({c})", key_text(k)),
                    None => key_text(k),
                })
                .collect(),
            _ => {
                self.lost("depends_on", "a list or a mapping of services");
                return;
            }
        };
        self.notes.push(format!(
            "depends_on: {} (an order Dubernetes does not keep: pods start together; a pod's name resolves once it has a ready replica, and a replica that exits is restarted with back-off)",
            deps.join(", ")
        ));
    }

    pub(super) fn links(&mut self, value: &Value) {
        let Value::Sequence(items) = value else {
            self.lost("links", "a list");
            return;
        };
        for (i, item) in items.iter().enumerate() {
            if item.as_str().is_some_and(|l| l.contains(':')) {
                self.lost(
                    &format!("links[{i}]"),
                    "a link alias has no equivalent: use the pod's name",
                );
            }
        }
    }

    pub(super) fn networks(&mut self, value: &Value) {
        let names: Vec<String> = match value {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
            Value::Mapping(m) => m.keys().map(key_text).collect(),
            _ => Vec::new(),
        };
        if names.iter().all(|n| n == "default") {
            return;
        }
        self.lost(
            "networks",
            "every pod of an instance joins one network: the separation between compose networks, and their aliases, is lost",
        );
    }
}

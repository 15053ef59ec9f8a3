//! `placement`: on which nodes a pod's replicas may run (`constraints`) and
//! how they are spread over a node label (`spread`), in Docker Swarm's own
//! syntax. Each expression is parsed here, strictly, so what reaches Swarm
//! is only a key Swarm knows, `==` or `!=`, and a plain value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validate::FieldError;

/// Most entries of `placement.constraints`.
pub const MAX_CONSTRAINTS: usize = 16;

/// Longest label key or value in a constraint or `spread`, in bytes.
pub const MAX_PLACEMENT_TOKEN: usize = 128;

/// Where the replicas of a pod may run: `{constraints: ["node.labels.disk==ssd",
/// "node.role!=manager"], spread: node.labels.zone}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Placement {
    /// Every one must hold on a node for a replica to run there: `KEY==VALUE`
    /// or `KEY!=VALUE`, KEY one of `node.id`, `node.hostname`, `node.role`
    /// (`manager` or `worker`), `node.platform.os`, `node.platform.arch`,
    /// `node.labels.NAME`, `engine.labels.NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Spreads the replicas evenly over the values of this label of the
    /// nodes: `node.labels.NAME` or `engine.labels.NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
}

impl Placement {
    /// A placement with these constraints and no spread.
    pub fn constraints<I: IntoIterator<Item = S>, S: Into<String>>(constraints: I) -> Placement {
        Placement {
            constraints: constraints.into_iter().map(Into::into).collect(),
            spread: None,
        }
    }

    /// Sets `spread`.
    pub fn with_spread(mut self, spread: impl Into<String>) -> Placement {
        self.spread = Some(spread.into());
        self
    }

    /// Every problem of the block, each naming its field.
    pub(crate) fn problems(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        if self.constraints.len() > MAX_CONSTRAINTS {
            problems.push(FieldError::new(
                "placement.constraints",
                format!(
                    "has {} entries; at most {MAX_CONSTRAINTS} are allowed",
                    self.constraints.len()
                ),
            ));
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if let Err(m) = Constraint::parse(c) {
                problems.push(FieldError::new(format!("placement.constraints[{i}]"), m));
            }
        }
        if let Some(spread) = &self.spread
            && let Err(m) = LabelKey::parse_spread(spread)
        {
            problems.push(FieldError::new("placement.spread", m));
        }
        problems
    }

    /// The parsed constraints (those that parse: a validated spec has no other).
    pub fn parsed(&self) -> Vec<Constraint> {
        self.constraints
            .iter()
            .filter_map(|c| Constraint::parse(c).ok())
            .collect()
    }

    /// The parsed `spread` label, if set and valid.
    pub fn spread_key(&self) -> Option<LabelKey> {
        self.spread.as_deref().and_then(|s| LabelKey::parse_spread(s).ok())
    }
}

/// A node attribute a constraint tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConstraintKey {
    /// `node.id`
    Id,
    /// `node.hostname`
    Hostname,
    /// `node.role`: `manager` or `worker`.
    Role,
    /// `node.platform.os`, e.g. `linux`.
    Os,
    /// `node.platform.arch`, e.g. `x86_64`.
    Arch,
    /// A label of the node or of its engine.
    Label(LabelKey),
}

/// A label of a node (`node.labels.NAME`, set with `docker node update
/// --label-add`) or of its engine (`engine.labels.NAME`, the daemon's `labels`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelKey {
    /// `true` for `engine.labels.NAME`.
    pub engine: bool,
    /// NAME.
    pub name: String,
}

impl LabelKey {
    /// `node.labels.NAME` or `engine.labels.NAME`; `None` for anything else.
    fn parse(key: &str) -> Option<Result<LabelKey, String>> {
        let (engine, name) = if let Some(name) = key.strip_prefix("node.labels.") {
            (false, name)
        } else if let Some(name) = key.strip_prefix("engine.labels.") {
            (true, name)
        } else {
            return None;
        };
        Some(check_token(name, "the label name", false).map(|()| LabelKey {
            engine,
            name: name.to_string(),
        }))
    }

    /// A `spread` value.
    pub fn parse_spread(spread: &str) -> Result<LabelKey, String> {
        LabelKey::parse(spread).unwrap_or_else(|| {
            Err(format!(
                "{:?} is not a label: spread over `node.labels.NAME` (set with `docker node update --label-add NAME=VALUE NODE`) or `engine.labels.NAME`",
                spread.escape_default().to_string()
            ))
        })
    }
}

impl std::fmt::Display for LabelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scope = if self.engine { "engine" } else { "node" };
        write!(f, "{scope}.labels.{}", self.name)
    }
}

impl std::fmt::Display for ConstraintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConstraintKey::Id => f.write_str("node.id"),
            ConstraintKey::Hostname => f.write_str("node.hostname"),
            ConstraintKey::Role => f.write_str("node.role"),
            ConstraintKey::Os => f.write_str("node.platform.os"),
            ConstraintKey::Arch => f.write_str("node.platform.arch"),
            ConstraintKey::Label(l) => l.fmt(f),
        }
    }
}

/// One parsed constraint: `key == value` or `key != value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Constraint {
    /// What it tests.
    pub key: ConstraintKey,
    /// `true` for `==`, `false` for `!=`.
    pub equal: bool,
    /// The value compared with.
    pub value: String,
}

/// What a node offers to constraints: its attributes and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// `node.id`
    pub id: String,
    /// `node.hostname`
    pub hostname: String,
    /// `node.role`
    pub role: String,
    /// `node.platform.os`
    pub os: String,
    /// `node.platform.arch`
    pub arch: String,
    /// `node.labels.*`
    pub labels: BTreeMap<String, String>,
    /// `engine.labels.*`
    pub engine_labels: BTreeMap<String, String>,
}

impl NodeFacts {
    /// The value of a label, if the node has it.
    pub fn label(&self, key: &LabelKey) -> Option<&str> {
        let labels = if key.engine { &self.engine_labels } else { &self.labels };
        labels.get(&key.name).map(String::as_str)
    }
}

impl Constraint {
    /// Parses `KEY==VALUE` or `KEY!=VALUE` (spaces around the operator allowed).
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let shown = text.escape_default().to_string();
        let (key, equal, value) = match (text.split_once("=="), text.split_once("!=")) {
            (Some((k, v)), None) => (k, true, v),
            (None, Some((k, v))) => (k, false, v),
            _ => {
                return Err(format!(
                    "{shown:?} must be KEY==VALUE or KEY!=VALUE (one operator), e.g. \"node.labels.disk==ssd\" or \"node.role!=manager\""
                ));
            }
        };
        let (key, value) = (key.trim_matches(' '), value.trim_matches(' '));
        let key = match key {
            "node.id" => ConstraintKey::Id,
            "node.hostname" => ConstraintKey::Hostname,
            "node.role" => ConstraintKey::Role,
            "node.platform.os" => ConstraintKey::Os,
            "node.platform.arch" => ConstraintKey::Arch,
            other => match LabelKey::parse(other) {
                Some(label) => ConstraintKey::Label(label?),
                None => {
                    return Err(format!(
                        "{:?} is not a key constraints know: use node.id, node.hostname, node.role, \
                         node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME",
                        other.escape_default().to_string()
                    ));
                }
            },
        };
        check_token(value, "the value", true)?;
        if key == ConstraintKey::Role && value != "manager" && value != "worker" {
            return Err(format!(
                "node.role is `manager` or `worker`, not {:?}",
                value.escape_default().to_string()
            ));
        }
        Ok(Constraint {
            key,
            equal,
            value: value.to_string(),
        })
    }

    /// Whether a node satisfies it. A label the node does not have equals no value.
    pub fn holds(&self, node: &NodeFacts) -> bool {
        let actual = match &self.key {
            ConstraintKey::Id => Some(node.id.as_str()),
            ConstraintKey::Hostname => Some(node.hostname.as_str()),
            ConstraintKey::Role => Some(node.role.as_str()),
            ConstraintKey::Os => Some(node.os.as_str()),
            ConstraintKey::Arch => Some(node.arch.as_str()),
            ConstraintKey::Label(l) => node.label(l),
        };
        // Swarm compares these case-insensitively; labels exactly.
        let same = match (&self.key, actual) {
            (ConstraintKey::Label(_), Some(a)) => a == self.value,
            (_, Some(a)) => a.eq_ignore_ascii_case(&self.value),
            (_, None) => false,
        };
        same == self.equal
    }
}

impl std::fmt::Display for Constraint {
    /// Swarm's form: `KEY==VALUE` or `KEY!=VALUE`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{}{op}{}", self.key, self.value)
    }
}

/// A label name or a value: 1 to [`MAX_PLACEMENT_TOKEN`] bytes of letters,
/// digits, `.`, `-` and `_` (Swarm's rule for keys), and in a value also `/`
/// and `:` (nothing Swarm's parser would read as an operator, no space,
/// nothing that needs escaping anywhere).
fn check_token(token: &str, what: &str, value: bool) -> Result<(), String> {
    if token.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if token.len() > MAX_PLACEMENT_TOKEN {
        return Err(format!("{what} is longer than {MAX_PLACEMENT_TOKEN} bytes"));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') || (value && matches!(c, '/' | ':'));
    if let Some(c) = token.chars().find(|c| !allowed(*c)) {
        let also = if value { ", `/` and `:`" } else { "" };
        return Err(format!(
            "{what} {:?} has {:?}: use letters, digits, `.`, `-`, `_`{also} only",
            token.escape_default().to_string(),
            c.escape_default().to_string()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeFacts {
        NodeFacts {
            id: "abc".into(),
            hostname: "Worker-1".into(),
            role: "worker".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: BTreeMap::from([("disk".into(), "ssd".into()), ("zone".into(), "a".into())]),
            engine_labels: BTreeMap::from([("gpu".into(), "yes".into())]),
        }
    }

    #[test]
    fn swarm_constraints_parse_and_print_back() {
        for text in [
            "node.labels.disk==ssd",
            "node.role!=manager",
            "node.id==abc",
            "node.hostname==worker-1",
            "node.platform.os==linux",
            "node.platform.arch!=aarch64",
            "engine.labels.gpu==yes",
            "node.labels.com.example.tier==front-end_1/a:b",
        ] {
            let c = Constraint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.to_string(), text);
        }
        let spaced = Constraint::parse(" node.labels.disk == ssd ").expect("spaces around the operator");
        assert_eq!(spaced.to_string(), "node.labels.disk==ssd");
    }

    #[test]
    fn bad_constraints_are_refused_with_the_fix() {
        for (text, says) in [
            ("node.labels.disk=ssd", "KEY==VALUE"),
            ("node.labels.disk", "KEY==VALUE"),
            ("node.labels.a==b!=c", "one operator"),
            ("node.name==x", "node.hostname"),
            ("labels.disk==ssd", "node.labels.NAME"),
            ("node.labels.==ssd", "the label name is empty"),
            ("node.labels.disk==", "the value is empty"),
            ("node.labels.disk==s sd", "letters, digits"),
            ("node.labels.disk==ssd\n", "letters, digits"),
            ("node.labels.di$k==ssd", "letters, digits"),
            ("node.labels.a/b==ssd", "letters, digits"),
            ("node.role==boss", "`manager` or `worker`"),
            ("node.labels.disk==ssd,node.role==worker", "letters, digits"),
        ] {
            let e = Constraint::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        let long = format!("node.labels.x=={}", "a".repeat(MAX_PLACEMENT_TOKEN + 1));
        assert!(Constraint::parse(&long).is_err());
    }

    #[test]
    fn constraints_hold_on_the_nodes_that_satisfy_them() {
        let n = node();
        let holds = |t: &str| Constraint::parse(t).expect(t).holds(&n);
        assert!(holds("node.labels.disk==ssd"));
        assert!(!holds("node.labels.disk!=ssd"));
        assert!(!holds("node.labels.disk==SSD"), "labels compare exactly");
        assert!(holds("node.hostname==worker-1"), "attributes compare without case");
        assert!(holds("node.role!=manager"));
        assert!(!holds("node.labels.rack==r1"), "a missing label equals nothing");
        assert!(
            holds("node.labels.rack!=r1"),
            "a missing label differs from every value"
        );
        assert!(holds("engine.labels.gpu==yes"));
        assert!(!holds("node.labels.gpu==yes"), "engine labels are not node labels");
        assert!(holds("node.platform.arch==x86_64"));
    }

    #[test]
    fn spread_takes_labels_only() {
        let p = Placement::default().with_spread("node.labels.zone");
        assert!(p.problems().is_empty());
        assert_eq!(
            p.spread_key().map(|k| k.to_string()).as_deref(),
            Some("node.labels.zone")
        );
        for bad in ["node.hostname", "zone", "node.labels.", "node.labels.a b"] {
            let problems = Placement::default().with_spread(bad).problems();
            assert_eq!(problems.len(), 1, "{bad}");
            assert_eq!(problems[0].field, "placement.spread");
        }
        let many = Placement::constraints(vec!["node.role==worker"; MAX_CONSTRAINTS + 1]).problems();
        assert_eq!(many[0].field, "placement.constraints");
        let fields: Vec<String> = Placement::constraints(["node.role==worker", "bad"])
            .problems()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["placement.constraints[1]"]);
    }
}

//! Where new replicas go: a pure decision over the nodes an engine reports,
//! used by both backends (`docker.rs`: the one local node; `swarm_nodes.rs`:
//! the swarm's nodes).
//!
//! A replica on Swarm is a service of its own (see `swarm.rs`), so Swarm's
//! spread preference, which spreads the tasks *of one service*, cannot spread
//! a pod's replicas: the spread is decided here, one replica at a time, onto
//! the label value with the fewest replicas of the pod, and given to Swarm as
//! one more constraint (`node.labels.zone==b`). Constraints are checked here
//! too, so a pod no node can run shows why instead of a task pending in Swarm.
//!
//! **Volumes pin.** A named volume lives on one node's disk, so a pod that
//! mounts one runs on the node where the volume is: the first time it is
//! placed, a node is chosen (the node where the pod already runs, if it does;
//! else this engine's own node, the manager, when it satisfies the
//! constraints, so `dubectl get volumes` and `delete volume` see the data;
//! else the eligible node with the fewest replicas) and the
//! pin is recorded on that node as the node label [`pin_label`] (Swarm's own
//! state: it survives restarts and shows in `dubectl get nodes`). Every
//! later replica of every pod mounting it gets `node.id==<that node>`.

use std::collections::{BTreeMap, BTreeSet};

use dubernetes_api::{Constraint, ConstraintKey, LabelKey, NodeFacts};

/// Prefix of the node label that pins a volume: `io.dubernetes.volume.<engine volume name>`.
pub const PIN_LABEL_PREFIX: &str = "io.dubernetes.volume.";

/// The node label that pins the engine volume `volume` to a node.
pub fn pin_label(volume: &str) -> String {
    format!("{PIN_LABEL_PREFIX}{volume}")
}

/// A node as the planner sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Candidate {
    /// Its attributes and labels.
    pub facts: NodeFacts,
    /// Whether new tasks may go there (ready and active).
    pub usable: bool,
    /// Running replicas of the instance on it.
    pub replicas: usize,
    /// Running replicas of the pod being placed on it.
    pub pod_replicas: usize,
    /// This engine's own node (the manager the server talks to).
    pub local: bool,
}

/// What a pod asks of placement.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ask<'a> {
    /// The pod's constraints.
    pub constraints: &'a [Constraint],
    /// The pod's spread label.
    pub spread: Option<&'a LabelKey>,
    /// The engine names of the named volumes it mounts (pinned when `pin`).
    pub volumes: Vec<String>,
    /// Whether volumes pin (Swarm: a volume is local to a node).
    pub pin: bool,
}

/// The decision for `count` new replicas.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    /// The constraints each new replica adds to the pod's own.
    pub replicas: Vec<Vec<Constraint>>,
    /// New pins to record: engine volume name and node id.
    pub pins: Vec<(String, String)>,
}

fn node_id_is(id: &str) -> Constraint {
    Constraint {
        key: ConstraintKey::Id,
        equal: true,
        value: id.to_string(),
    }
}

/// Why no node can run the pod: the first constraint that holds on no usable node.
fn none_eligible(nodes: &[Candidate], ask: &Ask<'_>) -> String {
    let usable: Vec<&Candidate> = nodes.iter().filter(|n| n.usable).collect();
    if usable.is_empty() {
        return format!("none of the {} node(s) is ready and active", nodes.len());
    }
    let failing = ask
        .constraints
        .iter()
        .find(|c| !usable.iter().any(|n| c.holds(&n.facts)))
        .map(|c| format!("`{c}` holds on none of them"))
        .unwrap_or_else(|| "no node satisfies all the constraints at once".to_string());
    format!(
        "no node satisfies placement.constraints ({} ready and active node(s); {failing}): \
         change the constraints or the nodes' labels (`docker node update --label-add NAME=VALUE NODE`)",
        usable.len()
    )
}

/// Decides where `count` new replicas go, or says why they cannot run.
pub(crate) fn decide(nodes: &[Candidate], ask: &Ask<'_>, count: usize) -> Result<Decision, String> {
    let eligible: Vec<&Candidate> = nodes
        .iter()
        .filter(|n| n.usable && ask.constraints.iter().all(|c| c.holds(&n.facts)))
        .collect();
    if ask.pin && !ask.volumes.is_empty() {
        return pinned(nodes, &eligible, ask, count);
    }
    if eligible.is_empty() {
        return Err(none_eligible(nodes, ask));
    }
    let Some(key) = ask.spread else {
        return Ok(Decision {
            replicas: vec![Vec::new(); count],
            pins: Vec::new(),
        });
    };
    // Replicas of the pod per value of the label among the eligible nodes
    // (`None`: nodes without it, one group of their own, as Swarm does).
    let mut groups: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    for n in &eligible {
        *groups.entry(n.facts.label(key)).or_default() += n.pod_replicas;
    }
    let values: BTreeSet<&str> = nodes.iter().filter_map(|n| n.facts.label(key)).collect();
    let mut replicas = Vec::with_capacity(count);
    for _ in 0..count {
        // Fewest first; on a tie a labelled value before the unlabelled nodes.
        let Some((&value, n)) = groups.iter_mut().min_by_key(|(v, n)| (**n, v.is_none())) else {
            break;
        };
        *n += 1;
        replicas.push(match value {
            Some(v) => vec![Constraint {
                key: ConstraintKey::Label(key.clone()),
                equal: true,
                value: v.to_string(),
            }],
            None => values
                .iter()
                .map(|v| Constraint {
                    key: ConstraintKey::Label(key.clone()),
                    equal: false,
                    value: v.to_string(),
                })
                .collect(),
        });
    }
    Ok(Decision {
        replicas,
        pins: Vec::new(),
    })
}

/// The pod mounts volumes: every replica on the node they are pinned to,
/// choosing and recording it when none is.
fn pinned(nodes: &[Candidate], eligible: &[&Candidate], ask: &Ask<'_>, count: usize) -> Result<Decision, String> {
    let mut pinned_to: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for volume in &ask.volumes {
        let label = pin_label(volume);
        for n in nodes.iter().filter(|n| n.facts.labels.contains_key(&label)) {
            pinned_to.entry(n.facts.id.as_str()).or_default().push(volume);
        }
    }
    let hostname = |id: &str| {
        nodes
            .iter()
            .find(|n| n.facts.id == id)
            .map(|n| n.facts.hostname.clone())
            .unwrap_or_default()
    };
    let node = match pinned_to.len() {
        0 => {
            // Where the pod already runs (its data is there: a pod applied
            // before pins existed), else this engine's node, else the emptiest.
            let chosen = eligible
                .iter()
                .filter(|n| n.pod_replicas > 0)
                .max_by_key(|n| (n.pod_replicas, std::cmp::Reverse(n.facts.id.as_str())))
                .or_else(|| eligible.iter().find(|n| n.local))
                .or_else(|| eligible.iter().min_by_key(|n| (n.replicas, n.facts.id.as_str())))
                .ok_or_else(|| none_eligible(nodes, ask))?;
            chosen.facts.id.clone()
        }
        1 => {
            let id = pinned_to.keys().next().map(|id| id.to_string()).unwrap_or_default();
            if !eligible.iter().any(|n| n.facts.id == id) {
                let why = match nodes.iter().find(|n| n.facts.id == id) {
                    Some(n) if !n.usable => "is not ready and active".to_string(),
                    Some(_) => "does not satisfy placement.constraints".to_string(),
                    None => "is no longer in the swarm".to_string(),
                };
                return Err(format!(
                    "its volume(s) {} are pinned to node {} ({id}), which {why}: bring the node back, or move \
                     the pin (see `dubectl get nodes`; docs/architecture.md, \"Several machines\")",
                    ask.volumes.join(", "),
                    hostname(&id)
                ));
            }
            id
        }
        _ => {
            let list: Vec<String> = pinned_to
                .iter()
                .map(|(id, v)| format!("{} on {} ({id})", v.join(", "), hostname(id)))
                .collect();
            return Err(format!(
                "its volumes are pinned to different nodes ({}): one replica cannot mount them all; \
                 move the pins to one node",
                list.join("; ")
            ));
        }
    };
    let pins = ask
        .volumes
        .iter()
        .filter(|v| {
            let label = pin_label(v);
            !nodes.iter().any(|n| n.facts.labels.contains_key(&label))
        })
        .map(|v| (v.clone(), node.clone()))
        .collect();
    Ok(Decision {
        replicas: vec![vec![node_id_is(&node)]; count],
        pins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, role: &str, labels: &[(&str, &str)], pod_replicas: usize) -> Candidate {
        Candidate {
            facts: NodeFacts {
                id: id.into(),
                hostname: format!("host-{id}"),
                role: role.into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                engine_labels: BTreeMap::new(),
            },
            usable: true,
            replicas: pod_replicas,
            pod_replicas,
            local: role == "manager",
        }
    }

    fn parse(cs: &[&str]) -> Vec<Constraint> {
        cs.iter().map(|c| Constraint::parse(c).expect(c)).collect()
    }

    fn shown(d: &Decision) -> Vec<String> {
        d.replicas
            .iter()
            .map(|cs| cs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            .collect()
    }

    #[test]
    fn constraints_no_node_satisfies_say_which() {
        let nodes = [
            node("m", "manager", &[], 0),
            node("w1", "worker", &[("disk", "hdd")], 0),
        ];
        let constraints = parse(&["node.role==worker", "node.labels.disk==ssd"]);
        let ask = Ask {
            constraints: &constraints,
            ..Ask::default()
        };
        let e = decide(&nodes, &ask, 1).expect_err("no ssd node");
        assert!(e.contains("`node.labels.disk==ssd` holds on none"), "{e}");
        let ok = parse(&["node.role==worker"]);
        let d = decide(
            &nodes,
            &Ask {
                constraints: &ok,
                ..Ask::default()
            },
            2,
        )
        .expect("a worker");
        assert_eq!(shown(&d), ["", ""], "Swarm applies the pod's own constraints");
        let mut down = nodes.clone();
        down[1].usable = false;
        assert!(
            decide(
                &down,
                &Ask {
                    constraints: &ok,
                    ..Ask::default()
                },
                1
            )
            .is_err()
        );
    }

    #[test]
    fn spread_fills_the_emptiest_zone_first() {
        let key = LabelKey::parse_spread("node.labels.zone").expect("key");
        let nodes = [
            node("m", "manager", &[("zone", "a")], 2),
            node("w1", "worker", &[("zone", "b")], 0),
            node("w2", "worker", &[("zone", "b")], 1),
            node("w3", "worker", &[], 0),
        ];
        let ask = Ask {
            spread: Some(&key),
            ..Ask::default()
        };
        let d = decide(&nodes, &ask, 4).expect("spread");
        assert_eq!(
            shown(&d),
            [
                "node.labels.zone!=a,node.labels.zone!=b",
                "node.labels.zone==b",
                "node.labels.zone!=a,node.labels.zone!=b",
                "node.labels.zone==a",
            ]
        );
        // Constraints narrow the zones spread over.
        let workers = parse(&["node.role==worker", "node.labels.zone==b"]);
        let d = decide(
            &nodes,
            &Ask {
                constraints: &workers,
                spread: Some(&key),
                ..Ask::default()
            },
            2,
        )
        .expect("zone b");
        assert_eq!(shown(&d), ["node.labels.zone==b", "node.labels.zone==b"]);
    }

    #[test]
    fn a_volume_pins_its_pods_to_one_node() {
        let mut nodes = vec![node("m", "manager", &[], 0), node("w1", "worker", &[], 0)];
        nodes[0].replicas = 3;
        let ask = Ask {
            volumes: vec!["dub-x_data".into()],
            pin: true,
            ..Ask::default()
        };
        let d = decide(&nodes, &ask, 2).expect("pinned");
        assert_eq!(shown(&d), ["node.id==m", "node.id==m"], "the manager first");
        assert_eq!(d.pins, [("dub-x_data".to_string(), "m".to_string())]);
        let workers = parse(&["node.role==worker"]);
        let on_worker = Ask {
            constraints: &workers,
            ..ask.clone()
        };
        let d = decide(&nodes, &on_worker, 1).expect("a worker");
        assert_eq!(shown(&d), ["node.id==w1"]);
        // A pod already running (applied before pins existed) is pinned where it runs.
        let mut running = nodes.clone();
        running[1].pod_replicas = 1;
        assert_eq!(
            shown(&decide(&running, &ask, 1).expect("where it runs")),
            ["node.id==w1"]
        );
        // Pinned: the pin wins over everything but the constraints, and is not recorded again.
        nodes[1].facts.labels.insert(pin_label("dub-x_data"), "true".into());
        let d = decide(&nodes, &ask, 1).expect("pinned to w1");
        assert_eq!((shown(&d), d.pins.len()), (vec!["node.id==w1".to_string()], 0));
        nodes[1].usable = false;
        let e = decide(&nodes, &ask, 1).expect_err("the pinned node is down");
        assert!(e.contains("pinned to node host-w1 (w1), which is not ready"), "{e}");
        nodes[0].facts.labels.insert(pin_label("dub-x_logs"), "true".into());
        let two = Ask {
            volumes: vec!["dub-x_data".into(), "dub-x_logs".into()],
            ..ask.clone()
        };
        let e = decide(&nodes, &two, 1).expect_err("two pins");
        assert!(e.contains("pinned to different nodes"), "{e}");
        // No pinning where volumes are local anyway (the docker backend).
        let local = Ask { pin: false, ..ask };
        assert_eq!(shown(&decide(&nodes[..1], &local, 1).expect("local")), [""]);
    }
}

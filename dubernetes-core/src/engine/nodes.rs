//! The nodes of each backend, for placement (`placement.rs` decides) and for
//! `GET /v1/nodes`: the docker backend's one engine (its own node, a
//! `manager`, whose labels are the daemon's `labels`, both as `node.labels`
//! and `engine.labels`), or the swarm's nodes as the manager lists them.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, TaskState};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListTasksOptionsBuilder, UpdateNodeOptionsBuilder};
use dubernetes_api::{Constraint, Node, NodeFacts};

use super::ContainerSpec;
use super::docker::{CALL_TIMEOUT, bounded};
use super::placement::{Ask, Candidate, decide, pin_label};
use crate::error::{Error, Result};
use crate::labels::{LABEL_INSTANCE, LABEL_POD, LABEL_ROLE};

/// Most retries of a node update refused for an outdated version index.
const NODE_UPDATE_RETRIES: u32 = 5;

/// `KEY=VALUE` engine labels as a map (a label without `=` has an empty value).
fn engine_labels(labels: Option<Vec<String>>) -> BTreeMap<String, String> {
    labels
        .unwrap_or_default()
        .into_iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l, String::new()),
        })
        .collect()
}

/// The docker backend's one node: this engine.
async fn local_facts(docker: &Docker) -> Result<NodeFacts> {
    let info = bounded("reading the engine's info", CALL_TIMEOUT, docker.info()).await?;
    let labels = engine_labels(info.labels);
    Ok(NodeFacts {
        id: info.id.unwrap_or_default(),
        hostname: info.name.unwrap_or_default(),
        role: "manager".into(),
        os: info.os_type.unwrap_or_default(),
        arch: info.architecture.unwrap_or_default(),
        labels: labels.clone(),
        engine_labels: labels,
    })
}

/// Docker backend: the constraints hold on this engine, or the replicas cannot run.
pub(super) async fn docker_place(docker: &Docker, spec: &ContainerSpec, count: usize) -> Result<Vec<Vec<Constraint>>> {
    if spec.constraints.is_empty() {
        return Ok(vec![Vec::new(); count]);
    }
    let node = Candidate {
        facts: local_facts(docker).await?,
        usable: true,
        local: true,
        ..Candidate::default()
    };
    let ask = Ask {
        constraints: &spec.constraints,
        ..Ask::default()
    };
    decide(&[node], &ask, count)
        .map(|d| d.replicas)
        .map_err(|e| Error::Unschedulable(format!("{e} (the docker backend has one node: this engine)")))
}

/// Docker backend: this engine, with the instance's running replicas by pod.
pub(super) async fn docker_nodes(docker: &Docker, instance: &str) -> Result<Vec<Node>> {
    let facts = local_facts(docker).await?;
    let filters = HashMap::from([
        (
            "label",
            vec![format!("{LABEL_INSTANCE}={instance}"), format!("{LABEL_ROLE}=replica")],
        ),
        ("status", vec!["running".to_string()]),
    ]);
    let options = ListContainersOptionsBuilder::new().all(false).filters(&filters).build();
    let containers = bounded(
        "listing containers",
        CALL_TIMEOUT,
        docker.list_containers(Some(options)),
    )
    .await?;
    let mut node = Node::new(facts.id, facts.hostname, facts.role, "ready", "active");
    node.labels = facts.labels;
    node.engine_labels = facts.engine_labels;
    for c in containers {
        if let Some(pod) = c.labels.as_ref().and_then(|l| l.get(LABEL_POD)) {
            *node.replicas.entry(pod.clone()).or_default() += 1;
        }
    }
    Ok(vec![node])
}

/// One swarm node as listed, with its facts.
struct SwarmNode {
    facts: NodeFacts,
    state: Option<NodeState>,
    availability: Option<NodeSpecAvailabilityEnum>,
    address: Option<String>,
}

async fn swarm_nodes(docker: &Docker) -> Result<Vec<SwarmNode>> {
    let listed = bounded(
        "listing nodes",
        CALL_TIMEOUT,
        docker.list_nodes(None::<bollard::query_parameters::ListNodesOptions>),
    )
    .await?;
    Ok(listed
        .into_iter()
        .map(|n| {
            let spec = n.spec.unwrap_or_default();
            let description = n.description.unwrap_or_default();
            let platform = description.platform.unwrap_or_default();
            let status = n.status.unwrap_or_default();
            let role = match spec.role {
                Some(NodeSpecRoleEnum::MANAGER) => "manager",
                _ => "worker",
            };
            SwarmNode {
                facts: NodeFacts {
                    id: n.id.unwrap_or_default(),
                    hostname: description.hostname.unwrap_or_default(),
                    role: role.into(),
                    os: platform.os.unwrap_or_default(),
                    arch: platform.architecture.unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    engine_labels: description
                        .engine
                        .and_then(|e| e.labels)
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                },
                state: status.state,
                availability: spec.availability,
                address: status.addr,
            }
        })
        .collect())
}

/// The instance's tasks Swarm wants running: node id, pod, running now.
async fn instance_tasks(docker: &Docker, instance: &str) -> Result<Vec<(String, String, bool)>> {
    let filters = HashMap::from([
        ("label", vec![format!("{LABEL_INSTANCE}={instance}")]),
        ("desired-state", vec!["running".to_string()]),
    ]);
    let tasks = bounded(
        "listing tasks",
        CALL_TIMEOUT,
        docker.list_tasks(Some(ListTasksOptionsBuilder::new().filters(&filters).build())),
    )
    .await?;
    Ok(tasks
        .into_iter()
        .filter_map(|t| {
            let pod = t
                .spec
                .as_ref()?
                .container_spec
                .as_ref()?
                .labels
                .as_ref()?
                .get(LABEL_POD)?
                .clone();
            let running = t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING);
            Some((t.node_id?, pod, running))
        })
        .collect())
}

/// Swarm: where `count` new replicas of `spec` go (spread, pins recorded on their nodes).
pub(super) async fn swarm_place(docker: &Docker, spec: &ContainerSpec, count: usize) -> Result<Vec<Vec<Constraint>>> {
    let volumes = spec.volume_names();
    if spec.constraints.is_empty() && spec.spread.is_none() && volumes.is_empty() {
        return Ok(vec![Vec::new(); count]);
    }
    let info = bounded("reading the engine's info", CALL_TIMEOUT, docker.info()).await?;
    let local = info.swarm.and_then(|s| s.node_id).unwrap_or_default();
    let instance = spec.labels.get(LABEL_INSTANCE).cloned().unwrap_or_default();
    let pod = spec.labels.get(LABEL_POD).cloned().unwrap_or_default();
    let tasks = instance_tasks(docker, &instance).await?;
    let candidates: Vec<Candidate> = swarm_nodes(docker)
        .await?
        .into_iter()
        .map(|n| Candidate {
            usable: n.state == Some(NodeState::READY) && n.availability == Some(NodeSpecAvailabilityEnum::ACTIVE),
            replicas: tasks.iter().filter(|t| t.0 == n.facts.id).count(),
            pod_replicas: tasks.iter().filter(|t| t.0 == n.facts.id && t.1 == pod).count(),
            local: n.facts.id == local,
            facts: n.facts,
        })
        .collect();
    let ask = Ask {
        constraints: &spec.constraints,
        spread: spec.spread.as_ref(),
        volumes,
        pin: true,
    };
    let decision = decide(&candidates, &ask, count).map_err(Error::Unschedulable)?;
    for (volume, node) in &decision.pins {
        set_node_label(docker, node, &pin_label(volume), Some("true")).await?;
        tracing::info!(volume, node, "volume pinned to node");
    }
    Ok(decision.replicas)
}

/// Sets (`Some`) or removes (`None`) a label of a swarm node.
async fn set_node_label(docker: &Docker, node: &str, key: &str, value: Option<&str>) -> Result<()> {
    for _ in 0..NODE_UPDATE_RETRIES {
        let current = bounded("inspecting node", CALL_TIMEOUT, docker.inspect_node(node)).await?;
        let version = current.version.and_then(|v| v.index).unwrap_or_default();
        let mut spec = current.spec.unwrap_or_default();
        let labels = spec.labels.get_or_insert_with(Default::default);
        match value {
            Some(v) => labels.insert(key.to_string(), v.to_string()),
            None => labels.remove(key),
        };
        let options = UpdateNodeOptionsBuilder::new()
            .version(i64::try_from(version).unwrap_or(i64::MAX))
            .build();
        match bounded("updating node", CALL_TIMEOUT, docker.update_node(node, spec, options)).await {
            Ok(()) => return Ok(()),
            // Another update came between: read the node again.
            Err(r) if matches!(r.status(), Some(409) | Some(500)) && is_out_of_sequence(&r) => continue,
            Err(r) => return Err(r.into()),
        }
    }
    Err(Error::Docker {
        context: format!("updating node {node}"),
        source: "its version kept changing".into(),
    })
}

fn is_out_of_sequence(r: &super::docker::Refused) -> bool {
    match r {
        super::docker::Refused::Status(_, e) => e.to_string().contains("out of sequence"),
        super::docker::Refused::Other(_) => false,
    }
}

/// Swarm: removes the pin of a deleted volume from every node that has it.
pub(super) async fn swarm_unpin(docker: &Docker, volume: &str) -> Result<()> {
    let label = pin_label(volume);
    for n in swarm_nodes(docker).await? {
        if n.facts.labels.contains_key(&label) {
            set_node_label(docker, &n.facts.id, &label, None).await?;
            tracing::info!(volume, node = n.facts.id, "volume pin removed");
        }
    }
    Ok(())
}

/// Swarm: every node, with the instance's running replicas by pod.
pub(super) async fn swarm_node_list(docker: &Docker, instance: &str) -> Result<Vec<Node>> {
    let tasks = instance_tasks(docker, instance).await?;
    let mut nodes: Vec<Node> = swarm_nodes(docker)
        .await?
        .into_iter()
        .map(|n| {
            let state = n.state.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
            let availability = n
                .availability
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unknown".into());
            let mut node = Node::new(n.facts.id, n.facts.hostname, n.facts.role, state, availability);
            node.address = n.address;
            node.labels = n.facts.labels;
            node.engine_labels = n.facts.engine_labels;
            for (_, pod, _) in tasks.iter().filter(|t| t.0 == node.id && t.2) {
                *node.replicas.entry(pod.clone()).or_default() += 1;
            }
            node
        })
        .collect();
    nodes.sort_by(|a, b| (a.role != "manager", &a.hostname).cmp(&(b.role != "manager", &b.hostname)));
    Ok(nodes)
}

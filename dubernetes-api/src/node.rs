//! The nodes of the cluster, as the API answers them (`GET /v1/nodes`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A node that can run replicas: a member of the swarm (swarm backend), or
/// the one Docker engine (docker backend), with the replicas of the
/// instance it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Node {
    /// The node's id (`node.id` in constraints).
    pub id: String,
    /// Its host name (`node.hostname`).
    pub hostname: String,
    /// `manager` or `worker` (`node.role`; the docker backend's one engine is a `manager`).
    pub role: String,
    /// Swarm's view of it: `ready`, `down`, `unknown`, `disconnected`.
    pub state: String,
    /// Whether the scheduler places tasks there: `active`, `pause` or `drain`.
    pub availability: String,
    /// Its address in the swarm, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its labels (`node.labels.*`; on the docker backend the engine's labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Its engine's labels (`engine.labels.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub engine_labels: BTreeMap<String, String>,
    /// The running replicas of the instance on it, by pod.
    #[serde(default)]
    pub replicas: BTreeMap<String, u32>,
}

impl Node {
    /// A node with its identity and state, no labels and no replicas.
    pub fn new(
        id: impl Into<String>,
        hostname: impl Into<String>,
        role: impl Into<String>,
        state: impl Into<String>,
        availability: impl Into<String>,
    ) -> Node {
        Node {
            id: id.into(),
            hostname: hostname.into(),
            role: role.into(),
            state: state.into(),
            availability: availability.into(),
            ..Node::default()
        }
    }
}

//! The nodes that run replicas, through the facade (`GET /v1/nodes`,
//! `dubectl get nodes`): the swarm's nodes, or the docker backend's one
//! engine, each with its state, labels and the instance's replicas on it.

use dubernetes_api::Node;

use crate::error::Result;
use crate::orchestrator::Dubernetes;

impl Dubernetes {
    /// The nodes, the manager(s) first, with the instance's running replicas on each by pod.
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.handle.runtime.nodes(self.instance()).await
    }
}

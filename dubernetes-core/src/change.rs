//! What changed, as the controller, the ACME task, the leader code and the
//! facade announce it on the instance's broadcast channel and the change
//! feed (`watch.rs`) reads it. A leaf: it imports nothing of the crate.

/// A change the controller made or saw, for watchers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// A pod's desired or observed state changed.
    Pod {
        /// The pod's name.
        name: String,
    },
    /// The ingress applied a new config.
    Ingress,
}

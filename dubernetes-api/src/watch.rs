//! The change feed's entries, as `GET /v1/watch` sends them.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::pod::Pod;

/// What a [`WatchEvent`] says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum WatchKind {
    /// A pod appeared (or, at the start of a watch without a version, exists).
    Added,
    /// A pod's spec, status or replicas changed.
    Modified,
    /// A pod was deleted; `pod` is its last state.
    Deleted,
    /// An event was recorded; it is in `event`.
    Event,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchEvent {
    /// Increases with every entry; resume a watch after it with `since`.
    pub version: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: WatchKind,
    /// The pod it is about.
    pub name: String,
    /// The pod after the change (its last state for `DELETED`); absent for `EVENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    /// The event, for `EVENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

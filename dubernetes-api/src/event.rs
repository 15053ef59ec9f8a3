//! Recorded events: what the controller did and what went wrong, per pod.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseEnumError;

/// Whether an event is routine or a problem, like a Kubernetes event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// Routine: created, removed, rolled out.
    Normal,
    /// Something is wrong: a crash, an unavailable image, a failed rollout.
    Warning,
}

impl EventKind {
    /// `Normal` or `Warning`, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Normal" => Ok(EventKind::Normal),
            "Warning" => Ok(EventKind::Warning),
            _ => Err(ParseEnumError::new("event kind", s)),
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Increasing id.
    pub id: i64,
    /// The pod it is about.
    pub pod: String,
    /// Unix milliseconds.
    pub at: i64,
    /// `Normal` or `Warning`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: EventKind,
    /// A short CamelCase reason such as `Created` or `Failed`.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_what_they_write() {
        for k in [EventKind::Normal, EventKind::Warning] {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).expect("json"), serde_json::json!(k.as_str()));
        }
        assert!("normal".parse::<EventKind>().is_err());
    }
}

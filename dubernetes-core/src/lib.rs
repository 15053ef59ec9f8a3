//! # dubernetes-core
//!
//! A small, honest container orchestrator for one machine, as a library.
//! You describe pods (an image, a number of replicas, an optional host name);
//! Dubernetes keeps that many Docker containers running and routes the host
//! through an nginx ingress container.
//!
//! ```no_run
//! use std::time::Duration;
//! use dubernetes_core::{Dubernetes, IngressSettings, PodSpec};
//!
//! # async fn demo() -> Result<(), dubernetes_core::Error> {
//! let orchestrator = Dubernetes::builder()
//!     .instance("demo")
//!     .in_memory()
//!     .ingress(IngressSettings::new("dubernetes/nginx:local", "127.0.0.1:0".parse().unwrap()))
//!     .build()
//!     .await?;
//! orchestrator.apply(PodSpec::new("whoami", "dubernetes/whoami:v1").with_replicas(3).with_host("whoami.local")).await?;
//! let pod = orchestrator.wait_ready("whoami", Duration::from_secs(30)).await?;
//! println!("{} of {} ready", pod.status.ready_replicas, pod.status.desired_replicas);
//! // Stops the controller and removes every container and the network of the instance.
//! orchestrator.purge().await?;
//! # Ok(())
//! # }
//! ```
//!
//! How it works (see `docs/architecture.md`): desired state lives in SQLite
//! ([`PodSpec`]s with a generation); observed state lives in Docker (every
//! container carries labels naming its instance, pod and revision). A
//! controller reconciles each pod — observe, plan (a pure function), act —
//! woken by API writes and Docker events, with a periodic resync.
#![deny(missing_docs)]

mod controller;
mod error;
mod health;
mod ingress;
mod logs;
mod orchestrator;
mod plan;
mod probe;
mod runtime;
mod spec;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod watch;

pub use controller::{BackoffSettings, Change};
pub use error::{Error, Result};
pub use ingress::{DEFAULT_INGRESS_IMAGE, IngressSettings};
pub use logs::{
    DEFAULT_MAX_LOG_FOLLOW_REPLICAS, DEFAULT_MAX_LOG_FOLLOWS, FollowLimits, LogLine, LogLines, LogOptions, LogStream,
    MAX_LOG_LINE_BYTES,
};
pub use orchestrator::{Condition, Dubernetes, DubernetesBuilder, Pod, PodStatus, Replica};
pub use runtime::{ContainerState, LABEL_INSTANCE, LABEL_POD, LABEL_REVISION, LABEL_ROLE};
pub use spec::{
    Access, FieldError, HealthCheck, MAX_ENV_VALUE_BYTES, MAX_ENV_VARS, MAX_REPLICAS, MAX_SPEC_BYTES, MAX_SPEC_DEPTH,
    PodSpec, Resources, RestartBackoff, SpecError, UpdateStrategy, ValidationError, parse_json_spec, parse_memory,
    parse_specs,
};
pub use store::{ApplyOutcome, DB_FILE, Event, Revision, RolloutState, backup};
pub use watch::{HISTORY as WATCH_HISTORY, WatchEvent, WatchKind};

//! The labels that make every container (and volume) of an instance
//! self-describing: what the engine, the runtime, the controller and the
//! facade read and write, public as `dubernetes_core::labels`. A leaf: it imports nothing of the crate, so the
//! engines can label and filter without reaching up into the runtime.

/// Label: the instance a container belongs to.
pub const LABEL_INSTANCE: &str = "io.dubernetes.instance";
/// Label: the pod a replica belongs to.
pub const LABEL_POD: &str = "io.dubernetes.pod";
/// Label: the revision hash of the spec a replica runs.
pub const LABEL_REVISION: &str = "io.dubernetes.revision";
/// Label: `replica` or `ingress`.
pub const LABEL_ROLE: &str = "io.dubernetes.role";
/// Label: the container port a replica listens on.
pub const LABEL_PORT: &str = "io.dubernetes.port";
/// Label: hash of the ingress container's own settings (image, listen address).
pub const LABEL_INGRESS_CONFIG: &str = "io.dubernetes.ingress-config";
/// Label: the host directory bound into the ingress container for its endpoint files.
pub const LABEL_INGRESS_ENDPOINTS: &str = "io.dubernetes.ingress-endpoints";

/// Label: the name a pod's spec gives a volume (the engine's name is
/// `dub-<instance>_<name>`).
pub const LABEL_VOLUME: &str = "io.dubernetes.volume";

/// Label on a replica's Swarm service: the image reference the user wrote
/// (the task runs the image id it resolved to).
pub const LABEL_IMAGE: &str = "io.dubernetes.image";

/// Label: the id of the store whose server created the container.
pub const LABEL_STORE: &str = "io.dubernetes.store";
/// Label: the absolute data dir of that store when it created the container
/// (`in-memory` for an embedded store kept in memory). Named in refusals.
pub const LABEL_DATA_DIR: &str = "io.dubernetes.data-dir";

/// The [`LABEL_DATA_DIR`] value of a store kept in memory.
pub(crate) const IN_MEMORY: &str = "in-memory";

/// The role label of a run's container.
pub const ROLE_RUN: &str = "run";
/// Label: the run's name.
pub const LABEL_RUN: &str = "io.dubernetes.run";

/// Label of a cron pod's run: the tick it runs for, Unix seconds.
pub const LABEL_CRON: &str = "io.dubernetes.cron";

/// The role label of the name responder's container.
pub(crate) const ROLE_NAMES: &str = "names";

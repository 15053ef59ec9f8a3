//! Desired state: pods (with a generation that increases on every change),
//! their revisions and rollout state, a bounded log of events, and the
//! ownership records of the store (its id, the containers it adopted).
//! Nothing the engine knows better (which containers run) is stored here.
//!
//! [`Store`] is the seam: the controller and the facade hold an
//! `Arc<dyn Store>` and never see SQL. Each operation is one transaction of
//! the implementation (the checks and the write of an apply cannot be split
//! by another writer), so no transaction handle crosses the trait.
//! [`sqlite::SqliteStore`] (one server, a file in the data dir) and
//! [`postgres::PgStore`] (any number of servers of one instance) implement
//! it and prove themselves with the same [`contract`] tests.
//! SQLite-only SQL (`BEGIN IMMEDIATE`, `PRAGMA`, `VACUUM INTO`) stays inside
//! the SQLite module; the queries are runtime `sqlx::query(..).bind(..)` with
//! `$1..$n` placeholders, which both engines read.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use dubernetes_api::{ApplyOutcome, Event, EventKind, Revision, RolloutOutcome, RolloutState};

pub(crate) use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::ownership::Adoption;
use crate::spec::PodSpec;

pub(crate) mod cache;
#[cfg(any(test, feature = "testing"))]
pub mod contract;
pub(crate) mod postgres;
mod revisions_sql;
mod rows_sql;
mod sql;
pub(crate) mod sqlite;
mod write_tx_sql;

pub use sqlite::backup;

/// How many events are kept per instance; older ones are pruned (checked
/// every 100 events, so at most 100 more are ever stored).
pub const MAX_EVENTS: i64 = 5000;

/// Longest event message stored, in bytes; a longer one (say, an error
/// quoting a huge log line) is cut at a character boundary and marked.
/// With [`MAX_EVENTS`], the event log holds at most about 20 MiB.
pub const MAX_EVENT_MESSAGE_BYTES: usize = 4096;

/// How many revisions are kept per pod (Kubernetes' `revisionHistoryLimit`
/// default). Older ones are pruned when a new one is recorded, except the
/// current one and the last complete ones that `rollout undo` and automatic
/// rollback go back to, so at most `MAX_REVISIONS + 2` rows exist per pod.
pub const MAX_REVISIONS: i64 = 10;

/// What a store knows about ownership (see [`Store::ownership_facts`]).
#[derive(Debug, Default)]
pub(crate) struct OwnershipFacts {
    /// The store's id (None: a new store, or one written by a version before store ids).
    pub id: Option<String>,
    /// The names of its pods.
    pub pods: HashSet<String>,
    /// The containers it adopted, as (id, pod, held).
    pub adopted: Vec<(String, Option<String>, bool)>,
}

/// A pod as stored: its spec and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredPod {
    /// The desired state.
    pub spec: PodSpec,
    /// Increases by one on every change of the spec.
    pub generation: i64,
    /// When the pod was created, unix milliseconds.
    pub created_at: i64,
    /// When the spec last changed, unix milliseconds.
    pub updated_at: i64,
    /// The latest revision.
    pub rollout: RolloutState,
}

/// Who a stored certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CertificateKind {
    /// Uploaded by the user (`dubectl create secret tls`).
    User,
    /// Obtained from the ACME directory for `access.tls: auto`.
    Acme,
}

impl CertificateKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CertificateKind::User => "user",
            CertificateKind::Acme => "acme",
        }
    }

    pub(crate) fn parse(word: &str) -> Result<Self> {
        match word {
            "user" => Ok(CertificateKind::User),
            "acme" => Ok(CertificateKind::Acme),
            other => Err(Error::Internal(format!(
                "unknown certificate kind {other:?} in the store"
            ))),
        }
    }
}

/// A certificate, its key and what the certificate says, as stored.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoredCertificate {
    /// The user's secret name, or `acme:HOST`.
    pub name: String,
    pub kind: CertificateKind,
    pub cert_pem: String,
    pub key_pem: String,
    pub hosts: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix milliseconds (set by the store).
    pub created_at: i64,
    /// Unix milliseconds (set by the store).
    pub updated_at: i64,
}

/// Never prints the key.
impl std::fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("hosts", &self.hosts)
            .field("not_after", &self.not_after)
            .field("key_pem", &"REDACTED")
            .finish_non_exhaustive()
    }
}

/// A generic or docker-registry secret as stored: its names in clear, its
/// values sealed by the [`crate::vault::Vault`] (no key in the store).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoredSecret {
    pub name: String,
    pub kind: dubernetes_api::SecretType,
    /// A generic secret's keys.
    pub keys: Vec<String>,
    /// A docker-registry secret's registry host.
    pub docker_server: Option<String>,
    /// The values, sealed (see [`crate::vault::Vault::seal`]).
    pub sealed: String,
    /// Set by the store: increases on every write of the name.
    pub version: i64,
    /// Unix milliseconds (set by the store).
    pub created_at: i64,
    /// Unix milliseconds (set by the store).
    pub updated_at: i64,
}

/// Prints names only (the sealed bytes are not of use to a reader either).
impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("keys", &self.keys)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl StoredSecret {
    /// The associated data its values are sealed with.
    pub(crate) fn aad(name: &str, kind: dubernetes_api::SecretType) -> String {
        format!("{}/{name}", kind.as_str())
    }
}

/// Desired state, as the controller and the facade need it. Every method is
/// one transaction; a failed check writes nothing.
#[async_trait::async_trait]
pub(crate) trait Store: Send + Sync + std::fmt::Debug {
    /// Creates or updates a pod in one transaction: checks the generation the
    /// client read (`expected`, optimistic concurrency: [`Error::StaleGeneration`],
    /// or [`Error::NotFound`] when the pod is gone), the pod limit
    /// (`max_pods`, [`Error::Limit`]), the stored size ([`crate::MAX_STORED_SPEC_BYTES`])
    /// and the host's owner ([`Error::HostTaken`]), the TLS secret its
    /// `access.tls` names (exists, covers the host, not expired unless the pod
    /// used it so before: [`Error::Certificate`]), writes the pod (the
    /// generation goes up only when the spec changed), and records a revision
    /// when what the containers run changed. Nothing is written when a check fails.
    async fn upsert_checked(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)>;

    /// A pod joined with its latest revision.
    async fn get(&self, name: &str) -> Result<Option<StoredPod>>;

    /// Every pod, by name.
    async fn list(&self) -> Result<Vec<StoredPod>>;

    /// Deletes a pod and its revisions if it is at generation `expected` (when
    /// given), in one transaction; returns whether it existed.
    async fn delete_checked(&self, name: &str, expected: Option<i64>) -> Result<bool>;

    /// The revisions of a pod, oldest first (at most [`MAX_REVISIONS`] + 2).
    async fn revisions(&self, pod: &str) -> Result<Vec<Revision>>;

    /// Marks a progressing revision complete; false when it is not progressing.
    async fn complete_revision(&self, pod: &str, number: i64) -> Result<bool>;

    /// Notes a result on a revision (its `reason` and `message`, cut to
    /// [`MAX_EVENT_MESSAGE_BYTES`]) if its outcome is still `outcome`: a deploy
    /// hook's (see `controller/hooks.rs`). Returns whether it was.
    async fn note_revision(
        &self,
        pod: &str,
        number: i64,
        outcome: RolloutOutcome,
        reason: &str,
        message: &str,
    ) -> Result<bool>;

    /// Fails a progressing revision and, in the same transaction, rolls the
    /// pod's container template back to the last complete revision with another
    /// hash (keeping replicas, host and policies). Returns the revision rolled
    /// back to, or None when there is none (the pod stays on the failed one)
    /// or the revision was not progressing.
    async fn fail_and_roll_back(&self, pod: &str, failed: i64, reason: &str, message: &str)
    -> Result<Option<Revision>>;

    /// Appends an event (its message cut to [`MAX_EVENT_MESSAGE_BYTES`]);
    /// the log keeps about [`MAX_EVENTS`].
    async fn record_event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()>;

    /// The newest `limit` events (of `pod`, when given), oldest first.
    async fn events(&self, pod: Option<&str>, limit: i64) -> Result<Vec<Event>>;

    /// Events with an id above `after`, oldest first (at most `limit`).
    async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>>;

    /// The id of the newest event, 0 when there is none.
    async fn last_event_id(&self) -> Result<i64>;

    /// What the store knows about ownership.
    async fn ownership_facts(&self) -> Result<OwnershipFacts>;

    /// Records the start-up ownership decision in one transaction: the store
    /// id (only when it has none yet), the data dir it runs from, the new
    /// adoptions; and forgets adoptions of containers that no longer exist
    /// (`existing`: every container of the instance now).
    async fn record_ownership(
        &self,
        store_id: &str,
        data_dir: &str,
        adoptions: &[Adoption],
        existing: &HashSet<String>,
    ) -> Result<()>;

    /// The held adoptions of `pod` become managed (the pod was applied).
    async fn release_held(&self, pod: &str) -> Result<()>;

    /// Stores a certificate under its name, replacing one of the same name
    /// (keeping its `created_at`).
    async fn put_certificate(&self, cert: &StoredCertificate) -> Result<()>;

    /// Stores the user's TLS secret `cert` in one write transaction with the
    /// checks it must pass at that moment: [`Error::SecretTaken`] when a
    /// generic or docker-registry secret has the name; [`Error::SecretExists`] when a user
    /// secret of that name exists and `replace` is false; [`Error::Certificate`]
    /// (field `cert`) when a pod naming it serves a host it does not cover.
    /// Returns the pods that use it. Nothing is written when a check fails.
    async fn put_user_certificate(&self, cert: &StoredCertificate, replace: bool) -> Result<Vec<String>>;

    /// Deletes the user's TLS secret `name` in one write transaction with its
    /// check: [`Error::SecretInUse`] while a pod names it,
    /// [`Error::SecretNotFound`] when there is none.
    async fn delete_user_certificate(&self, name: &str) -> Result<()>;

    /// The certificate of this name.
    async fn certificate(&self, name: &str) -> Result<Option<StoredCertificate>>;

    /// Every certificate, by name.
    async fn certificates(&self) -> Result<Vec<StoredCertificate>>;

    /// Stores a generic or docker-registry secret in one transaction: refused
    /// with [`Error::SecretTaken`] when the name is taken by a secret of any
    /// type (unless `replace` and it is of this type); its version becomes
    /// higher than any before. Returns it as stored.
    async fn put_data_secret(&self, secret: &StoredSecret, replace: bool) -> Result<StoredSecret>;

    /// The generic or docker-registry secret of this name.
    async fn data_secret(&self, name: &str) -> Result<Option<StoredSecret>>;

    /// Every generic and docker-registry secret, by name.
    async fn data_secrets(&self) -> Result<Vec<StoredSecret>>;

    /// Deletes a generic or docker-registry secret in one transaction with
    /// the check that no pod uses it ([`Error::SecretUsed`]); returns whether it existed.
    async fn delete_data_secret(&self, name: &str) -> Result<bool>;

    /// The ACME account credentials (JSON) for this directory URL.
    async fn acme_account(&self, directory: &str) -> Result<Option<String>>;

    /// Stores the ACME account credentials for this directory URL (replacing any).
    async fn put_acme_account(&self, directory: &str, credentials: &str) -> Result<()>;

    /// Writes a consistent copy of the store to the file `target` (which
    /// must not exist) while the store is in use, created `0600` (it holds
    /// every env value), and checks the copy.
    async fn backup(&self, target: &Path) -> Result<()>;

    /// Closes the store; later calls fail.
    async fn close(&self);

    /// The PostgreSQL store behind this one, when several servers may share
    /// it (leadership, notifications, published views); None for SQLite.
    fn postgres(&self) -> Option<&postgres::PgStore> {
        None
    }
}

/// A generic or docker-registry secret as a pod's write sees it in its
/// transaction: type, keys and version.
pub(crate) struct SecretRow {
    /// Its type.
    pub kind: dubernetes_api::SecretType,
    /// Its keys (generic).
    pub keys: Vec<String>,
    /// Its version.
    pub version: i64,
}

/// The names of the generic and docker-registry secrets `spec` refers to.
pub(crate) fn secret_refs(spec: &PodSpec) -> Vec<&str> {
    let mut names: Vec<&str> = spec
        .env
        .values()
        .filter_map(|v| match v {
            crate::spec::EnvValue::Secret(r) => Some(r.secret.as_str()),
            _ => None,
        })
        .chain(spec.secret_files.iter().map(|f| f.secret.as_str()))
        .chain(spec.image_pull_secret.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Checks a pod's secret references against the secrets as the write's
/// transaction reads them (`rows`, by name; absent: no such secret), so a
/// secret deleted or replaced at the same time is seen: every generic secret
/// exists with the keys the env names, the pull secret is a docker-registry
/// one. Returns the versions the pod must record (`secret_versions`), which
/// differ from the spec's when a secret was replaced since the caller read it.
pub(crate) fn check_secret_refs(
    spec: &PodSpec,
    rows: &std::collections::BTreeMap<String, SecretRow>,
) -> Result<crate::spec::SecretVersions> {
    use dubernetes_api::SecretType;
    let invalid = |field: String, message: String| Error::InvalidSecret { field, message };
    let generic = |field: &str, name: &str| -> Result<&SecretRow> {
        rows.get(name).filter(|r| r.kind == SecretType::Generic).ok_or_else(|| {
            invalid(
                format!("{field}.secret"),
                format!(
                    "no generic secret {name:?}; create it first with `dubectl create secret generic {name} --from-literal=KEY=VALUE`"
                ),
            )
        })
    };
    let mut versions = crate::spec::SecretVersions::new();
    for (var, value) in &spec.env {
        if let crate::spec::EnvValue::Secret(r) = value {
            let field = format!("env.{var}");
            let row = generic(&field, &r.secret)?;
            if !row.keys.contains(&r.key) {
                return Err(invalid(
                    format!("{field}.key"),
                    format!(
                        "secret {:?} has no key {:?}; its keys are {}",
                        r.secret,
                        r.key,
                        row.keys.join(", ")
                    ),
                ));
            }
            versions.insert(r.secret.clone(), row.version);
        }
    }
    for (i, f) in spec.secret_files.iter().enumerate() {
        let row = generic(&format!("secret_files[{i}]"), &f.secret)?;
        versions.insert(f.secret.clone(), row.version);
    }
    if let Some(name) = &spec.image_pull_secret
        && !rows.get(name).is_some_and(|r| r.kind == SecretType::DockerRegistry)
    {
        return Err(invalid(
            "image_pull_secret".into(),
            format!(
                "no docker-registry secret {name:?}; create it first with `dubectl create secret docker-registry {name} --docker-server=S --docker-username=U --docker-password=P`"
            ),
        ));
    }
    Ok(versions)
}

/// The first route of `spec` (host and path) that another pod of `others`
/// already serves: [`Error::HostTaken`] naming that pod. Two pods may share a
/// host with different paths, never a host and a path.
pub(crate) fn route_clash<'a>(spec: &PodSpec, others: impl IntoIterator<Item = &'a PodSpec>) -> Result<()> {
    let hosts = spec.hosts();
    if hosts.is_empty() {
        return Ok(());
    }
    let path = spec.route_path();
    for other in others {
        if other.name == spec.name || other.route_path() != path {
            continue;
        }
        let theirs = other.hosts();
        if let Some(host) = hosts.iter().find(|h| theirs.contains(h)) {
            return Err(Error::HostTaken {
                host: (*host).to_string(),
                path: path.to_string(),
                owner: Some(other.name.clone()),
            });
        }
    }
    Ok(())
}

/// The first `expose` entry of `spec` whose listen port another pod of
/// `others` already listens on: [`Error::ListenTaken`] naming that pod. The
/// port alone counts (the ingress container listens on it, whatever the host IP).
pub(crate) fn listen_clash<'a>(spec: &PodSpec, others: impl IntoIterator<Item = &'a PodSpec>) -> Result<()> {
    let mine: Vec<(usize, u16)> = spec
        .expose
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((i, e.listen_addr().ok()?.port())))
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    for other in others {
        if other.name == spec.name {
            continue;
        }
        for (_, addr) in other.exposed() {
            if let Some((i, port)) = mine.iter().find(|(_, p)| *p == addr.port()) {
                return Err(Error::ListenTaken {
                    field: format!("expose[{i}].listen"),
                    port: *port,
                    owner: format!("pod {:?}", other.name),
                });
            }
        }
    }
    Ok(())
}

/// What the `host` column of a pod holds: its first host, and its path when
/// not `/` (`a.com/api`). Unique among pods because [`route_clash`] refuses
/// a pod that shares a host and a path with another; the column's UNIQUE
/// constraint stays as a last guard.
pub(crate) fn route_key(spec: &PodSpec) -> Option<String> {
    let host = spec.host()?;
    Some(match spec.route_path() {
        "/" => host.to_string(),
        path => format!("{host}{path}"),
    })
}

/// A spec as the store keeps it (JSON), refused when larger than
/// [`crate::MAX_STORED_SPEC_BYTES`]: every way in (YAML, JSON, the library)
/// ends in a store, so the stored size is bounded whatever the caller checked.
pub(crate) fn encode_spec(spec: &PodSpec) -> Result<String> {
    let json = serde_json::to_string(spec).map_err(|e| Error::Internal(format!("cannot encode spec: {e}")))?;
    if json.len() > crate::spec::MAX_STORED_SPEC_BYTES {
        return Err(Error::Spec(crate::spec::SpecError::SpecTooLarge {
            document: 1,
            line: None,
            size: json.len(),
            max: crate::spec::MAX_STORED_SPEC_BYTES,
            aliases: false,
        }));
    }
    Ok(json)
}

/// `message`, cut to [`MAX_EVENT_MESSAGE_BYTES`] at a character boundary.
pub(crate) fn cut_message(message: &str) -> std::borrow::Cow<'_, str> {
    const MARK: &str = " [cut]";
    if message.len() <= MAX_EVENT_MESSAGE_BYTES {
        return message.into();
    }
    let mut end = MAX_EVENT_MESSAGE_BYTES - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &message[..end]).into()
}

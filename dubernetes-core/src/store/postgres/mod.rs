//! The PostgreSQL store: what several servers of one instance share.
//!
//! Same tables and semantics as the SQLite store (the [`contract`](super::contract)
//! tests run on both). Where SQLite takes its write lock with
//! `BEGIN IMMEDIATE`, every write transaction here starts with
//! `pg_advisory_xact_lock(WRITES)`: writers of the store queue behind each
//! other (readers do not wait), so the checks of an apply (generation, pod
//! limit, host owner) and its write cannot be split by a writer on another
//! server, with no serialization failure to retry. The lock ends with the
//! transaction, even when the connection dies.
//!
//! Every write also sends a `NOTIFY` on [`CHANNEL`] inside its transaction
//! (delivered at commit, never for a rolled-back write): `spec:POD` when a
//! pod's desired state changed, `event:POD` for a new event, `view:POD` when
//! the leader published a new view. Each server LISTENs (see
//! [`crate::leader`]) to wake its controller and its change feed.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    ApplyOutcome, CertificateKind, Event, MAX_EVENTS, OwnershipFacts, Revision, RolloutOutcome, RolloutState, Store,
    StoredCertificate, StoredPod, cut_message, encode_spec, now_ms,
};
use crate::error::{Error, Result};
use crate::ownership::Adoption;
use crate::spec::PodSpec;

mod revisions;

use revisions::{decode_revision, note_revision, record_revision};

/// The channel every write of the store notifies.
pub(crate) const CHANNEL: &str = "dubernetes_changes";

/// The advisory lock every write transaction takes (see the module docs).
const WRITES: i64 = 0x6475_6200_0000_0001;

/// The advisory lock of leadership (see [`crate::leader`]).
pub(crate) const LEADER: i64 = 0x6475_6200_0000_0002;

/// The advisory lock a server holds while it makes the instance's shared
/// engine objects (see [`PgStore::one_at_a_time`]).
const SHARED_OBJECTS: i64 = 0x6475_6200_0000_0003;

/// Longest wait for [`SHARED_OBJECTS`]: another server holds it only while
/// it makes the network (seconds at most).
const SHARED_OBJECTS_WAIT: Duration = Duration::from_secs(120);

/// How long a connection may take to be handed out before the API answers
/// 503 `store_unavailable` (the database is down or every connection busy).
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest statement; a stuck one fails rather than holding an API request.
const STATEMENT_TIMEOUT: &str = "10s";

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
    options: PgConnectOptions,
}

/// Parses a `postgres://` URL; a malformed one names the flag.
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map(|o| {
            o.options([("statement_timeout", STATEMENT_TIMEOUT)])
                .application_name("dubernetes")
        })
        .map_err(|e| Error::InvalidInput {
            field: "--store".into(),
            message: format!("not a usable postgres:// URL: {e}"),
        })
}

impl PgStore {
    /// Connects to the database at `url` and migrates it. Migrations run
    /// under sqlx's `pg_advisory_lock`, so servers starting at once migrate once.
    pub(crate) async fn open(url: &str) -> Result<PgStore> {
        let options = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool, options })
    }

    /// The connection options (for the leader's and the listener's own connections).
    pub(crate) fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// The pool (for the listener).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` holding the shared-objects lock: servers of one store
    /// starting at once make the instance's network one at a time, so the
    /// later ones find it instead of making a second of the same name
    /// (Docker 20.10 allows that, and every start then fails as
    /// "ambiguous"). The lock is a transaction's, so it ends with the
    /// transaction or the session (a server that dies holding it frees it);
    /// it is polled, since a blocking wait would count against the statement
    /// timeout.
    pub(crate) async fn one_at_a_time<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let mut tx = self.pool.begin().await?;
        let deadline = tokio::time::Instant::now() + SHARED_OBJECTS_WAIT;
        loop {
            let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SHARED_OBJECTS)
                .fetch_one(&mut *tx)
                .await?;
            if held {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "waiting {}s for another server of the store to make the instance's network",
                    SHARED_OBJECTS_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let result = work.await;
        tx.commit().await?;
        result
    }

    /// A write transaction: holds the store's write lock until it ends.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITES)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Publishes the leader's view of a pod (JSON) for the standbys.
    pub(crate) async fn publish_view(&self, pod: &str, view: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO pod_views (name, view, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET view = excluded.view, updated_at = excluded.updated_at",
        )
        .bind(pod)
        .bind(view)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, "view", pod).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the published view of a deleted pod.
    pub(crate) async fn forget_view(&self, pod: &str) -> Result<()> {
        sqlx::query("DELETE FROM pod_views WHERE name = $1")
            .bind(pod)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The leader's last published view of a pod (JSON), if any.
    pub(crate) async fn view(&self, pod: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT view FROM pod_views WHERE name = $1")
            .bind(pod)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every published view, as (pod, JSON).
    pub(crate) async fn views(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, view FROM pod_views")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("view")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Error::from)
    }
}

/// Tells every server a certificate changed: the leader re-syncs its
/// ingress (a secret replaced through a standby is served at once).
async fn certificate_changed(pool: &PgPool, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("certificate:{name}"))
        .execute(pool)
        .await?;
    Ok(())
}

/// `NOTIFY` inside `tx`: delivered to every listener when it commits.
async fn notify(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, what: &str, pod: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{what}:{pod}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

crate::store::sql::sql_store!(PgStore, sqlx::Postgres, sqlx::postgres::PgRow, {
    /// A PostgreSQL store is backed up with PostgreSQL's own tools.
    async fn backup(&self, _target: &Path) -> Result<()> {
        Err(Error::InvalidInput {
            field: "backup".into(),
            message: "a PostgreSQL store is backed up with `pg_dump` (or your database's backups), not by the server"
                .into(),
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn postgres(&self) -> Option<&PgStore> {
        Some(self)
    }
});

// The store contract and what needs a real database: tests/postgres/ (an
// integration test, so the lib tests need no PostgreSQL).
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_malformed_url_names_the_flag() {
        let err = PgStore::open("postgres://[::1:5432/x").await.expect_err("malformed");
        assert!(
            matches!(err, Error::InvalidInput { ref field, .. } if field == "--store"),
            "{err:?}"
        );
    }
}

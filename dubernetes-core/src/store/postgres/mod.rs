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
//! [`crate::shared`]) to wake its controller and its change feed.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    ApplyOutcome, CertificateKind, Event, MAX_EVENTS, OwnershipFacts, Revision, RolloutState, Store, StoredCertificate,
    StoredPod, cut_message, encode_spec, now_ms,
};
use crate::error::{Error, Result};
use crate::ownership::Adoption;
use crate::spec::PodSpec;

mod revisions;

use revisions::{decode_revision, record_revision};

/// The channel every write of the store notifies.
pub(crate) const CHANNEL: &str = "dubernetes_changes";

/// The advisory lock every write transaction takes (see the module docs).
const WRITES: i64 = 0x6475_6200_0000_0001;

/// The advisory lock of leadership (see [`crate::shared`]).
pub(crate) const LEADER: i64 = 0x6475_6200_0000_0002;

/// How long a connection may take to be handed out before the API answers
/// 503 `store_unavailable` (the database is down or every connection busy).
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest statement; a stuck one fails rather than holding an API request.
const STATEMENT_TIMEOUT: &str = "10s";

/// A pod joined with its latest revision.
macro_rules! pod_select {
    () => {
        "SELECT p.spec, p.generation, p.created_at, p.updated_at,
        r.number AS rev_number, r.outcome AS rev_outcome, r.reason AS rev_reason, r.message AS rev_message
    FROM pods p LEFT JOIN revisions r
        ON r.pod = p.name AND r.number = (SELECT MAX(number) FROM revisions WHERE pod = p.name)"
    };
}

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

    /// A write transaction: holds the store's write lock until it ends.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITES)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn upsert_tx(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)> {
        let json = encode_spec(spec)?;
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT generation FROM pods WHERE name = $1")
            .bind(&spec.name)
            .fetch_optional(&mut *tx)
            .await?;
        match (expected, current) {
            (Some(_), None) => return Err(Error::NotFound(spec.name.clone())),
            (Some(expected), Some(current)) if expected != current => {
                return Err(Error::StaleGeneration {
                    pod: spec.name.clone(),
                    expected,
                    current,
                });
            }
            _ => {}
        }
        if current.is_none() {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pods")
                .fetch_one(&mut *tx)
                .await?;
            if count >= i64::from(max_pods) {
                return Err(Error::Limit {
                    field: "name".into(),
                    message: format!("this instance already has the maximum of {max_pods} pods; delete one first"),
                });
            }
        }
        if let Some(host) = spec.host() {
            let owner: Option<String> = sqlx::query_scalar("SELECT name FROM pods WHERE host = $1 AND name != $2")
                .bind(host)
                .bind(&spec.name)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(owner) = owner {
                return Err(Error::HostTaken {
                    host: host.to_string(),
                    owner: Some(owner),
                });
            }
        }
        let row = sqlx::query(
            "INSERT INTO pods (name, spec, host, generation, created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $4)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, host = excluded.host,
                 generation = pods.generation + 1, updated_at = excluded.updated_at
             WHERE pods.spec != excluded.spec
             RETURNING generation",
        )
        .bind(&spec.name)
        .bind(&json)
        .bind(spec.host())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match row {
            None => ApplyOutcome::Unchanged,
            Some(row) if row.try_get::<i64, _>("generation")? == 1 => ApplyOutcome::Created,
            Some(_) => ApplyOutcome::Configured,
        };
        if outcome != ApplyOutcome::Unchanged {
            record_revision(&mut tx, spec, &json, now, None).await?;
            notify(&mut tx, "spec", &spec.name).await?;
        }
        tx.commit().await?;
        let stored = self
            .get(&spec.name)
            .await?
            .ok_or_else(|| Error::NotFound(spec.name.clone()))?;
        Ok((stored, outcome))
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

/// `NOTIFY` inside `tx`: delivered to every listener when it commits.
async fn notify(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, what: &str, pod: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(format!("{what}:{pod}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn upsert_checked(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)> {
        self.upsert_tx(spec, expected, max_pods).await.map_err(|e| match e {
            Error::Store(sqlx::Error::Database(d)) if d.is_unique_violation() => Error::HostTaken {
                host: spec.host().unwrap_or_default().to_string(),
                owner: None,
            },
            other => other,
        })
    }

    async fn revisions(&self, pod: &str) -> Result<Vec<Revision>> {
        let rows = sqlx::query(
            "SELECT number, hash, spec, created_at, outcome, reason, message, finished_at
             FROM revisions WHERE pod = $1 ORDER BY number",
        )
        .bind(pod)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_revision).collect()
    }

    async fn complete_revision(&self, pod: &str, number: i64) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE revisions SET outcome = 'complete', finished_at = $3
             WHERE pod = $1 AND number = $2 AND outcome = 'progressing'",
        )
        .bind(pod)
        .bind(number)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            notify(&mut tx, "event", pod).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn fail_and_roll_back(
        &self,
        pod: &str,
        failed: i64,
        reason: &str,
        message: &str,
    ) -> Result<Option<Revision>> {
        let message = cut_message(message);
        let message = message.as_ref();
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let marked = sqlx::query(
            "UPDATE revisions SET outcome = 'failed', reason = $3, message = $4, finished_at = $5
             WHERE pod = $1 AND number = $2 AND outcome = 'progressing'",
        )
        .bind(pod)
        .bind(failed)
        .bind(reason)
        .bind(message)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(None);
        }
        notify(&mut tx, "event", pod).await?;
        let failed_hash: Option<String> =
            sqlx::query_scalar("SELECT hash FROM revisions WHERE pod = $1 AND number = $2")
                .bind(pod)
                .bind(failed)
                .fetch_optional(&mut *tx)
                .await?;
        let good = sqlx::query(
            "SELECT number, hash, spec, created_at, outcome, reason, message, finished_at FROM revisions
             WHERE pod = $1 AND outcome = 'complete' AND hash != $2 ORDER BY number DESC LIMIT 1",
        )
        .bind(pod)
        .bind(failed_hash.unwrap_or_default())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(good) = good.as_ref().map(decode_revision).transpose()? else {
            tx.commit().await?;
            return Ok(None);
        };
        let current: Option<String> = sqlx::query_scalar("SELECT spec FROM pods WHERE name = $1")
            .bind(pod)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(current) = current else {
            tx.commit().await?;
            return Ok(None);
        };
        let current: PodSpec =
            serde_json::from_str(&current).map_err(|e| Error::Store(sqlx::Error::Decode(Box::new(e))))?;
        let rolled = current.with_template_of(&good.spec);
        let json = serde_json::to_string(&rolled).map_err(|e| Error::Internal(format!("cannot encode spec: {e}")))?;
        sqlx::query("UPDATE pods SET spec = $2, generation = generation + 1, updated_at = $3 WHERE name = $1")
            .bind(pod)
            .bind(&json)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let note = format!("automatic rollback to revision {}: {reason}: {message}", good.number);
        record_revision(&mut tx, &rolled, &json, now, Some(("Rollback", &note))).await?;
        notify(&mut tx, "spec", pod).await?;
        tx.commit().await?;
        Ok(Some(good))
    }

    async fn get(&self, name: &str) -> Result<Option<StoredPod>> {
        let row = sqlx::query(concat!(pod_select!(), " WHERE p.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    async fn list(&self) -> Result<Vec<StoredPod>> {
        let rows = sqlx::query(concat!(pod_select!(), " ORDER BY p.name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn delete_checked(&self, name: &str, expected: Option<i64>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if let Some(expected) = expected {
            let current: Option<i64> = sqlx::query_scalar("SELECT generation FROM pods WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            match current {
                None => return Ok(false),
                Some(current) if current != expected => {
                    return Err(Error::StaleGeneration {
                        pod: name.to_string(),
                        expected,
                        current,
                    });
                }
                Some(_) => {}
            }
        }
        let done = sqlx::query("DELETE FROM pods WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM revisions WHERE pod = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            notify(&mut tx, "spec", name).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()> {
        let message = cut_message(message);
        let mut tx = self.pool.begin().await?;
        let id: i64 =
            sqlx::query("INSERT INTO events (pod, at, kind, reason, message) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                .bind(pod)
                .bind(now_ms())
                .bind(kind)
                .bind(reason)
                .bind(message.as_ref())
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?;
        notify(&mut tx, "event", pod).await?;
        tx.commit().await?;
        if id % 100 == 0 {
            sqlx::query("DELETE FROM events WHERE id <= $1")
                .bind(id - MAX_EVENTS)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn events(&self, pod: Option<&str>, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT id, pod, at, kind, reason, message FROM
               (SELECT * FROM events WHERE $1::TEXT IS NULL OR pod = $1 ORDER BY id DESC LIMIT $2) AS newest
             ORDER BY id",
        )
        .bind(pod)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>> {
        let rows =
            sqlx::query("SELECT id, pod, at, kind, reason, message FROM events WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn last_event_id(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    async fn ownership_facts(&self) -> Result<OwnershipFacts> {
        let id: Option<String> = sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'store_id'")
            .fetch_optional(&self.pool)
            .await?;
        let pods: Vec<String> = sqlx::query_scalar("SELECT name FROM pods")
            .fetch_all(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT id, pod, held FROM adopted_containers")
            .fetch_all(&self.pool)
            .await?;
        let adopted = rows
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("pod")?, r.try_get::<i64, _>("held")? != 0)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(OwnershipFacts {
            id,
            pods: pods.into_iter().collect(),
            adopted,
        })
    }

    async fn record_ownership(
        &self,
        store_id: &str,
        data_dir: &str,
        adoptions: &[Adoption],
        existing: &HashSet<String>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO store_meta (key, value) VALUES ('store_id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(store_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO store_meta (key, value) VALUES ('data_dir', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(data_dir)
        .execute(&mut *tx)
        .await?;
        let known: Vec<String> = sqlx::query_scalar("SELECT id FROM adopted_containers")
            .fetch_all(&mut *tx)
            .await?;
        for gone in known.iter().filter(|id| !existing.contains(*id)) {
            sqlx::query("DELETE FROM adopted_containers WHERE id = $1")
                .bind(gone)
                .execute(&mut *tx)
                .await?;
        }
        for a in adoptions {
            sqlx::query(
                "INSERT INTO adopted_containers (id, pod, previous_store, held, adopted_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET held = excluded.held",
            )
            .bind(&a.id)
            .bind(&a.pod)
            .bind(&a.previous_store)
            .bind(i64::from(a.held))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release_held(&self, pod: &str) -> Result<()> {
        sqlx::query("UPDATE adopted_containers SET held = 0 WHERE pod = $1 AND held = 1")
            .bind(pod)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A PostgreSQL store is backed up with PostgreSQL's own tools.
    async fn backup(&self, _target: &Path) -> Result<()> {
        Err(Error::InvalidInput {
            field: "backup".into(),
            message: "a PostgreSQL store is backed up with `pg_dump` (or your database's backups), not by the server"
                .into(),
        })
    }

    async fn put_certificate(&self, cert: &StoredCertificate) -> Result<()> {
        let now = now_ms();
        let hosts = serde_json::to_string(&cert.hosts).map_err(|e| Error::Internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO certificates (name, kind, cert_pem, key_pem, hosts, issuer, not_before, not_after, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, cert_pem = excluded.cert_pem,
               key_pem = excluded.key_pem, hosts = excluded.hosts, issuer = excluded.issuer,
               not_before = excluded.not_before, not_after = excluded.not_after, updated_at = excluded.updated_at",
        )
        .bind(&cert.name)
        .bind(cert.kind.as_str())
        .bind(&cert.cert_pem)
        .bind(&cert.key_pem)
        .bind(hosts)
        .bind(&cert.issuer)
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn certificate(&self, name: &str) -> Result<Option<StoredCertificate>> {
        let row = sqlx::query("SELECT * FROM certificates WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    async fn certificates(&self) -> Result<Vec<StoredCertificate>> {
        let rows = sqlx::query("SELECT * FROM certificates ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    async fn delete_certificate(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM certificates WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT credentials FROM acme_accounts WHERE directory = $1")
                .bind(directory)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn put_acme_account(&self, directory: &str, credentials: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_accounts (directory, credentials, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (directory) DO UPDATE SET credentials = excluded.credentials",
        )
        .bind(directory)
        .bind(credentials)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn postgres(&self) -> Option<&PgStore> {
        Some(self)
    }
}

fn decode(row: &sqlx::postgres::PgRow) -> Result<StoredPod> {
    let spec: String = row.try_get("spec")?;
    let spec: PodSpec = serde_json::from_str(&spec).map_err(|e| Error::Store(sqlx::Error::Decode(Box::new(e))))?;
    Ok(StoredPod {
        spec,
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        rollout: RolloutState {
            number: row.try_get::<Option<i64>, _>("rev_number")?.unwrap_or(0),
            outcome: row
                .try_get::<Option<String>, _>("rev_outcome")?
                .map(super::sqlite::parse_word)
                .transpose()?,
            reason: row.try_get("rev_reason")?,
            message: row.try_get("rev_message")?,
        },
    })
}

fn event_from_row(r: &sqlx::postgres::PgRow) -> Result<Event> {
    Ok(Event {
        id: r.try_get("id")?,
        pod: r.try_get("pod")?,
        at: r.try_get("at")?,
        kind: super::sqlite::parse_word(r.try_get::<String, _>("kind")?)?,
        reason: r.try_get("reason")?,
        message: r.try_get("message")?,
    })
}

#[cfg(test)]
mod tests;

fn certificate_from_row(r: &sqlx::postgres::PgRow) -> Result<StoredCertificate> {
    let hosts: String = r.try_get("hosts")?;
    Ok(StoredCertificate {
        name: r.try_get("name")?,
        kind: CertificateKind::parse(&r.try_get::<String, _>("kind")?)?,
        cert_pem: r.try_get("cert_pem")?,
        key_pem: r.try_get("key_pem")?,
        hosts: serde_json::from_str(&hosts).map_err(|e| Error::Internal(format!("stored hosts: {e}")))?,
        issuer: r.try_get("issuer")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

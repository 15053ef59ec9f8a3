//! Desired state in SQLite: pods (with a generation that increases on every
//! change) and a bounded log of events. Nothing the engine knows better (which
//! containers run) is stored here.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Error, Result};
use crate::spec::PodSpec;

/// How many events are kept per instance; older ones are pruned.
const MAX_EVENTS: i64 = 5000;

/// A pod as stored: its spec and bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    /// The pod did not exist.
    Created,
    /// The pod existed with another spec.
    Configured,
    /// The pod existed with the same spec; nothing changed.
    Unchanged,
}

impl ApplyOutcome {
    /// The word kubectl prints: `created`, `configured`, `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Increasing id.
    pub id: i64,
    /// The pod it is about.
    pub pod: String,
    /// Unix milliseconds.
    pub at: i64,
    /// `Normal` or `Warning`.
    pub kind: String,
    /// A short CamelCase reason such as `Created` or `Failed`.
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if missing) `dir/dubernetes.db` and migrates it.
    pub(crate) async fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Store(sqlx::Error::Configuration(
                format!("cannot create data dir {}: {e}", dir.display()).into(),
            ))
        })?;
        let options = SqliteConnectOptions::new()
            .filename(dir.join("dubernetes.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Self::migrate(pool).await
    }

    /// A throwaway store in memory (one connection, so every query sees the same database).
    pub(crate) async fn in_memory() -> Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrate(pool).await
    }

    async fn migrate(pool: SqlitePool) -> Result<Store> {
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Creates or updates a pod in one statement (atomic, no read-modify-write race).
    pub(crate) async fn upsert(&self, spec: &PodSpec) -> Result<(StoredPod, ApplyOutcome)> {
        let json = serde_json::to_string(spec).map_err(|e| Error::Conflict(format!("cannot encode spec: {e}")))?;
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO pods (name, spec, generation, created_at, updated_at) VALUES (?1, ?2, 1, ?3, ?3)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, generation = pods.generation + 1,
                 updated_at = excluded.updated_at
             WHERE pods.spec != excluded.spec
             RETURNING generation",
        )
        .bind(&spec.name)
        .bind(&json)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let outcome = match row {
            None => ApplyOutcome::Unchanged,
            Some(row) if row.try_get::<i64, _>("generation")? == 1 => ApplyOutcome::Created,
            Some(_) => ApplyOutcome::Configured,
        };
        let stored = self
            .get(&spec.name)
            .await?
            .ok_or_else(|| Error::NotFound(spec.name.clone()))?;
        Ok((stored, outcome))
    }

    pub(crate) async fn get(&self, name: &str) -> Result<Option<StoredPod>> {
        let row = sqlx::query("SELECT spec, generation, created_at, updated_at FROM pods WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    pub(crate) async fn list(&self) -> Result<Vec<StoredPod>> {
        let rows = sqlx::query("SELECT spec, generation, created_at, updated_at FROM pods ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    pub(crate) async fn count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM pods")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Deletes a pod; returns whether it existed.
    pub(crate) async fn delete(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM pods WHERE name = ?1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn record_event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()> {
        let id: i64 =
            sqlx::query("INSERT INTO events (pod, at, kind, reason, message) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id")
                .bind(pod)
                .bind(now_ms())
                .bind(kind)
                .bind(reason)
                .bind(message)
                .fetch_one(&self.pool)
                .await?
                .try_get("id")?;
        if id % 100 == 0 {
            sqlx::query("DELETE FROM events WHERE id <= ?1")
                .bind(id - MAX_EVENTS)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn events(&self, pod: Option<&str>, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT id, pod, at, kind, reason, message FROM
               (SELECT * FROM events WHERE ?1 IS NULL OR pod = ?1 ORDER BY id DESC LIMIT ?2)
             ORDER BY id",
        )
        .bind(pod)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    id: r.try_get("id")?,
                    pod: r.try_get("pod")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    reason: r.try_get("reason")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<StoredPod> {
    let spec: String = row.try_get("spec")?;
    let spec: PodSpec = serde_json::from_str(&spec).map_err(|e| Error::Store(sqlx::Error::Decode(Box::new(e))))?;
    Ok(StoredPod {
        spec,
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upsert_reports_created_configured_unchanged_and_bumps_generation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let spec = PodSpec::new("web", "img:1").with_replicas(2);
        let (pod, outcome) = store.upsert(&spec).await.expect("create");
        assert_eq!((pod.generation, outcome), (1, ApplyOutcome::Created));
        let (pod, outcome) = store.upsert(&spec).await.expect("same");
        assert_eq!((pod.generation, outcome), (1, ApplyOutcome::Unchanged));
        let (pod, outcome) = store.upsert(&spec.clone().with_replicas(3)).await.expect("change");
        assert_eq!((pod.generation, outcome), (2, ApplyOutcome::Configured));
        assert_eq!(pod.spec.replicas, 3);
        drop(store);
        // A real file: reopening sees the same state.
        let store = Store::open(dir.path()).await.expect("reopen");
        assert_eq!(store.list().await.expect("list").len(), 1);
        assert!(store.delete("web").await.expect("delete"));
        assert!(!store.delete("web").await.expect("delete again"));
        assert_eq!(store.get("web").await.expect("get"), None);
    }

    #[tokio::test]
    async fn events_are_listed_per_pod_in_order() {
        let store = Store::in_memory().await.expect("open");
        store
            .record_event("a", "Normal", "Created", "one")
            .await
            .expect("event");
        store
            .record_event("b", "Normal", "Created", "two")
            .await
            .expect("event");
        store
            .record_event("a", "Warning", "Failed", "three")
            .await
            .expect("event");
        let events = store.events(Some("a"), 10).await.expect("events");
        let messages: Vec<_> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["one", "three"]);
        assert_eq!(store.events(None, 2).await.expect("events").len(), 2);
    }

    #[tokio::test]
    async fn a_corrupt_database_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("dubernetes.db"),
            b"this is not a sqlite database at all, not even close....",
        )
        .expect("write");
        assert!(Store::open(dir.path()).await.is_err());
        let content = std::fs::read(dir.path().join("dubernetes.db")).expect("read");
        assert!(content.starts_with(b"this is not"));
    }
}

//! The SQLite store: one file in the data dir, WAL with `synchronous=FULL`,
//! a busy timeout, `PRAGMA quick_check` on open, files `0600`. Every write
//! transaction is `BEGIN IMMEDIATE`: it takes the write lock before its checks
//! read, so no other writer slips in between check and write. This is the
//! only module that speaks SQLite's dialect (`BEGIN IMMEDIATE`, `PRAGMA`,
//! `VACUUM INTO`); its queries use `$n` placeholders like PostgreSQL's.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{
    ApplyOutcome, Event, MAX_EVENTS, MAX_REVISIONS, OwnershipFacts, Revision, RolloutState, Store, StoredPod,
    cut_message, encode_spec, now_ms,
};
use crate::error::{Error, Result};
use crate::ownership::Adoption;
use crate::spec::PodSpec;

/// The database file in the data dir.
pub const DB_FILE: &str = "dubernetes.db";

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        // Writers wait for each other (every write transaction is IMMEDIATE,
        // so waiting always helps) instead of failing with "database is locked".
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
}

/// Writes a consistent copy of the store in `data_dir` to `target` while the
/// server may be running (`VACUUM INTO` reads one snapshot), then checks the
/// copy. `target` must not exist. Opens the file without migrating it: a
/// backup never changes the store it copies.
pub async fn backup(data_dir: &Path, target: &Path) -> Result<()> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(Error::NotFound(path.display().to_string()));
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(&path).create_if_missing(false))
        .await
        .map_err(|e| Error::Corrupt {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
    let store = SqliteStore { pool };
    let result = store.backup(target).await;
    store.close().await;
    result
}

/// A pod joined with its latest revision.
macro_rules! pod_select {
    () => {
        "SELECT p.spec, p.generation, p.created_at, p.updated_at,
        r.number AS rev_number, r.outcome AS rev_outcome, r.reason AS rev_reason, r.message AS rev_message
    FROM pods p LEFT JOIN revisions r
        ON r.pod = p.name AND r.number = (SELECT MAX(number) FROM revisions WHERE pod = p.name)"
    };
}

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) `dir/dubernetes.db`, checks and migrates it.
    ///
    /// Durability: WAL with `synchronous=FULL`, so a commit is on disk (WAL
    /// fsynced) before the API acknowledges it, and survives a power cut, not
    /// only a crash. An existing file that SQLite cannot open, or that fails
    /// `PRAGMA quick_check`, is [`Error::Corrupt`] and is never replaced.
    pub(crate) async fn open(dir: &Path) -> Result<SqliteStore> {
        crate::data_dir::create(dir)?;
        let path = dir.join(DB_FILE);
        let existed = path.exists();
        // Created 0600 before SQLite opens it: its WAL and -shm files get its mode.
        crate::data_dir::private_db_files(dir)?;
        let corrupt = |detail: String| Error::Corrupt {
            path: path.display().to_string(),
            detail,
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(connect_options(&path).create_if_missing(!existed))
            .await
            .map_err(|e| corrupt(e.to_string()))?;
        let verdict: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&pool)
            .await
            .map_err(|e| corrupt(e.to_string()))?;
        if verdict != ["ok"] {
            pool.close().await;
            return Err(corrupt(verdict.join("; ")));
        }
        Self::migrate(pool).await
    }

    /// A throwaway store in memory (one connection, so every query sees the same database).
    pub(crate) async fn in_memory() -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrate(pool).await
    }

    async fn migrate(pool: SqlitePool) -> Result<SqliteStore> {
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// [`Store::upsert_checked`] in one `BEGIN IMMEDIATE` transaction.
    async fn upsert_tx(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)> {
        let json = encode_spec(spec)?;
        let now = now_ms();
        // IMMEDIATE takes the write lock now: the checks below read the state
        // the write will change, and no other writer can slip in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        }
        tx.commit().await?;
        let stored = self
            .get(&spec.name)
            .await?
            .ok_or_else(|| Error::NotFound(spec.name.clone()))?;
        Ok((stored, outcome))
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn upsert_checked(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)> {
        self.upsert_tx(spec, expected, max_pods).await.map_err(|e| match e {
            // The host check above runs inside the transaction; the UNIQUE
            // index is the last word should anything slip past it.
            Error::Store(sqlx::Error::Database(d)) if d.is_unique_violation() => Error::HostTaken {
                host: spec.host().unwrap_or_default().to_string(),
                owner: None,
            },
            other => other,
        })
    }

    /// The revisions of a pod, oldest first.
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

    /// Marks a progressing revision complete.
    async fn complete_revision(&self, pod: &str, number: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE revisions SET outcome = 'complete', finished_at = $3
             WHERE pod = $1 AND number = $2 AND outcome = 'progressing'",
        )
        .bind(pod)
        .bind(number)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Fails a progressing revision and, in the same transaction, rolls the
    /// pod's container template back to the last complete revision with another
    /// hash (keeping replicas, host and policies). Returns the revision rolled
    /// back to, or None when there is none (the pod stays on the failed one).
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        let failed_hash: Option<String> = sqlx::query("SELECT hash FROM revisions WHERE pod = $1 AND number = $2")
            .bind(pod)
            .bind(failed)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("hash"))
            .transpose()?;
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
        let current: Option<String> = sqlx::query("SELECT spec FROM pods WHERE name = $1")
            .bind(pod)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("spec"))
            .transpose()?;
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

    /// Deletes a pod and its revisions if it is at generation `expected` (when
    /// given), in one transaction; returns whether it existed.
    async fn delete_checked(&self, name: &str, expected: Option<i64>) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()> {
        let message = cut_message(message);
        let id: i64 =
            sqlx::query("INSERT INTO events (pod, at, kind, reason, message) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                .bind(pod)
                .bind(now_ms())
                .bind(kind)
                .bind(reason)
                .bind(message.as_ref())
                .fetch_one(&self.pool)
                .await?
                .try_get("id")?;
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
               (SELECT * FROM events WHERE $1 IS NULL OR pod = $1 ORDER BY id DESC LIMIT $2)
             ORDER BY id",
        )
        .bind(pod)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Events with an id above `after`, oldest first (at most `limit`).
    async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>> {
        let rows =
            sqlx::query("SELECT id, pod, at, kind, reason, message FROM events WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The id of the newest event, 0 when there is none.
    async fn last_event_id(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query("SELECT MAX(id) AS id FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get("id")?;
        Ok(id.unwrap_or(0))
    }

    /// What the store knows about ownership: its id (None: a new store, or
    /// one written by a version before store ids), its pods, and the
    /// containers it adopted, as (id, pod, held).
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

    /// Records the start-up ownership decision in one transaction: the store
    /// id (when new), the data dir it runs from, the new adoptions; and forgets
    /// adoptions of containers that no longer exist (`existing`: every
    /// container of the instance now).
    async fn record_ownership(
        &self,
        store_id: &str,
        data_dir: &str,
        adoptions: &[Adoption],
        existing: &HashSet<String>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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

    /// The held adoptions of `pod` become managed (the pod was applied).
    async fn release_held(&self, pod: &str) -> Result<()> {
        sqlx::query("UPDATE adopted_containers SET held = 0 WHERE pod = $1 AND held = 1")
            .bind(pod)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn backup(&self, target: &Path) -> Result<()> {
        if target.exists() {
            return Err(Error::AlreadyExists {
                path: target.to_path_buf(),
            });
        }
        let target_text = target.to_str().ok_or_else(|| Error::InvalidInput {
            field: "backup file".into(),
            message: format!("{} is not a UTF-8 path; pick another name", target.display()),
        })?;
        // The copy holds every env value: make it private before SQLite writes it
        // (VACUUM INTO accepts an empty file).
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(target)
                .map_err(|source| Error::Io {
                    context: format!("creating {}", target.display()),
                    source,
                })?;
        }
        sqlx::query("VACUUM INTO $1")
            .bind(target_text)
            .execute(&self.pool)
            .await?;
        std::fs::File::open(target)
            .and_then(|f| f.sync_all())
            .map_err(|source| Error::Io {
                context: format!("syncing {}", target.display()),
                source,
            })?;
        let copy = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(target)
                    .read_only(true)
                    .create_if_missing(false),
            )
            .await?;
        let mut verdict: Vec<String> = sqlx::query_scalar("PRAGMA quick_check").fetch_all(&copy).await?;
        // An empty file passes quick_check: a copy without the pods table
        // (say, of an in-memory store, which VACUUM INTO cannot copy) is no backup.
        let tables: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'pods'")
                .fetch_one(&copy)
                .await?;
        copy.close().await;
        if tables != 1 {
            verdict.push("the copy holds no pods table".to_string());
        }
        if verdict != ["ok"] {
            // Ours (created above): a bad copy must not pass for a backup later.
            let _ = std::fs::remove_file(target);
            return Err(Error::Corrupt {
                path: target.display().to_string(),
                detail: verdict.join("; "),
            });
        }
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Appends a revision for `spec` (the next number) and supersedes any still progressing.
async fn record_revision(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    spec: &PodSpec,
    json: &str,
    now: i64,
    note: Option<(&str, &str)>,
) -> Result<()> {
    let hash = spec.revision_hash();
    let latest = sqlx::query("SELECT number, hash FROM revisions WHERE pod = $1 ORDER BY number DESC LIMIT 1")
        .bind(&spec.name)
        .fetch_optional(&mut **tx)
        .await?;
    let (number, latest_hash) = match &latest {
        Some(r) => (r.try_get::<i64, _>("number")?, Some(r.try_get::<String, _>("hash")?)),
        None => (0, None),
    };
    if latest_hash.as_deref() == Some(hash.as_str()) {
        // Only replicas, host or policies changed: same revision, refresh its spec.
        sqlx::query("UPDATE revisions SET spec = $3 WHERE pod = $1 AND number = $2")
            .bind(&spec.name)
            .bind(number)
            .bind(json)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE revisions SET outcome = 'superseded', finished_at = $2 WHERE pod = $1 AND outcome = 'progressing'",
    )
    .bind(&spec.name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO revisions (pod, number, hash, spec, created_at, outcome, reason, message)
         VALUES ($1, $2, $3, $4, $5, 'progressing', $6, $7)",
    )
    .bind(&spec.name)
    .bind(number + 1)
    .bind(&hash)
    .bind(json)
    .bind(now)
    .bind(note.map(|n| n.0))
    .bind(note.map(|n| n.1))
    .execute(&mut **tx)
    .await?;
    prune_revisions(tx, &spec.name).await
}

/// Deletes a pod's revisions beyond the newest [`MAX_REVISIONS`], keeping
/// whatever a rollback or `rollout undo` needs: the current (newest) one, the
/// last complete one, and the last complete one whose hash differs from the
/// current's (what [`Store::fail_and_roll_back`] goes back to).
async fn prune_revisions(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, pod: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM revisions WHERE pod = $1
           AND number <= (SELECT MAX(number) FROM revisions WHERE pod = $1) - $2
           AND number != (SELECT COALESCE(MAX(number), -1) FROM revisions WHERE pod = $1 AND outcome = 'complete')
           AND number != (SELECT COALESCE(MAX(number), -1) FROM revisions WHERE pod = $1 AND outcome = 'complete'
                AND hash != (SELECT hash FROM revisions WHERE pod = $1 ORDER BY number DESC LIMIT 1))",
    )
    .bind(pod)
    .bind(MAX_REVISIONS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn decode_revision(row: &sqlx::sqlite::SqliteRow) -> Result<Revision> {
    let spec: String = row.try_get("spec")?;
    Ok(Revision {
        number: row.try_get("number")?,
        hash: row.try_get("hash")?,
        spec: serde_json::from_str(&spec).map_err(|e| Error::Store(sqlx::Error::Decode(Box::new(e))))?,
        created_at: row.try_get("created_at")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        message: row.try_get("message")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<StoredPod> {
    let spec: String = row.try_get("spec")?;
    let spec: PodSpec = serde_json::from_str(&spec).map_err(|e| Error::Store(sqlx::Error::Decode(Box::new(e))))?;
    Ok(StoredPod {
        spec,
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        rollout: RolloutState {
            number: row.try_get::<Option<i64>, _>("rev_number")?.unwrap_or(0),
            outcome: row.try_get::<Option<String>, _>("rev_outcome")?.unwrap_or_default(),
            reason: row.try_get("rev_reason")?,
            message: row.try_get("rev_message")?,
        },
    })
}

/// An `events` row (id, pod, at, kind, reason, message) as an [`Event`].
fn event_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Event> {
    Ok(Event {
        id: r.try_get("id")?,
        pod: r.try_get("pod")?,
        at: r.try_get("at")?,
        kind: r.try_get("kind")?,
        reason: r.try_get("reason")?,
        message: r.try_get("message")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a file of its own dir, as a server keeps it (the dir
    /// lives as long as the test holds it).
    async fn file_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        (dir, store)
    }

    super::super::contract::store_contract_tests!(file_store().await);

    /// The embedded default (one connection): every case but the backup,
    /// which an in-memory database cannot give (see below).
    mod in_memory {
        use super::*;

        crate::store::contract::store_contract_tests!(@cases ((), SqliteStore::in_memory().await.expect("store"));
            upsert_reports_created_configured_unchanged_and_bumps_generation,
            a_write_at_a_stale_generation_is_refused_and_changes_nothing,
            the_pod_limit_counts_new_pods_only,
            a_host_belongs_to_one_pod,
            revisions_follow_template_changes_and_roll_back,
            revisions_are_pruned_but_never_the_current_or_the_last_complete,
            events_are_listed_per_pod_in_order,
            events_resume_after_an_id,
            event_messages_are_cut_and_the_log_is_bounded,
            the_store_id_is_written_once_and_gone_adoptions_are_forgotten,
            a_spec_over_the_stored_limit_is_refused_and_nothing_is_written,
        );
    }

    #[tokio::test]
    async fn an_in_memory_store_refuses_a_backup_rather_than_writing_an_empty_copy() {
        let store = SqliteStore::in_memory().await.expect("store");
        store
            .upsert_checked(&PodSpec::new("web", "img:1"), None, 10)
            .await
            .expect("create");
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("copy.db");
        let err = store.backup(&target).await.expect_err("nothing to copy");
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(!target.exists(), "no empty file passes for a backup");
    }

    #[tokio::test]
    async fn a_file_store_survives_a_reopen_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        let spec = PodSpec::new("web", "img:1").with_replicas(2);
        store.upsert_checked(&spec, None, 10).await.expect("create");
        store
            .record_ownership("id-1", "/data", &[], &HashSet::new())
            .await
            .expect("id");
        store.close().await;
        for file in [DB_FILE.to_string(), format!("{DB_FILE}-wal")] {
            let mode = std::fs::metadata(dir.path().join(&file)).map(|m| m.permissions().mode() & 0o777);
            assert!(matches!(mode, Ok(0o600) | Err(_)), "{file}: {mode:?}");
        }
        let store = SqliteStore::open(dir.path()).await.expect("reopen");
        let pods = store.list().await.expect("list");
        assert_eq!(pods.len(), 1);
        assert_eq!((pods[0].spec.replicas, pods[0].generation), (2, 1));
        assert_eq!(
            store.ownership_facts().await.expect("facts").id.as_deref(),
            Some("id-1")
        );
    }

    #[tokio::test]
    async fn a_corrupt_database_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("dubernetes.db"),
            b"this is not a sqlite database at all, not even close....",
        )
        .expect("write");
        let err = SqliteStore::open(dir.path()).await.expect_err("corrupt");
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let content = std::fs::read(dir.path().join("dubernetes.db")).expect("read");
        assert!(content.starts_with(b"this is not"));
    }

    #[tokio::test]
    async fn a_backup_of_a_data_dir_opens_as_a_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        store
            .upsert_checked(&PodSpec::new("web", "img:1"), None, 10)
            .await
            .expect("create");
        let out = tempfile::tempdir().expect("tempdir");
        // While the store is open, as a running server's.
        backup(dir.path(), &out.path().join(DB_FILE)).await.expect("backup");
        let copy = SqliteStore::open(out.path()).await.expect("open the copy");
        assert_eq!(copy.list().await.expect("list").len(), 1);
        let missing = tempfile::tempdir().expect("tempdir");
        let err = backup(missing.path(), &out.path().join("other.db"))
            .await
            .expect_err("no store");
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        assert!(!out.path().join("other.db").exists());
    }
}

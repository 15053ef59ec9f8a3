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
pub use dubernetes_api::{ApplyOutcome, Event, EventKind, Revision, RolloutOutcome, RolloutState};

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
/// copy. `target` must not exist.
pub async fn backup(data_dir: &Path, target: &Path) -> Result<()> {
    let path = data_dir.join(DB_FILE);
    if !path.exists() {
        return Err(Error::NotFound(path.display().to_string()));
    }
    if target.exists() {
        return Err(Error::Conflict(format!(
            "{} already exists; pick a new file name",
            target.display()
        )));
    }
    let target_text = target
        .to_str()
        .ok_or_else(|| Error::Conflict(format!("{} is not a UTF-8 path", target.display())))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(&path).create_if_missing(false))
        .await
        .map_err(|e| Error::Corrupt {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
    // The copy holds every env value: make it private before SQLite writes it
    // (VACUUM INTO accepts an empty file).
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map_err(|e| Error::Conflict(format!("creating {}: {e}", target.display())));
        if let Err(e) = created {
            pool.close().await;
            return Err(e);
        }
    }
    let result = sqlx::query("VACUUM INTO ?1").bind(target_text).execute(&pool).await;
    pool.close().await;
    result?;
    std::fs::File::open(target)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::Conflict(format!("syncing {}: {e}", target.display())))?;
    let copy = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(target)
                .read_only(true)
                .create_if_missing(false),
        )
        .await?;
    let verdict: Vec<String> = sqlx::query_scalar("PRAGMA quick_check").fetch_all(&copy).await?;
    copy.close().await;
    if verdict != ["ok"] {
        return Err(Error::Corrupt {
            path: target.display().to_string(),
            detail: verdict.join("; "),
        });
    }
    Ok(())
}

/// What a store knows about ownership (see [`Store::ownership_facts`]).
#[derive(Debug, Default)]
pub(crate) struct OwnershipFacts {
    pub id: Option<String>,
    pub pods: std::collections::HashSet<String>,
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

/// A pod joined with its latest revision.
macro_rules! pod_select {
    () => {
        "SELECT p.spec, p.generation, p.created_at, p.updated_at,
        r.number AS rev_number, r.outcome AS rev_outcome, r.reason AS rev_reason, r.message AS rev_message
    FROM pods p LEFT JOIN revisions r
        ON r.pod = p.name AND r.number = (SELECT MAX(number) FROM revisions WHERE pod = p.name)"
    };
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
    /// Opens (creating if missing) `dir/dubernetes.db`, checks and migrates it.
    ///
    /// Durability: WAL with `synchronous=FULL`, so a commit is on disk (WAL
    /// fsynced) before the API acknowledges it, and survives a power cut, not
    /// only a crash. An existing file that SQLite cannot open, or that fails
    /// `PRAGMA quick_check`, is [`Error::Corrupt`] and is never replaced.
    pub(crate) async fn open(dir: &Path) -> Result<Store> {
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

    /// Creates or updates a pod, with [`upsert_checked`](Self::upsert_checked)'s
    /// checks off (no generation, no pod limit).
    #[cfg(test)]
    pub(crate) async fn upsert(&self, spec: &PodSpec) -> Result<(StoredPod, ApplyOutcome)> {
        self.upsert_checked(spec, None, u32::MAX).await
    }

    /// Creates or updates a pod in one `BEGIN IMMEDIATE` transaction: checks
    /// the generation the client read (`expected`, optimistic concurrency),
    /// the pod limit and the host's owner, writes the pod row (the generation
    /// goes up only when the spec changed), and records a revision when what
    /// the containers run changed. Nothing is written when a check fails.
    pub(crate) async fn upsert_checked(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)> {
        let json = serde_json::to_string(spec).map_err(|e| Error::Conflict(format!("cannot encode spec: {e}")))?;
        // Every way in (YAML, JSON, the library) ends here: the stored size is bounded whatever the caller checked.
        if json.len() > crate::spec::MAX_STORED_SPEC_BYTES {
            return Err(Error::Spec(crate::spec::SpecError::SpecTooLarge {
                document: 1,
                line: None,
                size: json.len(),
                max: crate::spec::MAX_STORED_SPEC_BYTES,
                aliases: false,
            }));
        }
        let now = now_ms();
        // IMMEDIATE takes the write lock now: the checks below read the state
        // the write will change, and no other writer can slip in between.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT generation FROM pods WHERE name = ?1")
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
                return Err(Error::Limit(format!(
                    "name: this instance already has the maximum of {max_pods} pods; delete one first"
                )));
            }
        }
        if let Some(host) = spec.host() {
            let owner: Option<String> = sqlx::query_scalar("SELECT name FROM pods WHERE host = ?1 AND name != ?2")
                .bind(host)
                .bind(&spec.name)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(owner) = owner {
                return Err(Error::Conflict(format!(
                    "access.host: {host:?} is already routed to pod {owner:?}; pick another host or change that pod first"
                )));
            }
        }
        let row = sqlx::query(
            "INSERT INTO pods (name, spec, host, generation, created_at, updated_at) VALUES (?1, ?2, ?3, 1, ?4, ?4)
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

    /// The revisions of a pod, oldest first.
    pub(crate) async fn revisions(&self, pod: &str) -> Result<Vec<Revision>> {
        let rows = sqlx::query(
            "SELECT number, hash, spec, created_at, outcome, reason, message, finished_at
             FROM revisions WHERE pod = ?1 ORDER BY number",
        )
        .bind(pod)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_revision).collect()
    }

    /// Marks a progressing revision complete.
    pub(crate) async fn complete_revision(&self, pod: &str, number: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE revisions SET outcome = 'complete', finished_at = ?3
             WHERE pod = ?1 AND number = ?2 AND outcome = 'progressing'",
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
    pub(crate) async fn fail_and_roll_back(
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
            "UPDATE revisions SET outcome = 'failed', reason = ?3, message = ?4, finished_at = ?5
             WHERE pod = ?1 AND number = ?2 AND outcome = 'progressing'",
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
        let failed_hash: Option<String> = sqlx::query("SELECT hash FROM revisions WHERE pod = ?1 AND number = ?2")
            .bind(pod)
            .bind(failed)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("hash"))
            .transpose()?;
        let good = sqlx::query(
            "SELECT number, hash, spec, created_at, outcome, reason, message, finished_at FROM revisions
             WHERE pod = ?1 AND outcome = 'complete' AND hash != ?2 ORDER BY number DESC LIMIT 1",
        )
        .bind(pod)
        .bind(failed_hash.unwrap_or_default())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(good) = good.as_ref().map(decode_revision).transpose()? else {
            tx.commit().await?;
            return Ok(None);
        };
        let current: Option<String> = sqlx::query("SELECT spec FROM pods WHERE name = ?1")
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
        let json = serde_json::to_string(&rolled).map_err(|e| Error::Conflict(format!("cannot encode spec: {e}")))?;
        sqlx::query("UPDATE pods SET spec = ?2, generation = generation + 1, updated_at = ?3 WHERE name = ?1")
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

    pub(crate) async fn get(&self, name: &str) -> Result<Option<StoredPod>> {
        let row = sqlx::query(concat!(pod_select!(), " WHERE p.name = ?1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    pub(crate) async fn list(&self) -> Result<Vec<StoredPod>> {
        let rows = sqlx::query(concat!(pod_select!(), " ORDER BY p.name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Deletes a pod and its revisions; returns whether it existed.
    #[cfg(test)]
    pub(crate) async fn delete(&self, name: &str) -> Result<bool> {
        self.delete_checked(name, None).await
    }

    /// Deletes a pod and its revisions if it is at generation `expected` (when
    /// given), in one transaction; returns whether it existed.
    pub(crate) async fn delete_checked(&self, name: &str, expected: Option<i64>) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(expected) = expected {
            let current: Option<i64> = sqlx::query_scalar("SELECT generation FROM pods WHERE name = ?1")
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
        let done = sqlx::query("DELETE FROM pods WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM revisions WHERE pod = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn record_event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()> {
        let message = cut_message(message);
        let id: i64 =
            sqlx::query("INSERT INTO events (pod, at, kind, reason, message) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id")
                .bind(pod)
                .bind(now_ms())
                .bind(kind)
                .bind(reason)
                .bind(message.as_ref())
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
        rows.iter().map(event_from_row).collect()
    }

    /// Events with an id above `after`, oldest first (at most `limit`).
    pub(crate) async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>> {
        let rows =
            sqlx::query("SELECT id, pod, at, kind, reason, message FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The id of the newest event, 0 when there is none.
    pub(crate) async fn last_event_id(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query("SELECT MAX(id) AS id FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get("id")?;
        Ok(id.unwrap_or(0))
    }

    /// What the store knows about ownership: its id (None: a new store, or
    /// one written by a version before store ids), its pods, and the
    /// containers it adopted, as (id, pod, held).
    pub(crate) async fn ownership_facts(&self) -> Result<OwnershipFacts> {
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
    pub(crate) async fn record_ownership(
        &self,
        store_id: &str,
        data_dir: &str,
        adoptions: &[crate::ownership::Adoption],
        existing: &std::collections::HashSet<String>,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO store_meta (key, value) VALUES ('store_id', ?1) ON CONFLICT (key) DO NOTHING")
            .bind(store_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO store_meta (key, value) VALUES ('data_dir', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(data_dir)
        .execute(&mut *tx)
        .await?;
        let known: Vec<String> = sqlx::query_scalar("SELECT id FROM adopted_containers")
            .fetch_all(&mut *tx)
            .await?;
        for gone in known.iter().filter(|id| !existing.contains(*id)) {
            sqlx::query("DELETE FROM adopted_containers WHERE id = ?1")
                .bind(gone)
                .execute(&mut *tx)
                .await?;
        }
        for a in adoptions {
            sqlx::query(
                "INSERT INTO adopted_containers (id, pod, previous_store, held, adopted_at) VALUES (?1, ?2, ?3, ?4, ?5)
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
    pub(crate) async fn release_held(&self, pod: &str) -> Result<()> {
        sqlx::query("UPDATE adopted_containers SET held = 0 WHERE pod = ?1 AND held = 1")
            .bind(pod)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
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
    let latest = sqlx::query("SELECT number, hash FROM revisions WHERE pod = ?1 ORDER BY number DESC LIMIT 1")
        .bind(&spec.name)
        .fetch_optional(&mut **tx)
        .await?;
    let (number, latest_hash) = match &latest {
        Some(r) => (r.try_get::<i64, _>("number")?, Some(r.try_get::<String, _>("hash")?)),
        None => (0, None),
    };
    if latest_hash.as_deref() == Some(hash.as_str()) {
        // Only replicas, host or policies changed: same revision, refresh its spec.
        sqlx::query("UPDATE revisions SET spec = ?3 WHERE pod = ?1 AND number = ?2")
            .bind(&spec.name)
            .bind(number)
            .bind(json)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE revisions SET outcome = 'superseded', finished_at = ?2 WHERE pod = ?1 AND outcome = 'progressing'",
    )
    .bind(&spec.name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO revisions (pod, number, hash, spec, created_at, outcome, reason, message)
         VALUES (?1, ?2, ?3, ?4, ?5, 'progressing', ?6, ?7)",
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
        "DELETE FROM revisions WHERE pod = ?1
           AND number <= (SELECT MAX(number) FROM revisions WHERE pod = ?1) - ?2
           AND number != (SELECT COALESCE(MAX(number), -1) FROM revisions WHERE pod = ?1 AND outcome = 'complete')
           AND number != (SELECT COALESCE(MAX(number), -1) FROM revisions WHERE pod = ?1 AND outcome = 'complete'
                AND hash != (SELECT hash FROM revisions WHERE pod = ?1 ORDER BY number DESC LIMIT 1))",
    )
    .bind(pod)
    .bind(MAX_REVISIONS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `message`, cut to [`MAX_EVENT_MESSAGE_BYTES`] at a character boundary.
fn cut_message(message: &str) -> std::borrow::Cow<'_, str> {
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

fn decode_revision(row: &sqlx::sqlite::SqliteRow) -> Result<Revision> {
    let spec: String = row.try_get("spec")?;
    Ok(Revision {
        number: row.try_get("number")?,
        hash: row.try_get("hash")?,
        spec: serde_json::from_str(&spec).map_err(|e| Error::Store(sqlx::Error::Decode(Box::new(e))))?,
        created_at: row.try_get("created_at")?,
        outcome: parse_word(row.try_get::<String, _>("outcome")?)?,
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
            outcome: row
                .try_get::<Option<String>, _>("rev_outcome")?
                .map(parse_word)
                .transpose()?,
            reason: row.try_get("rev_reason")?,
            message: row.try_get("rev_message")?,
        },
    })
}

/// A word the store wrote (an outcome, an event kind) as its enum; an unknown
/// one is a decoding error, as a malformed spec is.
fn parse_word<T: std::str::FromStr<Err = dubernetes_api::ParseEnumError>>(word: String) -> Result<T> {
    word.parse().map_err(|e| Error::Store(sqlx::Error::Decode(Box::new(e))))
}

/// An `events` row (id, pod, at, kind, reason, message) as an [`Event`].
fn event_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Event> {
    Ok(Event {
        id: r.try_get("id")?,
        pod: r.try_get("pod")?,
        at: r.try_get("at")?,
        kind: parse_word(r.try_get::<String, _>("kind")?)?,
        reason: r.try_get("reason")?,
        message: r.try_get("message")?,
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
    async fn revisions_follow_template_changes_and_roll_back() {
        let store = Store::in_memory().await.expect("open");
        let v1 = PodSpec::new("web", "img:1").with_replicas(2);
        store.upsert(&v1).await.expect("v1");
        store.upsert(&v1.clone().with_replicas(5)).await.expect("scale");
        let revs = store.revisions("web").await.expect("revisions");
        assert_eq!(revs.len(), 1, "scaling is not a revision");
        assert_eq!(revs[0].spec.replicas, 5);
        assert!(store.complete_revision("web", 1).await.expect("complete"));
        let v2 = v1.clone().with_replicas(5).with_image("img:2");
        store.upsert(&v2).await.expect("v2");
        let good = store
            .fail_and_roll_back("web", 2, "ProgressDeadlineExceeded", "no")
            .await
            .expect("rollback");
        assert_eq!(good.map(|r| r.number), Some(1));
        let pod = store.get("web").await.expect("get").expect("pod");
        assert_eq!(
            (pod.spec.image.as_str(), pod.spec.replicas, pod.generation),
            ("img:1", 5, 4)
        );
        let revs = store.revisions("web").await.expect("revisions");
        let outcomes: Vec<_> = revs.iter().map(|r| (r.number, r.outcome.as_str())).collect();
        assert_eq!(outcomes, [(1, "complete"), (2, "failed"), (3, "progressing")]);
        assert_eq!(revs[2].reason.as_deref(), Some("Rollback"));
        // A failed revision cannot be failed twice.
        assert_eq!(store.fail_and_roll_back("web", 2, "x", "y").await.expect("again"), None);
        assert!(store.delete("web").await.expect("delete"));
        assert!(store.revisions("web").await.expect("revisions").is_empty());
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
    async fn the_store_id_and_adoptions_survive_a_restart_and_gone_containers_are_forgotten() {
        use crate::ownership::Adoption;
        use std::collections::HashSet;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).await.expect("open");
        let facts = store.ownership_facts().await.expect("facts");
        assert_eq!(
            facts.id, None,
            "a new store has no id until its first start records one"
        );
        store.upsert(&PodSpec::new("web", "img")).await.expect("apply");
        let adoptions = [
            Adoption {
                id: "c1".into(),
                pod: Some("web".into()),
                previous_store: None,
                held: false,
            },
            Adoption {
                id: "c2".into(),
                pod: Some("api".into()),
                previous_store: Some("other".into()),
                held: true,
            },
        ];
        let all = HashSet::from(["c1".to_string(), "c2".to_string()]);
        store
            .record_ownership("id-1", "/data", &adoptions, &all)
            .await
            .expect("record");
        // The id is written once: a later start with another candidate keeps it.
        store.record_ownership("id-2", "/data", &[], &all).await.expect("again");
        store.release_held("api").await.expect("release");
        store.close().await;
        for file in [DB_FILE.to_string(), format!("{DB_FILE}-wal")] {
            let mode = std::fs::metadata(dir.path().join(&file)).map(|m| m.permissions().mode() & 0o777);
            assert!(matches!(mode, Ok(0o600) | Err(_)), "{file}: {mode:?}");
        }
        let store = Store::open(dir.path()).await.expect("reopen");
        let mut facts = store.ownership_facts().await.expect("facts");
        facts.adopted.sort();
        assert_eq!(facts.id.as_deref(), Some("id-1"));
        assert_eq!(facts.pods, HashSet::from(["web".to_string()]));
        assert_eq!(
            facts.adopted,
            [
                ("c1".to_string(), Some("web".to_string()), false),
                ("c2".to_string(), Some("api".to_string()), false)
            ]
        );
        // c1 no longer exists on the engine: its record goes.
        store
            .record_ownership("id-1", "/data", &[], &HashSet::from(["c2".to_string()]))
            .await
            .expect("prune");
        let facts = store.ownership_facts().await.expect("facts");
        assert_eq!(facts.adopted.len(), 1);
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

    #[tokio::test]
    async fn revisions_are_pruned_but_never_the_current_or_the_last_complete() {
        let store = Store::in_memory().await.expect("store");
        // Revision 1 completes; 2..=25 never do (each superseded by the next).
        store.upsert(&PodSpec::new("web", "img:1")).await.expect("v1");
        assert!(store.complete_revision("web", 1).await.expect("complete"));
        for v in 2..=25 {
            store
                .upsert(&PodSpec::new("web", format!("img:{v}")))
                .await
                .expect("upsert");
        }
        let revs = store.revisions("web").await.expect("revisions");
        let numbers: Vec<i64> = revs.iter().map(|r| r.number).collect();
        assert_eq!(numbers.len() as i64, MAX_REVISIONS + 1, "{numbers:?}");
        assert_eq!(numbers[0], 1, "the last complete revision is kept: {numbers:?}");
        assert_eq!(*numbers.last().expect("newest"), 25);
        assert_eq!(numbers[1], 25 - MAX_REVISIONS + 1, "{numbers:?}");
        // Rollback still finds revision 1.
        let back = store
            .fail_and_roll_back("web", 25, "ProgressDeadlineExceeded", "never ready")
            .await
            .expect("roll back");
        assert!(back.is_some(), "rolled back to the kept complete revision");
        assert_eq!(store.get("web").await.expect("get").expect("pod").spec.image, "img:1");
        // Other pods are untouched.
        store.upsert(&PodSpec::new("api", "a:1")).await.expect("api");
        assert_eq!(store.revisions("api").await.expect("revisions").len(), 1);
        assert!(store.revisions("web").await.expect("revisions").len() as i64 <= MAX_REVISIONS + 2);
    }

    #[tokio::test]
    async fn event_messages_are_cut_and_the_log_is_bounded() {
        let store = Store::in_memory().await.expect("store");
        let long = "é".repeat(10_000);
        store.record_event("a", "Warning", "Crash", &long).await.expect("event");
        let events = store.events(Some("a"), 10).await.expect("events");
        assert!(
            events[0].message.len() <= MAX_EVENT_MESSAGE_BYTES,
            "{}",
            events[0].message.len()
        );
        assert!(events[0].message.ends_with("[cut]"));
        for i in 0..(MAX_EVENTS + 250) {
            store
                .record_event("b", "Normal", "Tick", &i.to_string())
                .await
                .expect("event");
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert!(count <= MAX_EVENTS + 100, "{count}");
    }

    #[tokio::test]
    async fn a_spec_over_the_stored_limit_is_refused_and_nothing_is_written() {
        let store = Store::in_memory().await.expect("store");
        let mut spec = PodSpec::new("big", "img:1");
        for i in 0..9 {
            spec = spec.with_env(format!("V{i}"), "z".repeat(31 * 1024));
        }
        let err = store.upsert(&spec).await.expect_err("too large");
        assert!(
            matches!(err, Error::Spec(crate::spec::SpecError::SpecTooLarge { .. })),
            "{err:?}"
        );
        assert!(store.get("big").await.expect("get").is_none());
        assert!(store.revisions("big").await.expect("revisions").is_empty());
    }
}

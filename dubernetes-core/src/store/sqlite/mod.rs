//! The SQLite store: one file in the data dir, WAL with `synchronous=FULL`,
//! a busy timeout, `PRAGMA quick_check` on open, files `0600`. Every write
//! transaction is `BEGIN IMMEDIATE`: it takes the write lock before its checks
//! read, so no other writer slips in between check and write. This is the
//! only module that speaks SQLite's dialect (`BEGIN IMMEDIATE`, `PRAGMA`,
//! `VACUUM INTO`); the queries it shares with PostgreSQL are in
//! [`crate::store::sql`].

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{
    ApplyOutcome, CertificateKind, Event, MAX_EVENTS, OwnershipFacts, Revision, RolloutOutcome, RolloutState, Store,
    StoredCertificate, StoredPod, cut_message, encode_spec, now_ms,
};
use crate::error::{Error, Result};
use crate::ownership::Adoption;
use crate::spec::PodSpec;

mod backup;
mod revisions;

pub use backup::backup;
use revisions::{decode_revision, note_revision, record_revision};

pub use crate::data_dir::DB_FILE;

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

    /// A write transaction: `BEGIN IMMEDIATE` takes the write lock before
    /// the checks read, so no other writer slips in between check and write.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// SQLite tells no one of a write: its server is the only one.
async fn notify(_tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, _what: &str, _pod: &str) -> Result<()> {
    Ok(())
}

/// Nor of a certificate written.
async fn certificate_changed(_pool: &SqlitePool, _name: &str) -> Result<()> {
    Ok(())
}

crate::store::sql::sql_store!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow, {
    async fn backup(&self, target: &Path) -> Result<()> {
        self.copy_to(target).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
});

/// A word the store wrote (an outcome, an event kind) as its enum; an unknown
/// one is a decoding error, as a malformed spec is.
pub(super) fn parse_word<T: std::str::FromStr<Err = dubernetes_api::ParseEnumError>>(word: String) -> Result<T> {
    word.parse()
        .map_err(|e| Error::Store(crate::error::StoreError::decode(e)))
}

#[cfg(test)]
mod tests;

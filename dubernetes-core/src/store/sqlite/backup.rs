//! Online backups: `VACUUM INTO` reads one snapshot while the store is in
//! use, into a new file created `0600` (it holds every env value); the copy is
//! checked before it counts as a backup.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{DB_FILE, SqliteStore, connect_options};
use crate::error::{Error, Result};
use crate::store::Store as _;

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

impl SqliteStore {
    /// [`crate::store::Store::backup`]: `VACUUM INTO` a new `0600` file, then check the copy.
    pub(super) async fn copy_to(&self, target: &Path) -> Result<()> {
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
}

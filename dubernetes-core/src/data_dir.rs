//! The data dir: where the store lives, locked for the life of the process.
//!
//! One server per data dir: the lock is an OS file lock (`flock` through
//! [`std::fs::File::try_lock`]) on `DATA_DIR/lock`, so the kernel releases it
//! when the process dies, even by `kill -9`: no stale lock can block the next
//! start. The holder writes its pid into the file, so a refused second server
//! can name it.
//!
//! Secrets live here (the database holds every `env` value), so the dir is
//! created `0700` and the database and its WAL and shared-memory files are
//! `0600`.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::{DataDirProblem, Error, Result};

/// The lock file in the data dir.
pub const LOCK_FILE: &str = "lock";

/// The database file in the data dir (the SQLite store's).
pub const DB_FILE: &str = "dubernetes.db";

fn problem(path: &Path, problem: DataDirProblem) -> Error {
    Error::DataDir {
        path: path.to_path_buf(),
        problem,
    }
}

fn unwritable(path: &Path, e: &std::io::Error) -> Error {
    problem(path, DataDirProblem::Unwritable { detail: e.to_string() })
}

/// The data dir as an absolute path (relative ones are taken from the
/// working directory, once, at start).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| unwritable(path, &e))
}

/// Whether a store already exists in `dir`. An existing path that is not a
/// directory is an error; nothing is created.
pub(crate) fn has_store(dir: &Path) -> Result<bool> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(dir.join(DB_FILE).exists()),
        Ok(_) => Err(problem(dir, DataDirProblem::NotADirectory)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(problem(dir, DataDirProblem::NotADirectory)),
        Err(e) => Err(unwritable(dir, &e)),
    }
}

/// Creates the data dir (and missing parents) with mode `0700`. An existing
/// one is left as it is (it may be a directory the operator chose and shares
/// on purpose) with a warning when others may list it: the files that hold
/// secrets are `0600` either way.
pub(crate) fn create(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => problem(dir, DataDirProblem::NotADirectory),
            _ => unwritable(dir, &e),
        })?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| unwritable(dir, &e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            data_dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "other users may list the data dir (its database and token are 0600); `chmod 700` it to hide their names too"
        );
    }
    Ok(())
}

/// Makes the database file exist with mode `0600` before SQLite opens it
/// (SQLite gives its WAL and shared-memory files the database's mode), and
/// tightens the files of a store written by an older version.
pub(crate) fn private_db_files(dir: &Path) -> Result<()> {
    let db = dir.join(DB_FILE);
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .map_err(|e| unwritable(dir, &e))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.join(format!("{DB_FILE}{suffix}"));
        if let Ok(meta) = std::fs::metadata(&file)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(|e| unwritable(dir, &e))?;
        }
    }
    Ok(())
}

/// The data dir's lock, held until dropped (or the process ends).
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on an existing data dir, or fails at once with
    /// [`DataDirProblem::Locked`] naming the holder's pid.
    pub(crate) fn acquire(dir: &Path) -> Result<DataDirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| unwritable(dir, &e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim().parse().ok();
                return Err(problem(dir, DataDirProblem::Locked { pid }));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(unwritable(dir, &e)),
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        write_pid(&mut file).map_err(|e| unwritable(dir, &e))?;
        Ok(DataDirLock { _file: file })
    }
}

/// Whether a server holds the lock of another data dir, and its pid: probed
/// with a shared lock that is released at once. Creates nothing; a missing or
/// unreadable lock file is None.
pub(crate) fn holder(dir: &Path) -> Option<Option<u32>> {
    let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Some(text.trim().parse().ok())
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDirLock::acquire(dir.path()).expect("first");
        match DataDirLock::acquire(dir.path()) {
            Err(Error::DataDir {
                problem: DataDirProblem::Locked { pid },
                ..
            }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("pid").trim(),
            std::process::id().to_string()
        );
        assert_eq!(holder(dir.path()), Some(Some(std::process::id())));
        drop(first);
        assert_eq!(holder(dir.path()), None);
        DataDirLock::acquire(dir.path()).expect("free again");
        assert_eq!(holder(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_file_is_not_a_data_dir_and_nothing_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").expect("write");
        assert!(matches!(
            has_store(&file),
            Err(Error::DataDir {
                problem: DataDirProblem::NotADirectory,
                ..
            })
        ));
        assert!(matches!(
            create(&file),
            Err(Error::DataDir {
                problem: DataDirProblem::NotADirectory,
                ..
            })
        ));
        assert!(matches!(
            has_store(&file.join("below")),
            Err(Error::DataDir {
                problem: DataDirProblem::NotADirectory,
                ..
            })
        ));
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "x");
    }

    #[test]
    fn created_dirs_and_db_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("a/b");
        create(&data).expect("create");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create(&data).expect("again");
        assert_eq!(mode(&data), 0o755, "an existing dir is the operator's: left as it is");
        std::fs::write(data.join(format!("{DB_FILE}-wal")), "").expect("wal");
        std::fs::set_permissions(
            data.join(format!("{DB_FILE}-wal")),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        private_db_files(&data).expect("private");
        assert_eq!(mode(&data.join(DB_FILE)), 0o600);
        assert_eq!(mode(&data.join(format!("{DB_FILE}-wal"))), 0o600);
    }
}

//! The SQLite store's own tests, and the store contract run on it.

use super::*;

/// A store in a file of its own dir, as a server keeps it (the dir
/// lives as long as the test holds it).
async fn file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).await.expect("open");
    (dir, store)
}

crate::store_contract_tests!({
    let (dir, store) = file_store().await;
    (dir, crate::test_internals::TestStore::new(store))
});

/// The embedded default (one connection): every case but the backup,
/// which an in-memory database cannot give (see below).
mod in_memory {
    use super::*;

    crate::store_contract_tests!(@but_backup (
        (),
        crate::test_internals::TestStore::new(SqliteStore::in_memory().await.expect("store"))
    ));
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

//! The store contract on a real PostgreSQL (a throwaway cluster shared by
//! this test binary, one database per case), and what only it can show.

use dubernetes_core::pg_cluster::PgCluster;
use dubernetes_core::test_internals::TestStore;
use dubernetes_core::{Error, PodSpec};

/// A store on a new database of the shared test cluster.
async fn pg_store() -> ((), TestStore) {
    let url = PgCluster::shared().new_database().await;
    ((), TestStore::postgres(&url).await.expect("open"))
}

dubernetes_core::store_contract_tests!(@but_backup pg_store().await);

#[tokio::test]
async fn two_servers_opening_one_database_at_once_migrate_it_once() {
    let url = PgCluster::shared().new_database().await;
    let (a, b) = tokio::join!(TestStore::postgres(&url), TestStore::postgres(&url));
    let (a, b) = (a.expect("first"), b.expect("second"));
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(a.pg_pool().expect("a PostgreSQL store"))
        .await
        .expect("count");
    let migrations = sqlx::migrate!("./migrations/postgres").iter().count() as i64;
    assert_eq!(applied, migrations, "every migration applied once");
    a.upsert_checked(&PodSpec::new("web", "img:1"), None, 10)
        .await
        .expect("write through one");
    assert!(b.get("web").await.expect("read through the other").is_some());
}

#[tokio::test]
async fn concurrent_conditional_writes_through_two_pools_lose_none_and_conflict_cleanly() {
    let url = PgCluster::shared().new_database().await;
    let a = TestStore::postgres(&url).await.expect("a");
    let b = TestStore::postgres(&url).await.expect("b");
    a.upsert_checked(&PodSpec::new("web", "img:1"), None, 10)
        .await
        .expect("create");
    // 40 increments of an env counter, read-modify-write at the read
    // generation, half through each pool: every one that succeeds counts.
    let bump = |store: TestStore| async move {
        let mut done = 0;
        while done < 20 {
            let pod = store.get("web").await.expect("get").expect("pod");
            let n: u32 = pod.spec.replicas + 1;
            match store
                .upsert_checked(&pod.spec.clone().with_replicas(n), Some(pod.generation), 10)
                .await
            {
                Ok(_) => done += 1,
                Err(Error::StaleGeneration { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
    };
    tokio::join!(bump(a.clone()), bump(b.clone()));
    let pod = a.get("web").await.expect("get").expect("pod");
    assert_eq!(pod.spec.replicas, 41, "every acknowledged write kept");
    assert_eq!(pod.generation, 41);
}

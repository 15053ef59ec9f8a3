//! What this crate's own integration tests reach inside it: the tests that
//! need a real PostgreSQL (`tests/postgres/`) live there, out of the lib
//! tests, so `cargo test --workspace --lib` needs no database and no Docker.
//!
//! Not an API: hidden from the docs, compiled only with the `testing` feature
//! (and in the lib tests), and changed with the code it reaches into.

use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};

use crate::error::Result;
use crate::spec::PodSpec;
use crate::store::{ApplyOutcome, Store};
use crate::{Dubernetes, DubernetesBuilder};

pub use crate::engine::fake::{App, FakeEngine};
pub use crate::leader::{HEARTBEAT, SESSION_TIMEOUT};
pub use crate::store::StoredPod;
pub use crate::store::contract as store_contract;

/// The key of the leader's advisory lock (see `leader.rs`).
pub const LEADER_LOCK: i64 = crate::store::postgres::LEADER;

/// `builder` on the in-memory fake engine instead of Docker.
pub fn on_fake_engine(builder: DubernetesBuilder, fake: &FakeEngine) -> DubernetesBuilder {
    builder.engine(Arc::new(fake.clone()))
}

/// Changes when `server` starts or stops leading (true: it leads).
pub fn leader_changes(server: &Dubernetes) -> tokio::sync::watch::Receiver<bool> {
    server.handle.leader_changes()
}

/// The leader's lock connection, with the session settings it carries.
pub async fn lock_connection(options: &PgConnectOptions) -> std::result::Result<PgConnection, sqlx::Error> {
    crate::leader::lock_connection(options).await
}

/// A store of any implementation, as the store contract's cases
/// ([`store_contract`], run by [`crate::store_contract_tests!`]) take it.
#[derive(Debug, Clone)]
pub struct TestStore(Arc<dyn Store>);

impl TestStore {
    /// Wraps a store of this crate.
    pub(crate) fn new(store: impl Store + 'static) -> TestStore {
        TestStore(Arc::new(store))
    }

    /// The PostgreSQL store of the database at `url` (connected and migrated).
    pub async fn postgres(url: &str) -> Result<TestStore> {
        Ok(TestStore::new(crate::store::postgres::PgStore::open(url).await?))
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.0.as_ref()
    }

    /// The pool of a PostgreSQL store; None for another kind.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        self.0.postgres().map(|pg| pg.pool())
    }

    /// Creates or updates a pod at generation `expected` (see the store's `upsert_checked`).
    pub async fn upsert_checked(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)> {
        self.0.upsert_checked(spec, expected, max_pods).await
    }

    /// A pod as stored.
    pub async fn get(&self, name: &str) -> Result<Option<StoredPod>> {
        self.0.get(name).await
    }

    /// Closes the store.
    pub async fn close(&self) {
        self.0.close().await;
    }
}

//! A read cache in front of a [`Store`]: `list` and `get` are answered from
//! memory once the pods were read, so a list of 200 pods (the API's, and the
//! one every ingress sync makes) parses no JSON and reads no rows. A write
//! marks the pod it wrote stale; the next read re-reads that pod only (so a
//! burst of applies costs one row each, not a full list each).
//!
//! It assumes that this process is the only writer of the store, which the
//! data dir lock guarantees for SQLite. A store shared by several servers
//! (e.g. PostgreSQL) must not be wrapped, or must drop the cache on the
//! store's own change notifications.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{ApplyOutcome, Event, OwnershipFacts, Revision, RolloutOutcome, Store, StoredCertificate, StoredPod};
use crate::error::Result;
use crate::ownership::Adoption;
use crate::spec::PodSpec;

#[derive(Debug, Default)]
struct Cached {
    /// Bumped by every write: a read that started before it may not fill the cache.
    version: u64,
    /// Every pod, once listed (None: list the store again).
    pods: Option<Arc<BTreeMap<String, StoredPod>>>,
    /// Pods written since: `pods` is wrong about them until they are re-read.
    stale: HashSet<String>,
}

/// A [`Store`] whose `list` and `get` are served from memory (see the module docs).
#[derive(Debug)]
pub(crate) struct CachedStore {
    inner: Arc<dyn Store>,
    cached: Mutex<Cached>,
}

impl CachedStore {
    pub(crate) fn new(inner: Arc<dyn Store>) -> CachedStore {
        CachedStore {
            inner,
            cached: Mutex::new(Cached::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        crate::sync::lock(&self.cached)
    }

    /// Every pod by name: from memory, re-reading the pods written since
    /// (one row each), or the whole store when there is no cache yet.
    async fn pods(&self) -> Result<Arc<BTreeMap<String, StoredPod>>> {
        let (version, base, stale) = {
            let cached = self.lock();
            match &cached.pods {
                Some(pods) if cached.stale.is_empty() => return Ok(Arc::clone(pods)),
                Some(pods) => (cached.version, Some(Arc::clone(pods)), cached.stale.clone()),
                None => (cached.version, None, HashSet::new()),
            }
        };
        let pods: Arc<BTreeMap<String, StoredPod>> = match base {
            Some(mut pods) => {
                let map = Arc::make_mut(&mut pods);
                for name in &stale {
                    match self.inner.get(name).await? {
                        Some(p) => map.insert(name.clone(), p),
                        None => map.remove(name),
                    };
                }
                pods
            }
            None => Arc::new(
                self.inner
                    .list()
                    .await?
                    .into_iter()
                    .map(|p| (p.spec.name.clone(), p))
                    .collect(),
            ),
        };
        let mut cached = self.lock();
        // A write finished meanwhile: what was read may predate it.
        if cached.version == version {
            cached.pods = Some(Arc::clone(&pods));
            cached.stale.clear();
        }
        Ok(pods)
    }

    /// Marks `pod` stale after a write (once the write returned, so a read
    /// that began before the write cannot fill the cache with its old row);
    /// `None`: forget everything.
    fn written<T>(&self, pod: Option<&str>, result: Result<T>) -> Result<T> {
        let mut cached = self.lock();
        cached.version = cached.version.wrapping_add(1);
        match pod {
            Some(pod) => {
                cached.stale.insert(pod.to_string());
            }
            None => {
                cached.pods = None;
                cached.stale.clear();
            }
        }
        result
    }
}

#[async_trait::async_trait]
impl Store for CachedStore {
    async fn upsert_checked(
        &self,
        spec: &PodSpec,
        expected: Option<i64>,
        max_pods: u32,
    ) -> Result<(StoredPod, ApplyOutcome)> {
        let result = self.inner.upsert_checked(spec, expected, max_pods).await;
        // An unchanged apply writes nothing the cache holds.
        if matches!(result, Ok((_, ApplyOutcome::Unchanged))) {
            return result;
        }
        self.written(Some(&spec.name), result)
    }

    async fn get(&self, name: &str) -> Result<Option<StoredPod>> {
        {
            let cached = self.lock();
            if let Some(pods) = cached.pods.as_ref().filter(|_| !cached.stale.contains(name)) {
                return Ok(pods.get(name).cloned());
            }
        }
        self.inner.get(name).await
    }

    async fn list(&self) -> Result<Vec<StoredPod>> {
        Ok(self.pods().await?.values().cloned().collect())
    }

    async fn delete_checked(&self, name: &str, expected: Option<i64>) -> Result<bool> {
        let result = self.inner.delete_checked(name, expected).await;
        self.written(Some(name), result)
    }

    async fn revisions(&self, pod: &str) -> Result<Vec<Revision>> {
        self.inner.revisions(pod).await
    }

    async fn complete_revision(&self, pod: &str, number: i64) -> Result<bool> {
        let result = self.inner.complete_revision(pod, number).await;
        self.written(Some(pod), result)
    }

    async fn note_revision(
        &self,
        pod: &str,
        number: i64,
        outcome: RolloutOutcome,
        reason: &str,
        message: &str,
    ) -> Result<bool> {
        let result = self.inner.note_revision(pod, number, outcome, reason, message).await;
        self.written(Some(pod), result)
    }

    async fn fail_and_roll_back(
        &self,
        pod: &str,
        failed: i64,
        reason: &str,
        message: &str,
    ) -> Result<Option<Revision>> {
        let result = self.inner.fail_and_roll_back(pod, failed, reason, message).await;
        self.written(Some(pod), result)
    }

    async fn record_event(&self, pod: &str, kind: &str, reason: &str, message: &str) -> Result<()> {
        self.inner.record_event(pod, kind, reason, message).await
    }

    async fn events(&self, pod: Option<&str>, limit: i64) -> Result<Vec<Event>> {
        self.inner.events(pod, limit).await
    }

    async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<Event>> {
        self.inner.events_after(after, limit).await
    }

    async fn last_event_id(&self) -> Result<i64> {
        self.inner.last_event_id().await
    }

    async fn ownership_facts(&self) -> Result<OwnershipFacts> {
        self.inner.ownership_facts().await
    }

    async fn record_ownership(
        &self,
        store_id: &str,
        data_dir: &str,
        adoptions: &[Adoption],
        existing: &HashSet<String>,
    ) -> Result<()> {
        let result = self
            .inner
            .record_ownership(store_id, data_dir, adoptions, existing)
            .await;
        self.written(None, result)
    }

    async fn release_held(&self, pod: &str) -> Result<()> {
        let result = self.inner.release_held(pod).await;
        self.written(Some(pod), result)
    }

    // Certificates and ACME accounts are not cached (read per TLS pod on an
    // ingress sync and by the ACME task): passed through.
    async fn put_certificate(&self, cert: &StoredCertificate) -> Result<()> {
        self.inner.put_certificate(cert).await
    }

    async fn put_user_certificate(&self, cert: &StoredCertificate, replace: bool) -> Result<Vec<String>> {
        self.inner.put_user_certificate(cert, replace).await
    }

    async fn delete_user_certificate(&self, name: &str) -> Result<()> {
        self.inner.delete_user_certificate(name).await
    }

    async fn certificate(&self, name: &str) -> Result<Option<StoredCertificate>> {
        self.inner.certificate(name).await
    }

    async fn certificates(&self) -> Result<Vec<StoredCertificate>> {
        self.inner.certificates().await
    }

    async fn put_data_secret(&self, secret: &super::StoredSecret, replace: bool) -> Result<super::StoredSecret> {
        self.inner.put_data_secret(secret, replace).await
    }

    async fn data_secret(&self, name: &str) -> Result<Option<super::StoredSecret>> {
        self.inner.data_secret(name).await
    }

    async fn data_secrets(&self) -> Result<Vec<super::StoredSecret>> {
        self.inner.data_secrets().await
    }

    async fn delete_data_secret(&self, name: &str) -> Result<bool> {
        self.inner.delete_data_secret(name).await
    }

    async fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        self.inner.acme_account(directory).await
    }

    async fn put_acme_account(&self, directory: &str, credentials: &str) -> Result<()> {
        self.inner.put_acme_account(directory, credentials).await
    }

    async fn backup(&self, target: &Path) -> Result<()> {
        self.inner.backup(target).await
    }

    async fn close(&self) {
        self.written(None, Ok(())).ok();
        self.inner.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn cached_store() -> (tempfile::TempDir, CachedStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path()).await.expect("open");
        (dir, CachedStore::new(Arc::new(store)))
    }

    // The cache must keep every promise of the store.
    crate::store_contract_tests!({
        let (dir, store) = cached_store().await;
        (dir, crate::test_internals::TestStore::new(store))
    });

    #[tokio::test]
    async fn reads_come_from_memory_until_a_write() {
        let (_dir, store) = cached_store().await;
        store
            .upsert_checked(&PodSpec::new("web", "img:1"), None, u32::MAX)
            .await
            .expect("upsert");
        let first = store.pods().await.expect("pods");
        let second = store.pods().await.expect("pods");
        assert!(Arc::ptr_eq(&first, &second), "the second read is the cached one");
        store
            .upsert_checked(&PodSpec::new("api", "img:1"), None, u32::MAX)
            .await
            .expect("upsert");
        // Re-reads `api` only; `web` is the very same cached value.
        let names: Vec<String> = store
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|p| p.spec.name)
            .collect();
        assert_eq!(names, ["api", "web"]);
        assert!(store.lock().stale.is_empty());
        store
            .upsert_checked(&PodSpec::new("web", "img:2"), None, u32::MAX)
            .await
            .expect("upsert");
        let third = store.get("web").await.expect("get").expect("pod");
        assert_eq!(third.spec.image, "img:2");
        assert_eq!(third.generation, 2);
        assert!(store.delete_checked("web", None).await.expect("delete"));
        let names: Vec<String> = store
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|p| p.spec.name)
            .collect();
        assert_eq!(names, ["api"]);
    }
}

//! A resumable change feed: every change of a pod (its spec, status or
//! replicas) and every new event, numbered by a version that only increases.
//!
//! The controller only says *which* pod changed ([`Change`]); the feed turns
//! that into *what* changed by re-reading the pod's view and comparing it with
//! the last one it published, so a watcher gets whole objects and never has
//! to poll. The last [`HISTORY`] entries, and at most [`HISTORY_BYTES`] of
//! them, are kept so a client that lost its connection resumes from the last
//! version it saw; one that fell further behind gets [`Error::Expired`] and
//! starts again from a fresh list (Kubernetes' `410 Gone`).
//!
//! The history is the only buffer: live watchers are woken by a version
//! number and read the entries from it, so a slow watcher holds no copies of
//! its own; one that falls behind the history's oldest entry gets `Expired`.
//!
//! Versions start at the Unix time in milliseconds when the instance started,
//! so a version from an earlier run of the server is older than anything the
//! feed holds and is answered with `Expired`, never with a wrong history.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};

use futures::Stream;
use tokio::sync::{broadcast, watch};

use crate::change::Change;
use crate::error::{Error, Result};
use crate::store::Event;
use crate::sync::lock;
use dubernetes_api::Pod;
pub use dubernetes_api::{WatchEvent, WatchKind};
use tokio_util::sync::CancellationToken;

/// How many changes the feed keeps for watchers that resume.
pub const HISTORY: usize = 4096;

/// Most bytes of changes the feed keeps (entries counted by their JSON size);
/// the oldest go first. The newest entry is always kept.
pub const HISTORY_BYTES: usize = 16 * 1024 * 1024;

/// Most entries a watcher takes from the history in one go.
const BATCH: usize = 64;

/// Most bytes (JSON size) a watcher takes from the history in one go, beyond
/// the first entry: what a watcher whose client stopped reading can hold.
const BATCH_BYTES: usize = 256 * 1024;

struct FeedState {
    /// The version of the newest entry (or the start version).
    version: u64,
    /// Entries with versions `floor + 1 ..= version`, each with its JSON size.
    history: VecDeque<(WatchEvent, usize)>,
    /// Sum of the sizes in `history`.
    history_bytes: usize,
    /// The version before the oldest entry kept; resuming below it is `Expired`.
    floor: u64,
    /// The last published view of every pod, without the engine's ever-changing status text.
    pods: HashMap<String, Pod>,
    last_event_id: i64,
}

/// The feed shared by the orchestrator handle and its publishing task.
pub(crate) struct Feed {
    state: StdMutex<FeedState>,
    /// The newest version: wakes live watchers, who read the history.
    tx: watch::Sender<u64>,
}

/// A pod as compared between publications: the engine's status text (`Up 3
/// seconds`) changes by itself and is not a change.
fn comparable(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    for r in &mut pod.replicas {
        r.status.clear();
    }
    pod
}

impl Feed {
    pub(crate) fn new() -> Arc<Feed> {
        let start = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
        let (tx, _) = watch::channel(start);
        Arc::new(Feed {
            state: StdMutex::new(FeedState {
                version: start,
                history: VecDeque::new(),
                history_bytes: 0,
                floor: start,
                pods: HashMap::new(),
                last_event_id: 0,
            }),
            tx,
        })
    }

    /// The newest version.
    pub(crate) fn version(&self) -> u64 {
        lock(&self.state).version
    }

    fn publish(&self, state: &mut FeedState, kind: WatchKind, name: &str, pod: Option<Pod>, event: Option<Event>) {
        state.version += 1;
        let entry = WatchEvent {
            version: state.version,
            kind,
            name: name.to_string(),
            pod,
            event,
        };
        // Serializing a view cannot fail; a failure counts as nothing.
        let bytes = serde_json::to_vec(&entry).map_or(0, |j| j.len());
        state.history.push_back((entry, bytes));
        state.history_bytes += bytes;
        while state.history.len() > HISTORY || (state.history_bytes > HISTORY_BYTES && state.history.len() > 1) {
            let Some((old, size)) = state.history.pop_front() else {
                break;
            };
            state.floor = old.version;
            state.history_bytes -= size;
        }
        // No watcher is fine.
        self.tx.send_replace(state.version);
    }

    /// Moves up to [`BATCH`] entries (and about [`BATCH_BYTES`]) after version `after` into `into`.
    fn entries_after(&self, after: u64, into: &mut VecDeque<WatchEvent>) -> Result<()> {
        let state = lock(&self.state);
        if after < state.floor {
            return Err(Error::Expired(format!(
                "this watcher fell behind: version {after} is no longer in the change feed (it holds {}..={}); list again and watch from the version of the list",
                state.floor, state.version
            )));
        }
        let skip = usize::try_from(after - state.floor).unwrap_or(usize::MAX);
        let mut bytes = 0;
        for (entry, size) in state.history.iter().skip(skip).take(BATCH) {
            if !into.is_empty() && bytes + size > BATCH_BYTES {
                break;
            }
            bytes += size;
            into.push_back(entry.clone());
        }
        Ok(())
    }

    /// Publishes a pod's current view if it differs from the last one.
    fn pod_seen(&self, pod: Pod) {
        let mut state = lock(&self.state);
        let key = comparable(&pod);
        let kind = match state.pods.get(&pod.name) {
            None => WatchKind::Added,
            Some(last) if *last == key => return,
            Some(_) => WatchKind::Modified,
        };
        state.pods.insert(pod.name.clone(), key);
        let name = pod.name.clone();
        self.publish(&mut state, kind, &name, Some(pod), None);
    }

    fn pod_gone(&self, name: &str) {
        let mut state = lock(&self.state);
        if let Some(last) = state.pods.remove(name) {
            self.publish(&mut state, WatchKind::Deleted, name, Some(last), None);
        }
    }

    fn events_seen(&self, events: Vec<Event>) {
        let mut state = lock(&self.state);
        for event in events {
            if event.id <= state.last_event_id {
                continue;
            }
            state.last_event_id = event.id;
            let name = event.pod.clone();
            self.publish(&mut state, WatchKind::Event, &name, None, Some(event));
        }
    }

    /// The entries after `since` (or, without it, every pod as `ADDED` at the
    /// current version), then live ones.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        since: Option<u64>,
    ) -> Result<impl Stream<Item = Result<WatchEvent>> + Send + use<>> {
        let state = lock(&self.state);
        let (pending, after): (VecDeque<WatchEvent>, u64) = match since {
            Some(v) if v < state.floor || v > state.version => {
                return Err(Error::Expired(format!(
                    "version {v} is not in the change feed (it holds {}..={}); list again and watch from the version of the list",
                    state.floor, state.version
                )));
            }
            Some(v) => (VecDeque::new(), v),
            None => {
                let mut names: Vec<&String> = state.pods.keys().collect();
                names.sort();
                let snapshot = names
                    .into_iter()
                    .filter_map(|n| state.pods.get(n))
                    .map(|pod| WatchEvent {
                        version: state.version,
                        kind: WatchKind::Added,
                        name: pod.name.clone(),
                        pod: Some(pod.clone()),
                        event: None,
                    })
                    .collect();
                (snapshot, state.version)
            }
        };
        drop(state);
        let watcher = Watcher {
            feed: Arc::clone(self),
            wake: self.tx.subscribe(),
            pending,
            after,
            failed: false,
        };
        Ok(futures::stream::unfold(watcher, Watcher::next))
    }
}

/// One watcher's place in the feed: what it was sent last, and a small batch
/// taken from the history (at most [`BATCH`] entries and about [`BATCH_BYTES`]).
struct Watcher {
    feed: Arc<Feed>,
    wake: watch::Receiver<u64>,
    /// Entries taken but not yet sent (the snapshot first, for a watch without a version).
    pending: VecDeque<WatchEvent>,
    /// The version of the last history entry taken.
    after: u64,
    failed: bool,
}

impl Watcher {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Watcher)> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(entry) = self.pending.pop_front() {
                return Some((Ok(entry), self));
            }
            // Marks the newest version seen before reading, so a publication
            // after the read wakes us again.
            self.wake.borrow_and_update();
            let mut batch = VecDeque::new();
            if let Err(e) = self.feed.entries_after(self.after, &mut batch) {
                // A watcher that fell behind gets one error and the stream ends.
                self.failed = true;
                return Some((Err(e), self));
            }
            if let Some(last) = batch.back() {
                self.after = last.version;
                self.pending = batch;
                continue;
            }
            if self.wake.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// What the feed reads: pod views and recorded events, nothing else. The
/// facade implements it (so the feed does not depend on the facade, which
/// holds the feed); a test can implement it over a map.
pub(crate) trait FeedSource: Send + Sync + 'static {
    /// Every pod, as the API shows it.
    fn list(&self) -> impl Future<Output = Result<Vec<Pod>>> + Send;
    /// One pod, as the API shows it; [`Error::NotFound`] once it is gone.
    fn get(&self, name: &str) -> impl Future<Output = Result<Pod>> + Send;
    /// The id of the newest recorded event (0 if none).
    fn last_event_id(&self) -> impl Future<Output = Result<i64>> + Send;
    /// Recorded events after `after`, oldest first, a bounded batch.
    fn events_after(&self, after: i64) -> impl Future<Output = Result<Vec<Event>>> + Send;
}

/// Keeps the feed up to date: turns the controller's change notes into
/// entries, until `shutdown`.
pub(crate) async fn run(
    source: impl FeedSource,
    shutdown: CancellationToken,
    feed: Arc<Feed>,
    mut changes: broadcast::Receiver<Change>,
) {
    // Start from what exists, without publishing it.
    match source.list().await {
        Ok(pods) => {
            let mut state = lock(&feed.state);
            for pod in pods {
                state.pods.insert(pod.name.clone(), comparable(&pod));
            }
        }
        Err(e) => tracing::warn!(error = %e, "change feed: listing pods failed"),
    }
    match source.last_event_id().await {
        Ok(id) => lock(&feed.state).last_event_id = id,
        Err(e) => tracing::warn!(error = %e, "change feed: reading events failed"),
    }
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.recv() => change,
        };
        match change {
            Ok(Change::Pod { name }) => {
                // Coalesce a burst: every pod named in the queue is looked at once.
                let mut names = vec![name];
                let mut all = false;
                while let Ok(more) = changes.try_recv() {
                    match more {
                        Change::Pod { name } if !names.contains(&name) => names.push(name),
                        Change::Pod { .. } => {}
                        Change::Ingress => all = true,
                    }
                }
                if all {
                    refresh_all(&source, &feed).await;
                } else {
                    for name in names {
                        refresh(&source, &feed, &name).await;
                    }
                }
            }
            // A new ingress config changes which replicas are ready.
            Ok(Change::Ingress) | Err(broadcast::error::RecvError::Lagged(_)) => refresh_all(&source, &feed).await,
            Err(broadcast::error::RecvError::Closed) => return,
        }
        publish_events(&source, &feed).await;
    }
}

async fn refresh(source: &impl FeedSource, feed: &Feed, name: &str) {
    match source.get(name).await {
        Ok(pod) => feed.pod_seen(pod),
        Err(Error::NotFound(_)) => feed.pod_gone(name),
        Err(e) => tracing::debug!(pod = name, error = %e, "change feed: reading a pod failed"),
    }
}

async fn refresh_all(source: &impl FeedSource, feed: &Feed) {
    match source.list().await {
        Ok(pods) => {
            let known: Vec<String> = lock(&feed.state).pods.keys().cloned().collect();
            for name in known {
                if !pods.iter().any(|p| p.name == name) {
                    feed.pod_gone(&name);
                }
            }
            for pod in pods {
                feed.pod_seen(pod);
            }
        }
        Err(e) => tracing::debug!(error = %e, "change feed: listing pods failed"),
    }
}

async fn publish_events(source: &impl FeedSource, feed: &Feed) {
    let after = lock(&feed.state).last_event_id;
    match source.events_after(after).await {
        Ok(events) => feed.events_seen(events),
        Err(e) => tracing::debug!(error = %e, "change feed: reading events failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PodSpec;
    use dubernetes_api::{Phase, PodStatus};
    use futures::StreamExt;

    fn pod(name: &str, replicas: u32) -> Pod {
        Pod {
            name: name.into(),
            spec: PodSpec::new(name, "img:v1").with_replicas(replicas),
            generation: 1,
            created_at: 0,
            updated_at: 0,
            status: PodStatus {
                observed_generation: 1,
                desired_replicas: replicas,
                ready_replicas: 0,
                updated_replicas: 0,
                current_replicas: 0,
                revision: "r".into(),
                phase: Phase::Progressing,
                reason: None,
                message: None,
                revision_number: 1,
                conditions: Vec::new(),
                restarts: 0,
                last_exit_code: None,
                tls: None,
                warnings: Vec::new(),
            },
            replicas: Vec::new(),
        }
    }

    async fn collect(stream: impl Stream<Item = Result<WatchEvent>>, n: usize) -> Vec<WatchEvent> {
        let items: Vec<_> = tokio::time::timeout(std::time::Duration::from_secs(5), stream.take(n).collect::<Vec<_>>())
            .await
            .expect("in time");
        items.into_iter().map(|i| i.expect("no error")).collect()
    }

    /// A feed source over a map: what the feed reads, without a facade.
    #[derive(Clone, Default)]
    struct MapSource {
        pods: Arc<StdMutex<HashMap<String, Pod>>>,
        events: Arc<StdMutex<Vec<Event>>>,
    }

    impl FeedSource for MapSource {
        async fn list(&self) -> Result<Vec<Pod>> {
            let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            Ok(pods.values().cloned().collect())
        }

        async fn get(&self, name: &str) -> Result<Pod> {
            let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
            pods.get(name).cloned().ok_or_else(|| Error::NotFound(name.to_string()))
        }

        async fn last_event_id(&self) -> Result<i64> {
            let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            Ok(events.last().map_or(0, |e| e.id))
        }

        async fn events_after(&self, after: i64) -> Result<Vec<Event>> {
            let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            Ok(events.iter().filter(|e| e.id > after).cloned().collect())
        }
    }

    #[tokio::test]
    async fn the_feed_task_publishes_what_its_source_shows_on_each_change_note() {
        let source = MapSource::default();
        let put = |p: Pod| {
            source
                .pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p.name.clone(), p)
        };
        put(pod("a", 1));
        let event = |id: i64| Event {
            id,
            pod: "a".into(),
            at: 0,
            kind: crate::store::EventKind::Normal,
            reason: "Scaled".into(),
            message: "to 2".into(),
        };
        source.events.lock().unwrap_or_else(|e| e.into_inner()).push(event(5));
        let feed = Feed::new();
        let start = feed.version();
        let (tx, rx) = broadcast::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(source.clone(), shutdown.clone(), Arc::clone(&feed), rx));
        let watch = feed.subscribe(Some(start)).expect("watch");
        // Wait until the task took its starting snapshot and event id (without
        // publishing either): it reads the id after the pods.
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while lock(&feed.state).last_event_id != 5 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("snapshot in time");
        put(pod("a", 2));
        source.events.lock().unwrap_or_else(|e| e.into_inner()).push(event(7));
        tx.send(Change::Pod { name: "a".into() }).expect("task listens");
        let items = collect(watch, 2).await;
        assert_eq!(
            items[0].kind,
            WatchKind::Modified,
            "the snapshot itself is not published"
        );
        assert_eq!(items[0].pod.as_ref().map(|p| p.spec.replicas), Some(2));
        assert_eq!(items[1].kind, WatchKind::Event);
        assert_eq!(items[1].event.as_ref().map(|e| e.id), Some(7));
        source.pods.lock().unwrap_or_else(|e| e.into_inner()).clear();
        tx.send(Change::Pod { name: "a".into() }).expect("task listens");
        let gone = collect(feed.subscribe(Some(start + 2)).expect("resume"), 1).await;
        assert_eq!(gone[0].kind, WatchKind::Deleted);
        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the task ends on shutdown")
            .expect("no panic");
    }

    #[tokio::test]
    async fn changes_are_numbered_and_resumable() {
        let feed = Feed::new();
        let start = feed.version();
        feed.pod_seen(pod("a", 1));
        feed.pod_seen(pod("a", 1)); // unchanged: nothing published
        feed.pod_seen(pod("a", 2));
        feed.pod_gone("a");
        feed.pod_gone("a"); // already gone: nothing published
        assert_eq!(feed.version(), start + 3);

        let all = collect(feed.subscribe(Some(start)).expect("resume"), 3).await;
        let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [WatchKind::Added, WatchKind::Modified, WatchKind::Deleted]);
        assert_eq!(all[2].version, start + 3);

        let after = collect(feed.subscribe(Some(start + 2)).expect("resume"), 1).await;
        assert_eq!(after[0].kind, WatchKind::Deleted);
    }

    #[tokio::test]
    async fn unknown_versions_are_expired() {
        let feed = Feed::new();
        let start = feed.version();
        assert!(matches!(feed.subscribe(Some(start - 1)), Err(Error::Expired(_))));
        assert!(matches!(feed.subscribe(Some(start + 1)), Err(Error::Expired(_))));
        assert!(feed.subscribe(Some(start)).is_ok());
    }

    #[tokio::test]
    async fn a_watch_without_version_starts_with_a_snapshot_then_goes_live() {
        let feed = Feed::new();
        feed.pod_seen(pod("b", 1));
        feed.pod_seen(pod("a", 1));
        let stream = feed.subscribe(None).expect("watch");
        feed.pod_seen(pod("a", 3));
        let items = collect(stream, 3).await;
        assert_eq!(items[0].name, "a");
        assert_eq!(items[0].kind, WatchKind::Added);
        assert_eq!(items[1].name, "b");
        assert_eq!(items[2].kind, WatchKind::Modified);
        assert_eq!(items[2].pod.as_ref().map(|p| p.spec.replicas), Some(3));
    }

    #[tokio::test]
    async fn the_history_is_bounded() {
        let feed = Feed::new();
        let start = feed.version();
        for i in 0..(HISTORY + 10) {
            feed.pod_seen(pod("a", u32::try_from(i % 7).unwrap_or(0) + 1));
        }
        assert!(matches!(feed.subscribe(Some(start)), Err(Error::Expired(_))));
        let newest = feed.version();
        assert!(feed.subscribe(Some(newest - HISTORY as u64)).is_ok());
    }

    #[tokio::test]
    async fn the_history_is_bounded_by_bytes_and_a_slow_watcher_expires() {
        let feed = Feed::new();
        let start = feed.version();
        let slow = feed.subscribe(Some(start)).expect("watch");
        // Each view carries ~200 KiB of env: 200 of them are 40 MiB, far over the byte budget.
        for i in 0..200u32 {
            let mut p = pod("big", 1);
            p.spec = p.spec.with_env("V", format!("{i}{}", "x".repeat(200 * 1024)));
            feed.pod_seen(p);
        }
        let held: usize = lock(&feed.state).history_bytes;
        assert!(held <= HISTORY_BYTES, "{held}");
        let kept = lock(&feed.state).history.len();
        assert!((70..200).contains(&kept), "{kept}");
        assert!(matches!(feed.subscribe(Some(start)), Err(Error::Expired(_))));
        // The watcher that read nothing meanwhile learns it fell behind, once.
        let items: Vec<_> = tokio::time::timeout(std::time::Duration::from_secs(5), slow.collect::<Vec<_>>())
            .await
            .expect("ends");
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err(Error::Expired(_))));
        // A watcher from the oldest kept version reads every kept entry, then live ones.
        let floor = lock(&feed.state).floor;
        let resumed = feed.subscribe(Some(floor)).expect("resume");
        feed.pod_seen(pod("late", 1));
        let got = collect(resumed, kept + 1).await;
        assert_eq!(got.last().map(|e| e.name.as_str()), Some("late"));
        assert!(got.windows(2).all(|w| w[1].version == w[0].version + 1));
    }
}

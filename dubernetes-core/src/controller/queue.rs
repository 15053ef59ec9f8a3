//! The work queue: one key (a pod name) per unit of work.
//!
//! Two promises, as kube-runtime's scheduler makes them:
//! - **Coalesced wakes.** Each key has a worker with a one-slot channel: any
//!   number of wakes while its reconcile runs collapse into exactly one more.
//!   Different keys run concurrently; one key never runs twice at once.
//! - **Deduplicated delayed requeues.** "Look again at `t`" is one entry per
//!   key in a timer set served by one task, not a sleeping task per request:
//!   a key's newest answer replaces its older one (the latest reconcile knows
//!   best when to look again), and a reconcile that needs nothing more clears it.

use crate::sync::lock;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

#[derive(Default)]
struct Delayed {
    /// When each key is due.
    at: HashMap<String, Instant>,
    /// The same entries, ordered by time.
    order: BTreeSet<(Instant, String)>,
}

/// Keyed work with coalesced wakes and deduplicated delayed requeues.
#[derive(Default)]
pub(crate) struct WorkQueue {
    workers: Mutex<HashMap<String, mpsc::Sender<()>>>,
    delayed: Mutex<Delayed>,
    /// An entry was added or moved (the timer may have to wake earlier).
    changed: Notify,
}

impl WorkQueue {
    /// Wakes `key`. Returns a receiver when `key` has no worker yet: the
    /// caller starts one that reads it (see [`retire`](Self::retire)).
    pub(crate) fn wake(&self, key: &str) -> Option<mpsc::Receiver<()>> {
        let mut workers = lock(&self.workers);
        if let Some(tx) = workers.get(key)
            && !tx.is_closed()
        {
            // Full: a reconcile is already queued, which will see this change too.
            let _ = tx.try_send(());
            return None;
        }
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(());
        workers.insert(key.to_string(), tx);
        Some(rx)
    }

    /// Asks to look at `key` again at `at` (None: no need), replacing any
    /// earlier answer for it.
    pub(crate) fn schedule(&self, key: &str, at: Option<Instant>) {
        let mut d = lock(&self.delayed);
        if let Some(old) = d.at.remove(key) {
            d.order.remove(&(old, key.to_string()));
        }
        if let Some(at) = at {
            d.at.insert(key.to_string(), at);
            d.order.insert((at, key.to_string()));
            drop(d);
            self.changed.notify_one();
        }
    }

    /// When `key` is due, if it is scheduled.
    #[cfg(test)]
    pub(crate) fn scheduled(&self, key: &str) -> Option<Instant> {
        lock(&self.delayed).at.get(key).copied()
    }

    /// A worker with nothing left to do asks to end: true (and the key is
    /// forgotten) unless a wake arrived meanwhile.
    pub(crate) fn retire(&self, key: &str, rx: &mpsc::Receiver<()>) -> bool {
        let mut workers = lock(&self.workers);
        if !rx.is_empty() {
            return false;
        }
        workers.remove(key);
        self.schedule(key, None);
        true
    }

    /// Waits until the earliest scheduled key is due, takes it off the
    /// schedule and returns it.
    pub(crate) async fn next_due(&self) -> String {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let earliest = lock(&self.delayed).order.first().cloned();
            match earliest {
                None => changed.await,
                Some((at, key)) if at <= Instant::now() => {
                    let mut d = lock(&self.delayed);
                    d.order.remove(&(at, key.clone()));
                    d.at.remove(&key);
                    return key;
                }
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = changed => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delayed_requeues_of_one_key_are_one_wake_at_the_newest_time() {
        let q = WorkQueue::default();
        let t0 = Instant::now();
        for s in [5u64, 3, 9, 7] {
            q.schedule("web", Some(t0 + Duration::from_secs(s)));
        }
        q.schedule("api", Some(t0 + Duration::from_secs(4)));
        assert_eq!(q.next_due().await, "api");
        assert_eq!(t0.elapsed(), Duration::from_secs(4));
        assert_eq!(q.next_due().await, "web");
        assert_eq!(t0.elapsed(), Duration::from_secs(7), "the newest answer (7 s) wins");
        // Nothing else is due: the queue waits.
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), q.next_due())
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_request_wakes_a_waiting_timer_and_none_clears() {
        let q = std::sync::Arc::new(WorkQueue::default());
        let t0 = Instant::now();
        q.schedule("web", Some(t0 + Duration::from_secs(60)));
        q.schedule("gone", Some(t0 + Duration::from_secs(1)));
        q.schedule("gone", None);
        let waiter = tokio::spawn({
            let q = std::sync::Arc::clone(&q);
            async move { (q.next_due().await, t0.elapsed()) }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        q.schedule("web", Some(t0 + Duration::from_secs(10)));
        let (key, at) = waiter.await.expect("timer task");
        assert_eq!((key.as_str(), at), ("web", Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_coalesce_and_a_worker_retires_only_when_idle() {
        let q = WorkQueue::default();
        let mut rx = q.wake("web").expect("a new key gets a worker");
        assert!(q.wake("web").is_none(), "a second wake joins the queued one");
        assert!(q.wake("web").is_none());
        assert!(rx.recv().await.is_some());
        assert!(rx.is_empty(), "three wakes, one pending reconcile");
        q.wake("web");
        assert!(!q.retire("web", &rx), "a wake arrived: the worker goes on");
        assert!(rx.recv().await.is_some());
        q.schedule("web", Some(Instant::now() + Duration::from_secs(5)));
        assert!(q.retire("web", &rx));
        assert_eq!(q.scheduled("web"), None, "a retired key is off the schedule");
        assert!(q.wake("web").is_some(), "after retiring, a wake starts a new worker");
    }
}

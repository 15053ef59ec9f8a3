//! The crate's one way to take a std mutex.
//!
//! The in-memory state of the controller, the ingress, the health checks, the
//! change feed, ACME and the store cache sits behind `std::sync::Mutex`, not
//! tokio's: each critical section is a few map operations and never spans an
//! `.await`, which is when tokio's documentation recommends the std mutex
//! (cheaper, and a guard held across an `.await` does not compile in a
//! `Send` future, so the rule is checked). A lock that must be held across
//! an `.await` is a tokio mutex and says why where it is declared.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`. A mutex poisoned by a panic while it was held is taken as it
/// is: the state behind these locks is maps changed one operation at a time,
/// so a panic leaves at worst an entry that the next (level-triggered)
/// reconcile, probe or sync corrects; refusing the lock instead would stop
/// every later one for good.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! Crash-loop back-off, per replica slot: pure bookkeeping of (state,
//! observation, `now`), no IO.
//!
//! A *slot* is one of a pod's `replicas` places; each replica carries its
//! slot's id in the [`LABEL_SLOT`] label, and a replacement takes the slot of
//! the replica it replaces, so a crash loop is counted along one lineage of
//! containers. Why slots and not the pod: one replica that keeps crashing must
//! not delay the replacement of another, and a kill from outside must not make
//! the next (unrelated) exit look like the third crash in a row.
//!
//! What counts as a crash: the app's own exit, or an OOM kill. A kill, stop or
//! `rm -f` from outside (the engine reports a `kill` event before the `die`)
//! is not the app's fault: its replacement starts at once and the slot's
//! streak is left as it was.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Label: the replica slot a container fills (see the module docs).
pub(crate) const LABEL_SLOT: &str = "io.dubernetes.slot";

/// Crash-loop backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackoffSettings {
    /// Delay before the second restart in a row; doubles after that.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// A replica that ran this long before it exited is replaced at once and
    /// resets the back-off; quicker exits in a row back off.
    pub reset_after: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(10),
        }
    }
}

/// Why a replica stopped running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCause {
    /// It exited on its own.
    Crash,
    /// The kernel killed it for memory (`oom` event).
    Oom,
    /// Someone outside killed, stopped or force-removed it (`kill` event with this signal).
    Killed(Option<i64>),
}

impl ExitCause {
    /// Whether this exit counts towards back-off and fast failure.
    pub(crate) fn is_crash(self) -> bool {
        matches!(self, ExitCause::Crash | ExitCause::Oom)
    }
}

/// One slot's crash history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Quick crashes in a row.
    pub streak: u32,
    pub last_failure: Option<Instant>,
    /// The slot's replacement may not be created before this.
    pub next_allowed: Instant,
    /// No container fills the slot (its last one exited and was removed).
    pub vacant: bool,
}

/// The slots of one pod that have a crash history (slots that never crashed
/// need no entry).
#[derive(Debug, Clone, Default)]
pub(crate) struct Slots {
    slots: HashMap<String, Slot>,
}

/// What [`Slots::on_exit`] decided for one exited replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitDecision {
    /// How long its replacement waits.
    pub delay: Duration,
    /// Whether it counts as a crash.
    pub crash: bool,
}

/// The delay before restart number `restarts_before + 1` of a slot: none for
/// the first, then `initial`, doubling, capped at `max`.
pub(crate) fn crash_delay(restarts_before: u32, backoff: BackoffSettings) -> Duration {
    if restarts_before == 0 {
        return Duration::ZERO;
    }
    let exp = (restarts_before - 1).min(30);
    backoff.initial.saturating_mul(1u32 << exp).min(backoff.max)
}

impl Slots {
    /// Records that the replica in `slot` stopped after running for `lived`.
    pub(crate) fn on_exit(
        &mut self,
        slot: &str,
        cause: ExitCause,
        lived: Duration,
        now: Instant,
        backoff: BackoffSettings,
    ) -> ExitDecision {
        let entry = self.slots.entry(slot.to_string()).or_insert(Slot {
            streak: 0,
            last_failure: None,
            next_allowed: now,
            vacant: true,
        });
        entry.vacant = true;
        if !cause.is_crash() {
            entry.next_allowed = now;
            return ExitDecision {
                delay: Duration::ZERO,
                crash: false,
            };
        }
        // A replica that ran for `reset_after` is not crash-looping; neither
        // is a slot whose last crash is long ago.
        if lived >= backoff.reset_after
            || entry
                .last_failure
                .is_some_and(|t| now.duration_since(t) > backoff.reset_after.saturating_mul(4))
        {
            entry.streak = 0;
        }
        let delay = crash_delay(entry.streak, backoff);
        entry.streak = entry.streak.saturating_add(1);
        entry.last_failure = Some(now);
        entry.next_allowed = now + delay;
        ExitDecision { delay, crash: true }
    }

    /// Which slots `count` new replicas fill now: vacant slots whose back-off
    /// is over first, then fresh slots (from `fresh`) for replicas no vacant
    /// slot accounts for. Vacant slots still backing off hold their replica
    /// back; the second value is when the first of them may go.
    pub(crate) fn take(
        &mut self,
        count: usize,
        now: Instant,
        mut fresh: impl FnMut() -> String,
    ) -> (Vec<String>, Option<Instant>) {
        let mut vacant: Vec<(&String, &mut Slot)> = self.slots.iter_mut().filter(|(_, s)| s.vacant).collect();
        vacant.sort_by_key(|(id, s)| (s.next_allowed, (*id).clone()));
        let mut chosen = Vec::new();
        let mut wait = None;
        let mut accounted = 0;
        for (id, s) in vacant {
            if accounted == count {
                break;
            }
            accounted += 1;
            if s.next_allowed <= now {
                s.vacant = false;
                chosen.push(id.clone());
            } else {
                wait = Some(wait.map_or(s.next_allowed, |w: Instant| w.min(s.next_allowed)));
            }
        }
        for _ in accounted..count {
            chosen.push(fresh());
        }
        (chosen, wait)
    }

    /// Forgets slots that are neither vacant nor filled by a live replica
    /// (scaled down, replaced by a rollout), and vacant ones with no crash
    /// for `4 × reset_after` (the pod got a new shape since).
    pub(crate) fn retain_live(&mut self, live: &[&str], now: Instant, backoff: BackoffSettings) {
        let forget_after = backoff.reset_after.saturating_mul(4);
        self.slots.retain(|id, s| {
            if s.vacant {
                s.next_allowed > now || s.last_failure.is_some_and(|t| now.duration_since(t) <= forget_after)
            } else {
                live.contains(&id.as_str())
            }
        });
    }

    /// The latest back-off end of any vacant slot, for the pod's status.
    pub(crate) fn backing_off_until(&self, now: Instant) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| s.vacant && s.next_allowed > now)
            .map(|s| s.next_allowed)
            .max()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<&Slot> {
        self.slots.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> BackoffSettings {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(10),
        }
    }

    fn fresh() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("fresh{n}")
        }
    }

    #[test]
    fn crash_backoff_starts_at_zero_doubles_and_caps() {
        let delays: Vec<_> = (0..7).map(|n| crash_delay(n, b()).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 10, 10]);
        assert_eq!(crash_delay(u32::MAX, b()), Duration::from_secs(10));
    }

    #[test]
    fn one_slot_crash_loop_does_not_delay_another() {
        let now = Instant::now();
        let mut slots = Slots::default();
        let quick = Duration::from_millis(100);
        for _ in 0..3 {
            slots.on_exit("a", ExitCause::Crash, quick, now, b());
            slots.take(1, now, fresh());
        }
        let d = slots.on_exit("a", ExitCause::Crash, quick, now, b());
        assert_eq!(d.delay, Duration::from_secs(4));
        // Slot b crashes for the first time: replaced at once.
        let d = slots.on_exit("b", ExitCause::Crash, quick, now, b());
        assert_eq!(d.delay, Duration::ZERO);
        // Two replicas missing: b's goes now, a's waits.
        let (now_slots, wait) = slots.take(2, now, fresh());
        assert_eq!(now_slots, ["b"]);
        assert_eq!(wait, Some(now + Duration::from_secs(4)));
        // Three missing (one more for a scale up): a fresh slot goes now too.
        let (now_slots, _) = slots.take(2, now, fresh());
        assert_eq!(now_slots, ["fresh1"]);
    }

    #[test]
    fn kills_from_outside_are_replaced_at_once_and_leave_the_streak() {
        let now = Instant::now();
        let mut slots = Slots::default();
        let quick = Duration::from_millis(100);
        for _ in 0..5 {
            let d = slots.on_exit("a", ExitCause::Killed(Some(9)), quick, now, b());
            assert_eq!(
                d,
                ExitDecision {
                    delay: Duration::ZERO,
                    crash: false
                }
            );
            assert_eq!(slots.take(1, now, fresh()).0, ["a"]);
        }
        assert_eq!(slots.get("a").map(|s| s.streak), Some(0));
        // An OOM kill is a crash.
        slots.on_exit("a", ExitCause::Oom, quick, now, b());
        slots.take(1, now, fresh());
        let d = slots.on_exit("a", ExitCause::Oom, quick, now, b());
        assert_eq!(
            d,
            ExitDecision {
                delay: Duration::from_secs(1),
                crash: true
            }
        );
    }

    #[test]
    fn a_long_run_resets_the_streak() {
        let now = Instant::now();
        let mut slots = Slots::default();
        slots.on_exit("a", ExitCause::Crash, Duration::ZERO, now, b());
        slots.on_exit("a", ExitCause::Crash, Duration::ZERO, now, b());
        let d = slots.on_exit("a", ExitCause::Crash, Duration::from_secs(60), now, b());
        assert_eq!(d.delay, Duration::ZERO);
    }

    #[test]
    fn forgotten_when_gone() {
        let now = Instant::now();
        let mut slots = Slots::default();
        slots.on_exit("a", ExitCause::Crash, Duration::ZERO, now, b());
        slots.take(1, now, fresh());
        slots.retain_live(&[], now, b());
        assert!(slots.get("a").is_none());
        slots.on_exit("b", ExitCause::Crash, Duration::ZERO, now, b());
        let later = now + Duration::from_secs(41);
        slots.retain_live(&[], later, b());
        assert!(slots.get("b").is_none());
    }
}

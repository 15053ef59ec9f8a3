//! Booking exited replicas: crash or kill, crash-loop back-off per slot,
//! failures of a rollout, and the status and events that say so.

use super::prelude::*;

impl Context {
    /// Books one exited replica: a crash (its own exit, or OOM) counts
    /// towards its slot's back-off and, for a replica of a revision being
    /// rolled out, towards the rollout's `max_failures`; a kill from outside
    /// is replaced at once.
    pub(super) async fn record_exit(
        &self,
        pod: &str,
        c: &Observed,
        backoff: BackoffSettings,
        now: Instant,
        new_in_rollout: bool,
    ) {
        let cause = lock(&self.book)
            .exit_notes
            .remove(&c.id)
            .map(|(cause, _)| cause)
            .unwrap_or(ExitCause::Crash);
        let lived = Duration::from_secs((crate::clock::now_ms() / 1000 - c.created).max(0) as u64);
        let decision =
            lock(&self.book)
                .slots
                .entry(pod.to_string())
                .or_default()
                .on_exit(slot_of(c), cause, lived, now, backoff);
        let code = c.exit_code().map(|c| c.to_string()).unwrap_or_else(|| "unknown".into());
        self.runtime.metrics().restarted(pod, !decision.delay.is_zero());
        if !decision.crash {
            // Counted as a restart (as Kubernetes' restartCount), never as a crash.
            {
                let mut book = lock(&self.book);
                let status = &mut book.status;
                let s = status.entry(pod.to_string()).or_default();
                s.restarts = s.restarts.saturating_add(1);
                s.last_exit_code = c.exit_code();
            }
            let signal = match cause {
                ExitCause::Killed(Some(sig)) => format!(" (signal {sig})"),
                _ => String::new(),
            };
            self.event(
                pod,
                "Normal",
                "Killed",
                &format!(
                    "{} was killed or stopped from outside{signal}, exit code {code}; replaced at once",
                    c.name
                ),
            )
            .await;
            return;
        }
        // Only a quick exit may be a crash loop whose status shows the log
        // (one engine call fewer on a plain heal); a rollout's failure always
        // says why. Read before the status changes, so status and events move together.
        let mut log_tail = String::new();
        if new_in_rollout || lived < backoff.reset_after {
            log_tail = self.runtime.log_tail(&c.id, 10).await.unwrap_or_default();
        }
        let oom = if cause == ExitCause::Oom {
            ", killed for memory (OOM)"
        } else {
            ""
        };
        if new_in_rollout && let Some(r) = lock(&self.book).rollouts.get_mut(pod) {
            r.record_failure(format!(
                "{} exited with code {code}{oom}. Last log lines:\n{}",
                c.name,
                log_tail.trim_end()
            ));
        }
        let restarts = {
            let mut book = lock(&self.book);
            let status = &mut book.status;
            let s = status.entry(pod.to_string()).or_default();
            s.restarts = s.restarts.saturating_add(1);
            s.last_exit_code = c.exit_code();
            if !decision.delay.is_zero() {
                s.reason = Some("CrashLoopBackOff".into());
                s.message = Some(format!(
                    "replicas keep exiting (last exit code {code}{oom}); restarting in {:?}. Last log lines:\n{}",
                    decision.delay,
                    log_tail.trim_end()
                ));
            }
            s.restarts
        };
        self.event(
            pod,
            "Warning",
            "Exited",
            &format!(
                "{} exited (code {code}{oom}); restart #{restarts}{}",
                c.name,
                if decision.delay.is_zero() {
                    String::new()
                } else {
                    format!(", back-off {:?}", decision.delay)
                }
            ),
        )
        .await;
    }

    /// Remembers why a replica is about to die (an OOM kill wins over a kill).
    pub(super) fn note_exit(&self, id: &str, cause: ExitCause) {
        let now = Instant::now();
        let mut book = lock(&self.book);
        let notes = &mut book.exit_notes;
        // Notes of containers that were removed without an exit to book
        // (`docker rm -f`) are dropped after a while.
        notes.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(600));
        if cause != ExitCause::Oom && notes.get(id).is_some_and(|(c, _)| *c == ExitCause::Oom) {
            return;
        }
        notes.insert(id.to_string(), (cause, now));
    }
}

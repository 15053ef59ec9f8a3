//! The cron scheduler: a cron pod (`schedule`) keeps no replicas; at each
//! tick the leader starts a one-off run of its current revision (a run of
//! `runs.rs`, with the pod's own `command` and `args`), labelled with the
//! tick it runs for ([`LABEL_CRON`], Unix seconds).
//!
//! What ran is read from the engine, not remembered: the newest tick among a
//! pod's runs (at least one exited run is always kept, `history` being 1 or
//! more) is the floor under which nothing runs again, so a new leader, or a
//! restarted server, never runs a tick twice. Beside it, the scheduler's
//! memory holds the last tick it handled per pod (a tick skipped under
//! `concurrency: forbid`, or missed, leaves no container), and the pod's last
//! change is a floor too (a tick before the spec was written never runs).
//! Of the ticks above the floor only the latest counts: missed ones run once,
//! and only when the server gets to it within `starting_deadline`.
//!
//! One pass looks at every cron pod: it starts a due tick (per
//! `concurrency`), stops runs past `timeout`, removes exited runs beyond
//! `history`, and removes the runs of pods that are gone or no longer cron
//! pods (running ones are killed). Passes run on the leader only, at each
//! tick and at least every [`MAX_PASS_INTERVAL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::Result;
use crate::labels::{LABEL_CRON, LABEL_RUN};
use crate::orchestrator::Dubernetes;
use crate::owned_engine::Observed;
use crate::store::StoredPod;

/// Longest time between two passes (timeouts, history and deleted pods are
/// handled this late at most).
pub const MAX_PASS_INTERVAL: Duration = Duration::from_secs(5);

/// The last tick handled per pod, by this server.
#[derive(Debug, Default)]
pub(crate) struct CronMemory {
    handled: Mutex<HashMap<String, i64>>,
}

impl CronMemory {
    fn get(&self, pod: &str) -> Option<i64> {
        crate::sync::lock(&self.handled).get(pod).copied()
    }

    fn set(&self, pod: &str, tick: i64) {
        crate::sync::lock(&self.handled).insert(pod.to_string(), tick);
    }

    fn forget_others(&self, pods: &[&str]) {
        crate::sync::lock(&self.handled).retain(|pod, _| pods.contains(&pod.as_str()));
    }
}

/// The tick a run was started for, if it is a cron pod's run.
pub(crate) fn scheduled_of(c: &Observed) -> Option<i64> {
    c.labels.get(LABEL_CRON)?.parse().ok()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A tick as people read it: RFC 3339 in UTC.
fn show(tick: i64) -> String {
    jiff::Timestamp::from_second(tick).map_or_else(|_| tick.to_string(), |t| t.to_string())
}

/// The run's name for a tick: `POD-cron-YYYYMMDDHHMM` (UTC), one per tick,
/// so the engine refuses a second container for the same tick.
fn run_name(pod: &str, tick: i64) -> String {
    let stamp =
        jiff::Timestamp::from_second(tick).map_or_else(|_| tick.to_string(), |t| t.strftime("%Y%m%d%H%M").to_string());
    format!("{pod}-cron-{stamp}")
}

/// The tick to act on now, if any: the latest one at or before `now`,
/// above `floor`.
pub(crate) fn due_tick(schedule: &crate::spec::CronSchedule, floor: i64, now: i64) -> Option<i64> {
    schedule.latest_at_or_before(now).filter(|tick| *tick > floor)
}

/// The exited runs past `history`, oldest ticks first out: the ones to remove.
pub(crate) fn beyond_history<'a>(runs: &[&'a Observed], history: u32) -> Vec<&'a Observed> {
    let mut exited: Vec<&Observed> = runs.iter().copied().filter(|c| !c.state.is_live()).collect();
    exited.sort_by_key(|c| std::cmp::Reverse((scheduled_of(c).unwrap_or(0), c.created)));
    exited.into_iter().skip(history as usize).collect()
}

impl Dubernetes {
    /// Runs the cron scheduler until `shutdown` (the server spawns this):
    /// a pass at each tick and at least every [`MAX_PASS_INTERVAL`], while
    /// this server leads.
    pub async fn cron_loop(self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let wait = if self.handle.leading() {
                match self.cron_pass().await {
                    Ok(wait) => wait,
                    Err(e) => {
                        tracing::warn!(error = %e, "the cron pass failed; retrying");
                        MAX_PASS_INTERVAL
                    }
                }
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One look at every cron pod; returns the time until the next tick
    /// (at most [`MAX_PASS_INTERVAL`]).
    pub(crate) async fn cron_pass(&self) -> Result<Duration> {
        let pods = self.handle.store.list().await?;
        let runs = self.run_containers(None).await?;
        let crons: Vec<&StoredPod> = pods.iter().filter(|p| p.spec.is_cron()).collect();
        let names: Vec<&str> = crons.iter().map(|p| p.spec.name.as_str()).collect();
        self.runs.cron.forget_others(&names);
        let mut by_pod: HashMap<&str, Vec<&Observed>> = HashMap::new();
        for c in runs.iter().filter(|c| scheduled_of(c).is_some()) {
            let pod = c.pod.as_deref().unwrap_or_default();
            by_pod.entry(pod).or_default().push(c);
        }
        // Scheduled runs of a pod deleted, or no longer a cron pod, go (killed if running).
        for (pod, list) in &by_pod {
            if !names.contains(pod) {
                for c in list {
                    tracing::info!(pod, run = %c.name, "removing a scheduled run of a pod without a schedule");
                    self.handle.runtime.remove(&c.id).await?;
                }
            }
        }
        let passes = crons.iter().map(|p| {
            let list = by_pod.get(p.spec.name.as_str()).cloned().unwrap_or_default();
            self.cron_pod(p, list)
        });
        let now = now_unix();
        let next = futures::future::join_all(passes).await.into_iter().flatten().min();
        let wait = next.map_or(MAX_PASS_INTERVAL, |at| {
            // Wake just after the tick's second begins.
            Duration::from_millis(((at - now).max(0) as u64) * 1000 + 50)
        });
        Ok(wait.min(MAX_PASS_INTERVAL))
    }

    /// One cron pod's pass; returns its next tick.
    async fn cron_pod(&self, stored: &StoredPod, runs: Vec<&Observed>) -> Option<i64> {
        let spec = &stored.spec;
        let pod = spec.name.as_str();
        let schedule = spec.cron_schedule()?;
        let ctx = self.handle.ctx();
        let now = now_unix();
        let grace = spec.stop_grace_period.unwrap_or(self.handle.settings.stop_grace);
        let live: Vec<&Observed> = runs.iter().copied().filter(|c| c.state.is_live()).collect();
        if let Some(timeout) = spec.timeout {
            for c in live.iter().filter(|c| now - c.created > timeout.as_secs() as i64) {
                let name = c.labels.get(LABEL_RUN).cloned().unwrap_or_default();
                let message = format!(
                    "run {name} ran longer than its timeout of {}; stopping it",
                    humantime::format_duration(timeout)
                );
                ctx.event(pod, "Warning", "RunTimedOut", &message).await;
                if let Err(e) = self.handle.runtime.stop(&c.id, grace).await {
                    tracing::warn!(pod, error = %e, "stopping a run past its timeout failed");
                }
            }
        }
        let last_ran = runs.iter().filter_map(|c| scheduled_of(c)).max().unwrap_or(i64::MIN);
        let floor = last_ran
            .max(self.runs.cron.get(pod).unwrap_or(i64::MIN))
            .max(stored.updated_at / 1000);
        if let Some(tick) = due_tick(&schedule, floor, now) {
            self.runs.cron.set(pod, tick);
            self.cron_tick(stored, tick, now, &live, grace).await;
        }
        for c in beyond_history(&runs, spec.cron_history()) {
            if let Err(e) = self.handle.runtime.remove(&c.id).await {
                tracing::warn!(pod, error = %e, "removing a run beyond the history failed");
            }
        }
        schedule.next_after(now)
    }

    /// Acts on a due tick: too late, skipped (`forbid`), or run (after
    /// stopping the running ones with `replace`).
    async fn cron_tick(&self, stored: &StoredPod, tick: i64, now: i64, live: &[&Observed], grace: Duration) {
        let spec = &stored.spec;
        let pod = spec.name.as_str();
        let ctx = self.handle.ctx();
        let late = Duration::from_secs((now - tick).max(0) as u64);
        if late > spec.starting_deadline() {
            let message = format!(
                "the tick of {} was missed (the server got to it {} late, past starting_deadline {}); waiting for the next",
                show(tick),
                humantime::format_duration(late),
                humantime::format_duration(spec.starting_deadline())
            );
            ctx.event(pod, "Warning", "MissedSchedule", &message).await;
            return;
        }
        let running = |c: &&Observed| c.labels.get(LABEL_RUN).cloned().unwrap_or_default();
        match spec.cron_concurrency() {
            crate::spec::Concurrency::Forbid if !live.is_empty() => {
                let names: Vec<String> = live.iter().map(running).collect();
                let message = format!(
                    "the tick of {} was skipped: {} still running (concurrency: forbid)",
                    show(tick),
                    names.join(", ")
                );
                ctx.event(pod, "Normal", "SkippedTick", &message).await;
                return;
            }
            crate::spec::Concurrency::Replace => {
                for c in live {
                    let message = format!(
                        "stopping run {} for the tick of {} (concurrency: replace)",
                        running(c),
                        show(tick)
                    );
                    ctx.event(pod, "Normal", "ReplacingRun", &message).await;
                    if let Err(e) = self.handle.runtime.stop(&c.id, grace).await {
                        tracing::warn!(pod, error = %e, "stopping a run to replace it failed");
                    }
                }
            }
            _ => {}
        }
        let run = super::runs::NewRun {
            name: run_name(pod, tick),
            command: None,
            labels: vec![(LABEL_CRON.to_string(), tick.to_string())],
        };
        match self.create_run(stored, run).await {
            Ok((run, _)) => {
                let message = format!("run {} started for the tick of {}", run.name, show(tick));
                ctx.event(pod, "Normal", "RunStarted", &message).await;
            }
            Err(e) => {
                let message = format!("the run for the tick of {} could not start: {e}", show(tick));
                ctx.event(pod, "Warning", "RunFailed", &message).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::ROLE_RUN;
    use crate::owned_engine::ContainerState;

    fn run(id: &str, tick: i64, state: ContainerState) -> Observed {
        Observed {
            id: id.into(),
            name: id.into(),
            role: ROLE_RUN.into(),
            pod: Some("job".into()),
            revision: None,
            state,
            status: String::new(),
            ip: None,
            created: tick + 1,
            labels: HashMap::from([(LABEL_CRON.to_string(), tick.to_string())]),
            ready: false,
        }
    }

    #[test]
    fn only_the_latest_tick_above_the_floor_is_due() {
        let every_minute = crate::spec::CronSchedule::new("* * * * *", None).expect("valid");
        let now = 1_796_642_250; // 11:17:30
        assert_eq!(due_tick(&every_minute, i64::MIN, now), Some(1_796_642_220)); // 11:17
        assert_eq!(due_tick(&every_minute, 1_796_642_220, now), None, "ran already");
        // Down for ten minutes: the latest missed tick is due, once.
        assert_eq!(due_tick(&every_minute, 1_796_641_620, now), Some(1_796_642_220));
    }

    #[test]
    fn history_keeps_the_newest_exited_runs() {
        let runs = [
            run("a", 100, ContainerState::Exited),
            run("b", 160, ContainerState::Exited),
            run("c", 220, ContainerState::Running),
            run("d", 40, ContainerState::Exited),
        ];
        let refs: Vec<&Observed> = runs.iter().collect();
        let ids = |v: Vec<&Observed>| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(beyond_history(&refs, 2)), ["d"]);
        assert_eq!(ids(beyond_history(&refs, 1)), ["a", "d"]);
        assert!(beyond_history(&refs, 5).is_empty());
        assert_eq!(run_name("job", 1_796_642_220), "job-cron-202612071117");
    }
}

//! Deploy hooks (a pod's `hooks:`, see [`dubernetes_api::Hooks`]): one-off
//! containers of a revision ([`Context::start_one_off`], as `dubectl run`),
//! run by the controller around that revision's rollout.
//!
//! State lives where it survives a restart or a change of leader: a running
//! hook is a container labelled `io.dubernetes.role=hook`,
//! `io.dubernetes.hook=pre_deploy|post_deploy` and
//! `io.dubernetes.hook-revision=N`, named `dub-INSTANCE-POD-pre-deploy-N` (a
//! second create of the same hook fails on the name); its result, once read,
//! is the revision's `reason` and `message` in the store
//! ([`Store::note_revision`](crate::store::Store::note_revision)), written
//! before the container is removed. A restarted controller adopts a running
//! hook (its deadline counts from the container's creation) and reads an
//! ended one's exit code; a recorded result is never run again.
//!
//! `pre_deploy` holds the reconcile before the planner while it runs: no
//! replica of the new revision is created, the old ones are left as they are
//! (not healed meanwhile). Passed: the rollout goes on. Failed, or past
//! `hooks.timeout` (killed): the revision fails with `HookFailed` and the pod
//! goes back to its last complete revision, as any failed rollout does.

use super::one_off::OneOff;
use super::prelude::*;
use crate::owned_engine::ContainerState;
use crate::store::RolloutOutcome;

/// The role label of a hook's container.
pub(crate) const ROLE_HOOK: &str = "hook";
/// Label: which hook (`pre_deploy` or `post_deploy`).
pub(crate) const LABEL_HOOK: &str = "io.dubernetes.hook";
/// Label: the number of the revision the hook runs for.
pub(crate) const LABEL_HOOK_REVISION: &str = "io.dubernetes.hook-revision";

const PRE: &str = "pre_deploy";
const POST: &str = "post_deploy";

/// The reason of a revision whose `pre_deploy` hook failed or timed out.
pub(crate) const HOOK_FAILED: &str = "HookFailed";
/// The reason noted on a revision whose `pre_deploy` hook passed.
pub(crate) const PRE_DEPLOY_PASSED: &str = "PreDeployHookPassed";
/// The reasons noted on a complete revision by its `post_deploy` hook.
pub(crate) const POST_DEPLOY_PASSED: &str = "PostDeployHookPassed";
pub(crate) const POST_DEPLOY_FAILED: &str = "PostDeployHookFailed";

/// Log lines of an ended hook kept in its result.
const HOOK_LOG_LINES: usize = 10;

/// What the hooks say about one reconcile.
#[derive(Default)]
pub(super) struct HookStep {
    /// Stop the reconcile here (a `pre_deploy` runs, waits or failed).
    pub hold: Option<Next>,
    /// Look again then (a running hook's deadline).
    pub recheck: Option<Instant>,
}

/// How a hook ended.
enum Ended {
    Exited { code: Option<i64>, tail: String },
    TimedOut { tail: String },
}

impl Ended {
    fn passed(&self) -> bool {
        matches!(self, Ended::Exited { code: Some(0), .. })
    }

    /// "exited with code 3 ... Last log lines: ..." (the tail masked).
    fn describe(&self, hook: &str, number: i64, timeout: Duration) -> String {
        let (what, tail) = match self {
            Ended::Exited { code: Some(code), tail } => (format!("exited with code {code}"), tail),
            Ended::Exited { code: None, tail } => ("ended without an exit code".to_string(), tail),
            Ended::TimedOut { tail } => (
                format!(
                    "timed out after {} (hooks.timeout) and was killed",
                    humantime::format_duration(timeout)
                ),
                tail,
            ),
        };
        let tail = tail.trim_end();
        if tail.is_empty() {
            format!("the {hook} hook of revision {number} {what}; it wrote no output")
        } else {
            format!("the {hook} hook of revision {number} {what}. Last log lines:\n{tail}")
        }
    }
}

fn kind_of(c: &Observed) -> &str {
    c.labels.get(LABEL_HOOK).map_or("", String::as_str)
}

fn number_of(c: &Observed) -> Option<i64> {
    c.labels.get(LABEL_HOOK_REVISION)?.parse().ok()
}

/// How long until a hook container created at `created` (unix seconds) is past `timeout`.
fn time_left(created: i64, timeout: Duration) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let deadline = u64::try_from(created).unwrap_or(0).saturating_add(timeout.as_secs());
    Duration::from_secs(deadline.saturating_sub(now))
}

/// Whether the current revision still waits for its `pre_deploy` hook: it has
/// one, is being rolled out, is no automatic rollback (the revision it goes
/// back to ran its hook when it was new) and has no recorded pass.
fn awaits_pre_deploy(stored: &StoredPod) -> bool {
    let has_hook = stored.spec.hooks.as_ref().is_some_and(|h| h.pre_deploy.is_some());
    has_hook
        && stored.rollout.is_progressing()
        && !matches!(stored.rollout.reason.as_deref(), Some("Rollback" | PRE_DEPLOY_PASSED))
}

/// A revision that failed on its `pre_deploy` hook and had nothing to roll
/// back to: none of its replicas may start (until a new revision is applied).
fn failed_on_hook(stored: &StoredPod) -> bool {
    stored.rollout.outcome == Some(RolloutOutcome::Failed) && stored.rollout.reason.as_deref() == Some(HOOK_FAILED)
}

fn min_instant(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Context {
    /// The hooks' part of a pod's reconcile, before the planner: reads the
    /// result of every hook container that ended (and kills one past its
    /// deadline), and runs the current revision's `pre_deploy` if it must.
    /// `hooks`: the pod's hook containers.
    pub(super) async fn hooks_step(self: &Arc<Self>, stored: &StoredPod, hooks: &[Observed]) -> Result<HookStep> {
        let pod = stored.spec.name.as_str();
        let number = stored.rollout.number;
        let timeout = stored
            .spec
            .hooks
            .as_ref()
            .map_or(dubernetes_api::DEFAULT_HOOK_TIMEOUT, |h| h.timeout());
        let awaits = awaits_pre_deploy(stored);
        let mut step = HookStep::default();
        let mut current = None;
        // Another revision's pre_deploy still running (it was superseded):
        // killing a migration midway is worse than waiting for it.
        let mut earlier_running = None;
        for c in hooks {
            if c.state == ContainerState::Removing {
                continue;
            }
            let left = time_left(c.created, timeout);
            let deadline = Instant::now() + left;
            if kind_of(c) == POST {
                // Read once the revision is complete (started just before).
                if number_of(c) == Some(number) && stored.rollout.is_progressing() {
                    continue;
                }
                match self.hook_ended(c, left, &stored.spec).await? {
                    None => step.recheck = min_instant(step.recheck, deadline),
                    Some(ended) => self.record_post_deploy(pod, c, &ended, timeout).await?,
                }
            } else if number_of(c) == Some(number) && awaits {
                current = Some(c);
            } else if c.state.is_live() && !left.is_zero() {
                earlier_running = min_instant(earlier_running, deadline);
            } else {
                // Recorded already, superseded, or past its deadline.
                self.runtime.remove(&c.id).await?;
            }
        }
        if failed_on_hook(stored) {
            step.hold = Some(Next::Done);
            return Ok(step);
        }
        if !awaits {
            return Ok(step);
        }
        let Some(c) = current else {
            step.hold = Some(match earlier_running {
                Some(at) => Next::Requeue(at.saturating_duration_since(Instant::now()) + Duration::from_millis(20)),
                None => {
                    self.start_hook(stored, PRE).await?;
                    Next::Requeue(timeout)
                }
            });
            return Ok(step);
        };
        let left = time_left(c.created, timeout);
        let Some(ended) = self.hook_ended(c, left, &stored.spec).await? else {
            step.hold = Some(Next::Requeue(left + Duration::from_millis(20)));
            return Ok(step);
        };
        let message = ended.describe(PRE, number, timeout);
        if ended.passed() {
            self.store
                .note_revision(pod, number, RolloutOutcome::Progressing, PRE_DEPLOY_PASSED, &message)
                .await?;
            self.event(pod, "Normal", "HookSucceeded", &message).await;
            self.runtime.remove(&c.id).await?;
            // The rollout starts now: its progress deadline too.
            lock(&self.book).rollouts.remove(pod);
            step.hold = Some(Next::Requeue(Duration::ZERO));
            return Ok(step);
        }
        let message = format!("{message}\nNo replica of revision {number} was started.");
        self.fail_rollout(pod, number, HOOK_FAILED, &message).await?;
        self.runtime.remove(&c.id).await?;
        step.hold = Some(Next::Requeue(Duration::ZERO));
        Ok(step)
    }

    /// Starts the `hook` (`pre_deploy` or `post_deploy`) of `stored`'s current
    /// revision, unless one already runs for it (named after both).
    pub(super) async fn start_hook(self: &Arc<Self>, stored: &StoredPod, hook: &str) -> Result<()> {
        let pod = stored.spec.name.as_str();
        let number = stored.rollout.number;
        let Some(hooks) = &stored.spec.hooks else { return Ok(()) };
        let Some(command) = (if hook == PRE {
            &hooks.pre_deploy
        } else {
            &hooks.post_deploy
        }) else {
            return Ok(());
        };
        let existing = self
            .runtime
            .list(&self.settings.instance, &self.settings.network, Some(pod))
            .await?
            .into_iter()
            .any(|c| c.role == ROLE_HOOK && kind_of(&c) == hook && number_of(&c) == Some(number));
        if existing {
            return Ok(());
        }
        let name = format!("{pod}-{}-{number}", hook.replace('_', "-"));
        let number_text = number.to_string();
        let one_off = OneOff {
            name: &name,
            role: ROLE_HOOK,
            labels: &[(LABEL_HOOK, hook), (LABEL_HOOK_REVISION, &number_text)],
            command: Some(command.clone()),
        };
        // A second create of the same hook (another server's) fails on the
        // name: the reconcile is retried and then finds it by its labels.
        self.start_one_off(&self.runtime, stored, one_off).await?;
        self.event(
            pod,
            "Normal",
            "HookStarted",
            &format!(
                "the {hook} hook of revision {number} started (hooks.timeout {})",
                humantime::format_duration(hooks.timeout())
            ),
        )
        .await;
        Ok(())
    }

    /// How a hook container ended (`None`: it still runs within its time);
    /// one past its time is killed. Its log tail is read before it goes, with
    /// the values of the pod's secrets masked.
    async fn hook_ended(&self, c: &Observed, left: Duration, spec: &PodSpec) -> Result<Option<Ended>> {
        // Asked of the engine, not taken from the list: a list right after
        // the `die` event that woke the pod may still say running.
        let mut code = self.runtime.engine().exit_code(&c.id).await?;
        if c.state == ContainerState::Created && code == Some(0) {
            // Created and never started (a crash between create and start):
            // no pass. It times out, as one that hangs.
            code = None;
        }
        if code.is_none() && !left.is_zero() && (c.state.is_live() || c.state == ContainerState::Unknown) {
            return Ok(None);
        }
        let tail = self.runtime.log_tail(&c.id, HOOK_LOG_LINES).await.unwrap_or_default();
        let tail = self.mask_secrets(spec, tail).await;
        if code.is_none() && c.state.is_live() {
            self.runtime.remove(&c.id).await?;
            return Ok(Some(Ended::TimedOut { tail }));
        }
        Ok(Some(Ended::Exited {
            code: code.or_else(|| c.exit_code()),
            tail,
        }))
    }

    /// `text` with every value of the pod's secret env variables replaced by `***`.
    async fn mask_secrets(&self, spec: &PodSpec, mut text: String) -> String {
        let Ok((material, _)) = self.secret_material(spec).await else {
            return text;
        };
        for pair in &material.env {
            if let Some((_, value)) = pair.split_once('=')
                && value.len() >= 3
            {
                text = text.replace(value, "***");
            }
        }
        text
    }

    /// Records a `post_deploy` hook's result on its (complete) revision, with
    /// an event (a Warning if it failed), and removes its container.
    async fn record_post_deploy(
        self: &Arc<Self>,
        pod: &str,
        c: &Observed,
        ended: &Ended,
        timeout: Duration,
    ) -> Result<()> {
        if let Some(number) = number_of(c) {
            let message = ended.describe(POST, number, timeout);
            let (kind, reason, note) = if ended.passed() {
                ("Normal", "HookSucceeded", POST_DEPLOY_PASSED)
            } else {
                ("Warning", POST_DEPLOY_FAILED, POST_DEPLOY_FAILED)
            };
            let message = if ended.passed() {
                message
            } else {
                format!("{message}\nThe rollout of revision {number} was already complete and stays so.")
            };
            self.store
                .note_revision(pod, number, RolloutOutcome::Complete, note, &message)
                .await?;
            self.event(pod, kind, reason, &message).await;
            self.notify(Change::Pod { name: pod.to_string() });
        }
        self.runtime.remove(&c.id).await
    }

    /// Removes the hook containers of a deleted pod.
    pub(super) async fn remove_hooks(&self, hooks: &[Observed]) -> Result<()> {
        for c in hooks {
            self.runtime.remove(&c.id).await?;
        }
        Ok(())
    }
}

/// The `post_deploy` hook's kind, for the rollout's completion.
pub(super) const POST_DEPLOY: &str = POST;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RolloutState;

    fn stored(pre_deploy: bool, outcome: RolloutOutcome, reason: Option<&str>) -> StoredPod {
        let mut spec = PodSpec::new("web", "img:1");
        if pre_deploy {
            let mut hooks = dubernetes_api::Hooks::default();
            hooks.pre_deploy = Some(vec!["./migrate".into()]);
            spec.hooks = Some(hooks);
        }
        StoredPod {
            spec,
            generation: 1,
            created_at: 0,
            updated_at: 0,
            rollout: RolloutState {
                number: 2,
                outcome: Some(outcome),
                reason: reason.map(str::to_string),
                message: None,
            },
        }
    }

    #[test]
    fn pre_deploy_runs_once_per_new_revision_and_never_for_a_rollback() {
        use RolloutOutcome::*;
        assert!(awaits_pre_deploy(&stored(true, Progressing, None)));
        assert!(!awaits_pre_deploy(&stored(false, Progressing, None)));
        // Passed (recorded): not again, after a restart neither.
        assert!(!awaits_pre_deploy(&stored(true, Progressing, Some(PRE_DEPLOY_PASSED))));
        // An automatic rollback goes back to a revision that ran its own.
        assert!(!awaits_pre_deploy(&stored(true, Progressing, Some("Rollback"))));
        // Ended rollouts (a scale change of a complete revision is no new one).
        for outcome in [Complete, Failed, Superseded] {
            assert!(!awaits_pre_deploy(&stored(true, outcome, None)));
        }
        // A first revision whose hook failed keeps its replicas from starting.
        assert!(failed_on_hook(&stored(true, Failed, Some(HOOK_FAILED))));
        assert!(!failed_on_hook(&stored(true, Failed, Some("ProgressDeadlineExceeded"))));
    }

    #[test]
    fn a_hook_s_time_counts_from_its_creation_and_its_result_names_the_cause() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let timeout = Duration::from_secs(600);
        assert!(time_left(now - 30, timeout) > Duration::from_secs(500));
        assert_eq!(time_left(now - 601, timeout), Duration::ZERO);
        let failed = Ended::Exited {
            code: Some(3),
            tail: "boom\n".into(),
        };
        assert!(!failed.passed());
        assert_eq!(
            failed.describe(PRE, 4, timeout),
            "the pre_deploy hook of revision 4 exited with code 3. Last log lines:\nboom"
        );
        let timed_out = Ended::TimedOut { tail: String::new() };
        assert!(!timed_out.passed());
        assert_eq!(
            timed_out.describe(POST, 4, timeout),
            "the post_deploy hook of revision 4 timed out after 10m (hooks.timeout) and was killed; it wrote no output"
        );
        assert!(
            Ended::Exited {
                code: Some(0),
                tail: String::new()
            }
            .passed()
        );
    }
}

//! `dubectl run`: one-off containers of a pod's current revision.
//!
//! A run is a container made from the same template as a replica (image,
//! env with secrets, secret files, volumes, network, DNS, limits), with the
//! command replaced, never restarted, publishing nothing and routed nowhere.
//! Its labels say what it is: the instance, the store (so a purge removes it),
//! the pod and revision, `io.dubernetes.role=run` (the controller counts,
//! adopts, stops and routes `replica`s only, and ignores a run's exit) and
//! `io.dubernetes.run=<name>`. On Swarm a run is a plain container on the
//! manager's engine, attached to the instance's overlay network (attachable):
//! one container whose exit code and log are read as on Docker, where a
//! service with restart `none` would go through task scheduling and a
//! service's log; the cost is that runs use the manager's node only.
//!
//! At most `max_runs` runs of the instance run at once (counted on the
//! engine, so every server of the instance sees the same number); past it a
//! new one is [`Error::TooManyRuns`]. A streamed run is removed as soon as
//! its exit code is read, or at once (killed) when its reader goes away. A
//! detached run, and a streamed one whose server crashed, is removed by the
//! reaper ([`Dubernetes::reap_runs`]) a retention period after a server
//! first saw it exited, so its log stays readable meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::controller::OneOff;
use crate::error::{Error, Result};
use crate::labels::{LABEL_CRON, LABEL_RUN, ROLE_RUN};
use crate::orchestrator::Dubernetes;
use crate::owned_engine::Observed;
use dubernetes_api::{LogLine, Run, RunExit};

/// Default of `--max-runs`: runs of the instance running at once.
pub const DEFAULT_MAX_RUNS: usize = 8;
/// Default of `--run-retention`: how long an exited run is kept for its log.
pub const DEFAULT_RUN_RETENTION: Duration = Duration::from_secs(3600);

/// One item of a streamed run: an output line, or the exit code (last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunItem {
    /// A line of its output.
    Line(LogLine),
    /// Its exit code; the container is removed.
    Exit(RunExit),
}

/// Runs of this server: the limit, and when exited runs were first seen.
#[derive(Debug)]
pub struct RunSettings {
    /// Runs of the instance running at once.
    pub max_runs: usize,
    /// How long an exited run is kept.
    pub retention: Duration,
    /// Serialises this server's count-then-create.
    creating: tokio::sync::Mutex<()>,
    /// Exited runs, by container id, with when the reaper first saw them exited.
    exited: Mutex<HashMap<String, Instant>>,
    /// The cron scheduler's memory (`cron.rs`).
    pub(crate) cron: super::cron::CronMemory,
}

impl RunSettings {
    /// The limit and the retention.
    pub fn new(max_runs: usize, retention: Duration) -> RunSettings {
        RunSettings {
            max_runs,
            retention,
            creating: tokio::sync::Mutex::new(()),
            exited: Mutex::new(HashMap::new()),
            cron: super::cron::CronMemory::default(),
        }
    }
}

impl Default for RunSettings {
    fn default() -> RunSettings {
        RunSettings::new(DEFAULT_MAX_RUNS, DEFAULT_RUN_RETENTION)
    }
}

fn view_of(c: &Observed, exit: Option<(i64, Option<i64>)>) -> Run {
    let running = c.state.is_live();
    Run {
        name: c.labels.get(LABEL_RUN).cloned().unwrap_or_default(),
        pod: c.pod.clone().unwrap_or_default(),
        revision: c.revision.clone().unwrap_or_default(),
        state: if running { "running" } else { "exited" }.to_string(),
        exit_code: if running {
            None
        } else {
            exit.map(|(code, _)| code).or_else(|| c.exit_code())
        },
        created: c.created,
        scheduled: super::cron::scheduled_of(c),
        finished: if running { None } else { exit.and_then(|(_, at)| at) },
    }
}

/// What makes a run: its name, its command (None: the pod's own `command`
/// and `args`, as a cron pod's tick runs) and labels beside the run's own.
pub(crate) struct NewRun {
    pub name: String,
    pub command: Option<Vec<String>>,
    pub labels: Vec<(String, String)>,
}

impl Dubernetes {
    pub(crate) async fn run_containers(&self, pod: Option<&str>) -> Result<Vec<Observed>> {
        Ok(self
            .containers(pod)
            .await?
            .into_iter()
            .filter(|c| c.role == ROLE_RUN)
            .collect())
    }

    async fn run_container(&self, pod: &str, run: &str) -> Result<Observed> {
        self.run_containers(Some(pod))
            .await?
            .into_iter()
            .find(|c| c.labels.get(LABEL_RUN).map(String::as_str) == Some(run))
            .ok_or_else(|| Error::RunNotFound {
                pod: pod.to_string(),
                run: run.to_string(),
            })
    }

    /// Starts a one-off run of `pod`'s current revision with `command`
    /// (replacing the pod's `command` and `args`); returns it at once.
    pub async fn start_run(&self, pod: &str, command: Vec<String>) -> Result<(Run, String)> {
        super::exec::check_command(&command, "command")?;
        let stored = self
            .handle
            .store
            .get(pod)
            .await?
            .ok_or_else(|| Error::NotFound(pod.to_string()))?;
        let suffix: String = (0..6)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rand::random_range(0..36usize)]))
            .collect();
        let run = NewRun {
            name: format!("{pod}-run-{suffix}"),
            command: Some(command),
            labels: Vec::new(),
        };
        self.create_run(&stored, run).await
    }

    /// Creates and starts a run of `stored`'s current revision, within `max_runs`.
    pub(crate) async fn create_run(&self, stored: &crate::store::StoredPod, run: NewRun) -> Result<(Run, String)> {
        let pod = stored.spec.name.as_str();
        let settings = &self.runs;
        let _one_at_a_time = settings.creating.lock().await;
        let running = self
            .run_containers(None)
            .await?
            .iter()
            .filter(|c| c.state.is_live())
            .count();
        if running >= settings.max_runs {
            return Err(Error::TooManyRuns {
                running,
                limit: settings.max_runs,
            });
        }
        let name = run.name;
        // What the tick of a cron run was, from its label.
        let scheduled = run
            .labels
            .iter()
            .find(|(k, _)| k == LABEL_CRON)
            .and_then(|(_, t)| t.parse().ok());
        let labels: Vec<(&str, &str)> = std::iter::once((LABEL_RUN, name.as_str()))
            .chain(run.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        let one_off = OneOff {
            name: &name,
            role: ROLE_RUN,
            labels: &labels,
            command: run.command,
        };
        // The server's own runtime, not the controller's: a follower starts runs too.
        let id = self
            .handle
            .ctx()
            .start_one_off(&self.handle.runtime, stored, one_off)
            .await?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let run = Run {
            name,
            pod: pod.to_string(),
            revision: stored.spec.revision_hash(),
            state: "running".into(),
            exit_code: None,
            created,
            scheduled,
            finished: None,
        };
        Ok((run, id))
    }

    /// Starts a run and streams its output, then its exit code; the
    /// container is removed after the exit code is read, or (killed) when
    /// the stream is dropped before.
    pub async fn run_attached(&self, pod: &str, command: Vec<String>) -> Result<BoxStream<'static, Result<RunItem>>> {
        let (run, id) = self.start_run(pod, command).await?;
        let mut guard = RemoveOnDrop {
            runtime: Some(self.handle.runtime.clone()),
            id: id.clone(),
        };
        let options = crate::logs::LogOptions::new().follow(true);
        let lines = crate::logs::replica_lines(&self.handle.runtime, &id, run.name.clone(), &options);
        let runtime = self.handle.runtime.clone();
        let exit = futures::stream::once(async move {
            let code = exit_code_of(&runtime, &id).await;
            if code.is_ok() {
                // Read: remove it now, on this task.
                if let Some(runtime) = guard.runtime.take() {
                    runtime.remove(&id).await?;
                }
            }
            Ok(RunItem::Exit(RunExit {
                run: run.name,
                exit_code: code?,
            }))
        });
        Ok(lines.map(|l| l.map(RunItem::Line)).chain(exit).boxed())
    }

    /// A pod's runs (running and exited, until the reaper removes them).
    pub async fn runs(&self, pod: &str) -> Result<Vec<Run>> {
        if self.handle.store.get(pod).await?.is_none() {
            return Err(Error::NotFound(pod.to_string()));
        }
        let mut runs: Vec<Run> = Vec::new();
        for c in self.run_containers(Some(pod)).await? {
            let exit = if c.state.is_live() {
                None
            } else {
                self.handle.runtime.engine().exit_info(&c.id).await.ok().flatten()
            };
            runs.push(view_of(&c, exit));
        }
        runs.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
        Ok(runs)
    }

    /// One run of a pod.
    pub async fn run(&self, pod: &str, run: &str) -> Result<Run> {
        let c = self.run_container(pod, run).await?;
        let exit = if c.state.is_live() {
            None
        } else {
            self.handle.runtime.engine().exit_info(&c.id).await.ok().flatten()
        };
        Ok(view_of(&c, exit))
    }

    /// Removes a run (killing it if it runs).
    pub async fn delete_run(&self, pod: &str, run: &str) -> Result<()> {
        let c = self.run_container(pod, run).await?;
        self.handle.runtime.remove(&c.id).await
    }

    /// Removes the runs of the instance that exited more than the retention
    /// period ago (as first seen by this server); returns how many.
    pub async fn reap_runs(&self) -> Result<usize> {
        let containers = self.run_containers(None).await?;
        let now = Instant::now();
        let exited: HashSet<&str> = containers
            .iter()
            // A cron pod's runs are kept by count (its `history`), not by age.
            .filter(|c| !c.state.is_live() && !c.labels.contains_key(LABEL_CRON))
            .map(|c| c.id.as_str())
            .collect();
        let expired: Vec<String> = {
            let mut seen = crate::sync::lock(&self.runs.exited);
            seen.retain(|id, _| exited.contains(id.as_str()));
            for id in &exited {
                seen.entry((*id).to_string()).or_insert(now);
            }
            seen.iter()
                .filter(|(_, at)| now.duration_since(**at) >= self.runs.retention)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut removed = 0;
        for id in expired {
            self.handle.runtime.remove(&id).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Reaps runs every `every` until `shutdown` (the server spawns this).
    pub async fn reap_runs_loop(self, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.reap_runs().await {
                tracing::warn!(error = %e, "removing old runs failed; retrying later");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// The exit code of a run whose output has ended.
async fn exit_code_of(runtime: &crate::owned_engine::Runtime, id: &str) -> Result<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = runtime.engine().exit_code(id).await? {
            return Ok(code);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout("the run's exit code".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a streamed run's container when its reader drops the stream early.
struct RemoveOnDrop {
    runtime: Option<crate::owned_engine::Runtime>,
    id: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let id = std::mem::take(&mut self.id);
            handle.spawn(async move {
                if let Err(e) = runtime.remove(&id).await {
                    tracing::warn!(container = %id, error = %e, "could not remove an abandoned run; the reaper will");
                }
            });
        }
    }
}

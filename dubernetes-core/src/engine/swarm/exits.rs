//! Exits of tasks on other nodes, read from the manager's task list (the
//! local engine's events show only this node's containers).

use super::*;

/// How often the manager's task list is read for exits of tasks on other
/// nodes while some run there; while none does, every [`REMOTE_IDLE_POLL`].
const REMOTE_EXIT_POLL: Duration = Duration::from_secs(1);
const REMOTE_IDLE_POLL: Duration = Duration::from_secs(5);

/// A `die` event (with the service's id and the task's labels) for each task
/// of the instance on another node than this engine's that is seen exited:
/// newly, or already exited when first listed after the first listing. Read
/// from the manager's task list; a failed read is retried at the next poll.
pub(super) fn remote_task_exits(docker: Docker, instance: String) -> BoxStream<'static, Result<EngineEvent>> {
    struct Poll {
        docker: Docker,
        instance: String,
        local: Option<String>,
        /// Task id -> exited, as last listed (None before the first listing).
        seen: Option<HashMap<String, bool>>,
        remote_running: bool,
        pending: std::collections::VecDeque<EngineEvent>,
        /// Whether the first listing was made: it is made at once, so that a
        /// task that exits in the stream's first seconds is not first listed
        /// already exited (which reports nothing: it may be old history).
        started: bool,
    }
    let poll = Poll {
        docker,
        instance,
        local: None,
        seen: None,
        remote_running: false,
        pending: Default::default(),
        started: false,
    };
    futures::stream::unfold(poll, |mut p| async move {
        loop {
            if let Some(event) = p.pending.pop_front() {
                return Some((Ok(event), p));
            }
            if p.started {
                tokio::time::sleep(if p.remote_running {
                    REMOTE_EXIT_POLL
                } else {
                    REMOTE_IDLE_POLL
                })
                .await;
            }
            p.started = true;
            if p.local.is_none() {
                p.local = bounded("reading the engine's info", CALL_TIMEOUT, p.docker.info())
                    .await
                    .ok()
                    .and_then(|i| i.swarm?.node_id);
                if p.local.is_none() {
                    continue;
                }
            }
            let filters = HashMap::from([("label", vec![format!("{LABEL_INSTANCE}={}", p.instance)])]);
            let options = ListTasksOptionsBuilder::new().filters(&filters).build();
            let tasks = match bounded("listing tasks", CALL_TIMEOUT, p.docker.list_tasks(Some(options))).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    tracing::debug!(error = %Error::from(e), "listing tasks for exits on other nodes");
                    continue;
                }
            };
            let mut now = HashMap::new();
            p.remote_running = false;
            for t in tasks {
                let (Some(id), Some(service)) = (t.id.clone(), t.service_id.clone()) else {
                    continue;
                };
                if t.node_id.is_none() || t.node_id == p.local {
                    continue;
                }
                let state = task_state(Some(&t)).0;
                p.remote_running |= state != ContainerState::Exited;
                let exited = state == ContainerState::Exited;
                let newly = p.seen.as_ref().is_some_and(|seen| seen.get(&id) != Some(&true));
                if exited && newly {
                    let mut attributes = t
                        .spec
                        .and_then(|s| s.container_spec)
                        .and_then(|c| c.labels)
                        .unwrap_or_default();
                    attributes.extend(t.labels.unwrap_or_default());
                    p.pending.push_back(EngineEvent {
                        action: "die".to_string(),
                        id: Some(service),
                        attributes,
                    });
                }
                now.insert(id, exited);
            }
            p.seen = Some(now);
        }
    })
    .boxed()
}

//! A replica as a Swarm service: its spec (image, env, mounts, limits,
//! placement, restart `none`), reading and updating services and their
//! tasks, and how a task's state reads as a container's.

use super::*;

impl SwarmEngine {
    /// Connects like [`DockerEngine::connect`] and checks that the engine is
    /// a swarm manager, or says how to make it one.
    pub(crate) async fn connect() -> Result<SwarmEngine> {
        let inner = DockerEngine::connect().await?;
        let docker = inner.client().clone();
        let info = bounded("reading the engine's info", CALL_TIMEOUT, docker.info()).await?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
        if state != LocalNodeState::ACTIVE || swarm.control_available != Some(true) {
            let why = match state {
                LocalNodeState::ACTIVE => "this engine is a swarm worker, not a manager".to_string(),
                LocalNodeState::EMPTY => "this engine's swarm state is unknown".to_string(),
                other => format!("this engine's swarm state is `{other}`"),
            };
            return Err(Error::NotSwarmManager(why));
        }
        let probe = ProbeNetwork::new(inner.clone());
        Ok(SwarmEngine { docker, inner, probe })
    }

    pub(super) async fn inspect_service(&self, id: &str) -> Result<Option<bollard::models::Service>, Error> {
        match bounded(
            "inspecting service",
            CALL_TIMEOUT,
            self.docker
                .inspect_service(id, None::<bollard::query_parameters::InspectServiceOptions>),
        )
        .await
        {
            Ok(s) => Ok(Some(s)),
            Err(r) if r.status() == Some(404) => Ok(None),
            Err(r) => Err(r.into()),
        }
    }

    /// Changes a service's spec: read, change, send back with the version
    /// index; a refusal for an outdated index (another update won) is
    /// retried. Returns false if the service is gone.
    pub(super) async fn update_service(&self, id: &str, change: impl Fn(&mut ServiceSpec) -> bool) -> Result<bool> {
        for attempt in 0..=UPDATE_RETRIES {
            let Some(service) = self.inspect_service(id).await? else {
                return Ok(false);
            };
            let mut spec = service.spec.unwrap_or_default();
            if !change(&mut spec) {
                return Ok(true);
            }
            let version = service.version.and_then(|v| v.index).unwrap_or(0);
            let options = UpdateServiceOptionsBuilder::new()
                .version(i32::try_from(version).unwrap_or(i32::MAX))
                .build();
            match bounded(
                "updating service",
                CALL_TIMEOUT,
                self.docker.update_service(id, spec, options, None),
            )
            .await
            {
                Ok(_) => return Ok(true),
                Err(r) if r.status() == Some(404) => return Ok(false),
                // "update out of sequence": someone else changed it first.
                Err(r) if attempt < UPDATE_RETRIES && matches!(r.status(), Some(500 | 409)) => {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
                }
                Err(r) => return Err(r.into()),
            }
        }
        Ok(true)
    }

    /// The tasks of a service, newest first.
    pub(super) async fn tasks_of(&self, service: &str) -> Result<Vec<Task>> {
        let filters = HashMap::from([("service", vec![service.to_string()])]);
        let options = ListTasksOptionsBuilder::new().filters(&filters).build();
        let mut tasks = match bounded("listing tasks", CALL_TIMEOUT, self.docker.list_tasks(Some(options))).await {
            Ok(t) => t,
            Err(r) if r.status() == Some(404) => Vec::new(),
            Err(r) => return Err(r.into()),
        };
        tasks.sort_by_key(|t| std::cmp::Reverse(task_order(t)));
        Ok(tasks)
    }

    /// The local container of a service's newest task.
    pub(super) async fn container_of(&self, id: &str) -> Result<String> {
        if is_container_id(id) {
            return Ok(id.to_string());
        }
        self.tasks_of(id)
            .await?
            .into_iter()
            .find_map(|t| t.status?.container_status?.container_id.filter(|c| !c.is_empty()))
            .ok_or_else(|| Error::Docker {
                context: format!("service {id}"),
                source: "it has no task container yet".into(),
            })
    }

    /// Task addresses on `network` by service name (every node), and
    /// addresses of this node's containers by container id.
    pub(super) async fn addresses(&self, network: &str) -> Result<(HashMap<String, String>, HashMap<String, String>)> {
        let options = InspectNetworkOptionsBuilder::new().verbose(true).build();
        let inspect = match bounded(
            "inspecting network",
            CALL_TIMEOUT,
            self.docker.inspect_network(network, Some(options)),
        )
        .await
        {
            Ok(n) => n,
            Err(r) if r.status() == Some(404) => return Ok(Default::default()),
            Err(r) => return Err(r.into()),
        };
        let by_service = inspect
            .services
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, s)| {
                let ip = s["Tasks"]
                    .as_array()?
                    .iter()
                    .find_map(|t| t["EndpointIP"].as_str().filter(|ip| !ip.is_empty()))?;
                Some((name, ip.to_string()))
            })
            .collect();
        let by_container = inspect
            .containers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, e)| {
                let ip = e.ipv4_address?;
                Some((id, ip.split('/').next()?.to_string()))
            })
            .collect();
        Ok((by_service, by_container))
    }

    pub(super) fn service_spec(&self, spec: &ContainerSpec, image: String) -> ServiceSpec {
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_IMAGE.to_string(), spec.image.clone());
        labels.insert(LABEL_CREATED.to_string(), (crate::clock::now_ms() / 1000).to_string());
        let limits: &ContainerLimits = &spec.limits;
        ServiceSpec {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image),
                    labels: Some(spec.labels.clone()),
                    command: spec.command.clone(),
                    args: spec.args.clone(),
                    env: crate::engine::env_of(spec),
                    // Secret files: the server's directories, bound read-only
                    // (resolved by the server as on the docker backend). A named
                    // volume is local to the node that runs the task: made
                    // there, with its labels, when the task starts.
                    mounts: {
                        let mut mounts: Vec<Mount> = spec
                            .secrets
                            .files
                            .iter()
                            .map(|b| Mount {
                                target: Some(b.container.clone()),
                                source: Some(b.host.display().to_string()),
                                typ: Some(MountType::BIND),
                                read_only: Some(true),
                                ..Default::default()
                            })
                            .collect();
                        mounts.extend(crate::engine::docker::mounts_of(spec).unwrap_or_default());
                        (!mounts.is_empty()).then_some(mounts)
                    },
                    // The embedded DNS of the task's container forwards
                    // what it does not know (pod names) to these.
                    dns_config: (!spec.dns.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
                        nameservers: Some(spec.dns.iter().map(ToString::to_string).collect()),
                        ..Default::default()
                    }),
                    // A removal kills at once (as `docker rm -f`); a stop
                    // sets the pod's grace period first.
                    stop_grace_period: Some(0),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
                        memory_bytes: spec.memory.and_then(|m| i64::try_from(m).ok()),
                        pids: limits.pids.map(i64::from),
                    }),
                    ..Default::default()
                }),
                // The pod's constraints and the ones its placement decided
                // (`placement.rs`); the spread is decided there too, per
                // replica (a preference would spread one service's tasks),
                // and also given as Swarm's preference for whoever reads the service.
                placement: placement_of(spec),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(spec.network.clone()),
                    ..Default::default()
                }]),
                log_driver: Some(TaskSpecLogDriver {
                    name: Some("json-file".into()),
                    options: Some(HashMap::from([
                        ("max-size".to_string(), limits.log_max_bytes.to_string()),
                        ("max-file".to_string(), limits.log_max_files.to_string()),
                    ])),
                }),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: None,
            }),
            ..Default::default()
        }
    }

    /// Waits until no task of a service runs (or the deadline).
    pub(super) async fn wait_down(&self, id: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let tasks = self.tasks_of(id).await?;
            if !tasks
                .iter()
                .any(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::DockerTimeout(format!("stopping service {id}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until Swarm's task reaper is done with the service's tasks that
    /// were marked for removal (a stop scales the service to 0, which marks
    /// its task so; the reaper deletes it shortly after it shut down).
    ///
    /// Docker 20.10's swarmkit crashes the whole engine (a nil pointer in
    /// `SetServiceTasksRemove`, fixed in later swarmkit) when a service is
    /// deleted while the reaper deletes one of its tasks: seen here when a
    /// delete followed a stop at once. So a delete waits for the reaper; if it
    /// is not done by `limit`, the delete fails and the controller retries it
    /// later, rather than risk the engine every replica runs on.
    pub(super) async fn wait_reaped(&self, id: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let tasks = self.tasks_of(id).await?;
            if !tasks.iter().any(|t| t.desired_state == Some(TaskState::REMOVE)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::DockerTimeout(format!(
                    "removing service {id}: Swarm has not reaped its stopped task yet"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Newest task first: the highest version index (the store's index grows
/// with every write). Creation times are not read: their type changes with
/// bollard's features.
/// Swarm's placement of a replica's service: constraints and spread.
pub(super) fn placement_of(spec: &ContainerSpec) -> Option<TaskSpecPlacement> {
    if spec.constraints.is_empty() && spec.spread.is_none() {
        return None;
    }
    Some(TaskSpecPlacement {
        constraints: Some(spec.constraints.iter().map(ToString::to_string).collect()),
        preferences: spec.spread.as_ref().map(|key| {
            vec![TaskSpecPlacementPreferences {
                spread: Some(TaskSpecPlacementSpread {
                    spread_descriptor: Some(key.to_string()),
                }),
            }]
        }),
        ..Default::default()
    })
}

pub(super) fn task_order(t: &Task) -> u64 {
    t.version.as_ref().and_then(|v| v.index).unwrap_or(0)
}

/// A service's state, read from its newest task.
pub(super) fn task_state(task: Option<&Task>) -> (ContainerState, String) {
    let Some(status) = task.and_then(|t| t.status.as_ref()) else {
        return (ContainerState::Created, "Created (no task yet)".into());
    };
    let state = status.state.unwrap_or(TaskState::NEW);
    let message = status
        .err
        .clone()
        .or_else(|| status.message.clone())
        .unwrap_or_default();
    match state {
        TaskState::RUNNING => (ContainerState::Running, format!("Up (task {state}: {message})")),
        TaskState::COMPLETE
        | TaskState::FAILED
        | TaskState::SHUTDOWN
        | TaskState::REJECTED
        | TaskState::ORPHANED
        | TaskState::REMOVE => {
            let code = status.container_status.as_ref().and_then(|c| c.exit_code).unwrap_or(-1);
            (
                ContainerState::Exited,
                format!("Exited ({code}) task {state}: {message}"),
            )
        }
        _ => (ContainerState::Created, format!("Created (task {state}: {message})")),
    }
}

//! Docker Swarm on the same engine, for comparison. Everything is read through
//! the engine API (services, tasks); no traffic goes through Swarm's routing
//! mesh (no published ports). The swarm is left (`--force`) at the end of the
//! run by [`Cleanup`], also on failure.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bollard::Docker;
use bollard::models::{
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, SwarmInitRequest, Task, TaskSpec,
    TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListTasksOptionsBuilder};

use crate::engine::{Cleanup, LABEL_BENCH};

/// Joins this engine to a new single-node swarm on loopback, unless it is in
/// one already: then that swarm is someone else's (e.g. another test run on
/// the same engine). It is used only to create (and remove) services of our
/// own, labelled `io.dubernetes.bench`, and it is never left.
pub async fn init(docker: &Docker, cleanup: &Cleanup) -> Result<()> {
    let info = docker.info().await.context("docker info")?;
    let state = info
        .swarm
        .and_then(|s| s.local_node_state)
        .map(|s| s.to_string())
        .unwrap_or_default();
    if state == "active" {
        eprintln!("bench: this engine is in a swarm already; using it for our own services only, and not leaving it");
        return Ok(());
    }
    if state == "pending" {
        bail!("this engine is joining a swarm (state pending); not ours to use or leave");
    }
    cleanup.swarm();
    docker
        .init_swarm(SwarmInitRequest {
            listen_addr: Some("127.0.0.1:2377".into()),
            advertise_addr: Some("127.0.0.1".into()),
            ..Default::default()
        })
        .await
        .context("docker swarm init --advertise-addr 127.0.0.1")?;
    Ok(())
}

/// Creates a replicated service of `image` (given by image id, so the swarm
/// agent does not try to pull it from a registry), its tasks attached to
/// `network` (an overlay) when given, else with default networking; no
/// published port.
pub async fn create_service(
    docker: &Docker,
    cleanup: &Cleanup,
    run: &str,
    name: &str,
    image_id: &str,
    replicas: i64,
    network: Option<&str>,
) -> Result<String> {
    let spec = ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(HashMap::from([(LABEL_BENCH.to_string(), run.to_string())])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image_id.to_string()),
                labels: Some(HashMap::from([(LABEL_BENCH.to_string(), run.to_string())])),
                ..Default::default()
            }),
            networks: network.map(|n| {
                vec![NetworkAttachmentConfig {
                    target: Some(n.to_string()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_service(spec, None)
        .await
        .with_context(|| format!("creating swarm service {name}"))?;
    let id = created.id.context("the engine returned no service id")?;
    cleanup.swarm_service(&id);
    Ok(id)
}

/// Tasks of the given services (all, or of one) that should run.
pub async fn tasks(docker: &Docker, service: Option<&str>) -> Result<Vec<Task>> {
    let mut filters = HashMap::from([("desired-state", vec!["running".to_string()])]);
    if let Some(s) = service {
        filters.insert("service", vec![s.to_string()]);
    }
    let options = ListTasksOptionsBuilder::new().filters(&filters).build();
    Ok(docker.list_tasks(Some(options)).await?)
}

pub fn is_running(t: &Task) -> bool {
    t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

pub fn container_id(t: &Task) -> Option<String> {
    t.status
        .as_ref()
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.container_id.clone())
}

/// Waits until `want` tasks run (of one service or all), none of them with a
/// container in `not`. Polls the task list every `every`.
pub async fn wait_running(
    docker: &Docker,
    service: Option<&str>,
    want: usize,
    not: &[String],
    every: Duration,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = tasks(docker, service).await?;
        let running = tasks
            .iter()
            .filter(|t| is_running(t))
            .filter(|t| container_id(t).is_none_or(|c| !not.contains(&c)))
            .count();
        if running >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("swarm: {running} of {want} tasks running after {timeout:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Creates an attachable overlay network for services (what a Swarm user
/// puts services and a reverse proxy on, so the proxy reaches them).
pub async fn create_overlay(docker: &Docker, cleanup: &Cleanup, name: &str, run: &str) -> Result<()> {
    crate::engine::create_labelled_network(docker, cleanup, name, run, "overlay", true).await
}

/// Waits until no container of this run's Swarm tasks is left on the engine.
pub async fn wait_containers_gone(docker: &Docker, run: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let filters = HashMap::from([(
        "label",
        vec![
            format!("{LABEL_BENCH}={run}"),
            "com.docker.swarm.service.id".to_string(),
        ],
    )]);
    loop {
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let left = docker.list_containers(Some(options)).await?.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("swarm: {left} task containers still there {timeout:?} after their services were removed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

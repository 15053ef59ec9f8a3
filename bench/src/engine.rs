//! Straight to the engine with bollard: its own limit (containers created and
//! started concurrently), the app's own start→ready time, and the clean-up
//! registry that removes everything a run made, also when it fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions,
};
use dubernetes_core::labels::LABEL_INSTANCE;
use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::stats::Samples;

/// Label on every container and network the benchmark makes itself.
pub const LABEL_BENCH: &str = "io.dubernetes.bench";

pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_defaults().context("connecting to the Docker engine")?;
    let docker = docker
        .negotiate_version()
        .await
        .context("negotiating the API version")?;
    Ok(docker)
}

/// What a run made, removed at the end whatever happened.
#[derive(Clone, Default)]
pub struct Cleanup {
    inner: Arc<Mutex<Made>>,
}

#[derive(Default)]
struct Made {
    /// Dubernetes instances (containers carry `io.dubernetes.instance`).
    instances: Vec<String>,
    /// Values of [`LABEL_BENCH`] on raw containers and networks.
    bench_labels: Vec<String>,
    networks: Vec<String>,
    swarm: bool,
    swarm_services: Vec<String>,
}

impl Cleanup {
    fn made(&self) -> std::sync::MutexGuard<'_, Made> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn instance(&self, instance: &str) {
        let mut m = self.made();
        m.instances.push(instance.to_string());
        m.networks.push(format!("dub-{instance}"));
    }

    pub fn bench_label(&self, value: &str) {
        self.made().bench_labels.push(value.to_string());
    }

    pub fn network(&self, name: &str) {
        self.made().networks.push(name.to_string());
    }

    pub fn swarm(&self) {
        self.made().swarm = true;
    }

    pub fn swarm_service(&self, id: &str) {
        self.made().swarm_services.push(id.to_string());
    }

    /// Removes every container, service and network recorded, and leaves the
    /// swarm if this run created it. Problems are warnings: clean-up goes on.
    pub async fn run(&self, docker: &Docker) {
        let (instances, labels, networks, swarm, services) = {
            let mut m = self.made();
            (
                std::mem::take(&mut m.instances),
                std::mem::take(&mut m.bench_labels),
                std::mem::take(&mut m.networks),
                std::mem::replace(&mut m.swarm, false),
                std::mem::take(&mut m.swarm_services),
            )
        };
        for id in &services {
            if let Err(e) = docker.delete_service(id).await
                && !is_404(&e)
            {
                eprintln!("bench: warning: removing swarm service {id}: {e}");
            }
        }
        let mut filters: Vec<(String, String)> = Vec::new();
        for i in &instances {
            filters.push((LABEL_INSTANCE.to_string(), i.clone()));
        }
        for l in &labels {
            filters.push((LABEL_BENCH.to_string(), l.clone()));
        }
        for (key, value) in filters {
            if let Err(e) = remove_labelled(docker, &key, &value).await {
                eprintln!("bench: warning: removing containers {key}={value}: {e}");
            }
        }
        if swarm {
            // Swarm tasks go away with the services; leaving removes the rest.
            let left = docker
                .leave_swarm(Some(
                    bollard::query_parameters::LeaveSwarmOptionsBuilder::new()
                        .force(true)
                        .build(),
                ))
                .await;
            if let Err(e) = left {
                eprintln!("bench: warning: docker swarm leave --force: {e}");
            }
        }
        for n in &networks {
            remove_network(docker, n).await;
        }
    }
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

/// Removes a network; Docker 20.10 sometimes reports "active endpoints" on an
/// empty network for a moment: retry, then warn (never fail the run).
pub async fn remove_network(docker: &Docker, name: &str) {
    for attempt in 1..=4u64 {
        match docker.remove_network(name).await {
            Ok(()) => return,
            Err(e) if is_404(&e) => return,
            Err(e) if attempt == 4 => {
                eprintln!("bench: warning: could not remove network {name}: {e}");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300 * attempt)).await,
        }
    }
}

pub async fn remove_labelled(docker: &Docker, key: &str, value: &str) -> Result<()> {
    let ids = list_labelled(docker, key, value).await?;
    let sem = Semaphore::new(16);
    let results = join_all(ids.iter().map(|id| async {
        let _permit = sem.acquire().await;
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match docker.remove_container(id, Some(options)).await {
            Err(e) if !is_404(&e) => Err(e),
            _ => Ok(()),
        }
    }))
    .await;
    for r in results {
        r?;
    }
    Ok(())
}

pub async fn list_labelled(docker: &Docker, key: &str, value: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    Ok(docker
        .list_containers(Some(options))
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect())
}

pub async fn create_network(docker: &Docker, cleanup: &Cleanup, name: &str, run: &str) -> Result<()> {
    create_labelled_network(docker, cleanup, name, run, "bridge", false).await
}

/// Creates a network of `driver` labelled with this run (removed by
/// [`Cleanup`], also on failure); `attachable` for an overlay that plain
/// containers (a proxy) join beside Swarm's tasks.
pub async fn create_labelled_network(
    docker: &Docker,
    cleanup: &Cleanup,
    name: &str,
    run: &str,
    driver: &str,
    attachable: bool,
) -> Result<()> {
    cleanup.network(name);
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some(driver.into()),
        attachable: attachable.then_some(true),
        labels: Some(HashMap::from([(LABEL_BENCH.to_string(), run.to_string())])),
        ..Default::default()
    };
    docker
        .create_network(request)
        .await
        .with_context(|| format!("creating {driver} network {name}"))?;
    Ok(())
}

fn body(image: &str, network: &str, label: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(HashMap::from([(LABEL_BENCH.to_string(), label.to_string())])),
        exposed_ports: Some(vec!["80/tcp".into()]),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network.to_string(), EndpointSettings::default())])),
        }),
        ..Default::default()
    }
}

async fn create_and_start(docker: &Docker, image: &str, network: &str, label: &str) -> Result<String> {
    let name = format!("{label}-{:08x}", rand::random::<u32>());
    let options = CreateContainerOptionsBuilder::new().name(&name).build();
    let created = docker
        .create_container(Some(options), body(image, network, label))
        .await
        .context("creating container")?;
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .context("starting container")?;
    Ok(created.id)
}

/// The engine's own limit: `n` containers of `image` created and started
/// straight through the API, `concurrency` at a time, on `network`. Returns
/// the wall time until the last one was started; removes them afterwards.
pub async fn engine_limit(
    docker: &Docker,
    cleanup: &Cleanup,
    run: &str,
    network: &str,
    image: &str,
    n: usize,
    concurrency: usize,
) -> Result<Duration> {
    let label = format!("{run}-engine");
    cleanup.bench_label(&label);
    let sem = Semaphore::new(concurrency.max(1));
    let started = Instant::now();
    let results = join_all((0..n).map(|_| async {
        let _permit = sem.acquire().await;
        create_and_start(docker, image, network, &label).await
    }))
    .await;
    let took = started.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    remove_labelled(docker, LABEL_BENCH, &label).await?;
    if failed > 0 {
        bail!("{failed} of {n} containers failed to start straight through the API");
    }
    Ok(took)
}

/// The app's own start→ready time: create and start one container of `image`
/// on `network`, then GET `path` on its address every 5 ms until it answers
/// 200. `rounds` samples.
pub async fn app_ready_time(
    docker: &Docker,
    cleanup: &Cleanup,
    run: &str,
    network: &str,
    image: &str,
    path: &str,
    rounds: usize,
) -> Result<Samples> {
    let label = format!("{run}-app");
    cleanup.bench_label(&label);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()?;
    let mut samples = Samples::default();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let id = create_and_start(docker, image, network, &label).await?;
        let inspect = docker.inspect_container(&id, None::<InspectContainerOptions>).await?;
        let ip = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .context("the container has no address on the network")?;
        let addr: SocketAddr = format!("{ip}:80").parse()?;
        let url = format!("http://{addr}{path}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{image} did not answer {path} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(t0.elapsed());
        remove_labelled(docker, LABEL_BENCH, &label).await?;
    }
    Ok(samples)
}

/// `docker kill` (SIGKILL) of one container.
pub async fn kill(docker: &Docker, id: &str) -> Result<()> {
    docker
        .kill_container(id, Some(KillContainerOptionsBuilder::new().signal("KILL").build()))
        .await
        .with_context(|| format!("killing {id}"))
}

/// The image id of a local image (`sha256:...`).
pub async fn image_id(docker: &Docker, image: &str) -> Result<String> {
    docker
        .inspect_image(image)
        .await
        .with_context(|| format!("image {image} is missing; run scripts/build-images.sh"))?
        .id
        .context("the engine reported no image id")
}

impl Cleanup {
    /// Removes one Dubernetes instance's containers and network now (they stay
    /// recorded; the final clean-up finds nothing left).
    pub async fn run_instance(&self, docker: &Docker, instance: &str) {
        if let Err(e) = remove_labelled(docker, LABEL_INSTANCE, instance).await {
            eprintln!("bench: warning: removing containers of {instance}: {e}");
        }
        remove_network(docker, &format!("dub-{instance}")).await;
    }
}

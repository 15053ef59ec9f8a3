//! Issue 16: Dubernetes on `--backend swarm` beside plain Docker Swarm doing
//! the same, in the same run on the same single-node swarm: apply → served,
//! kill → replaced and routed, and a 5-replica rolling update under load
//! (failed requests counted). Plain Swarm gets the same nginx in front (a
//! container on the same kind of overlay network, proxying to the service's
//! virtual IP), since Swarm-published ports cannot bind loopback.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSpec, EndpointSpecModeEnum, HostConfig, NetworkAttachmentConfig, PortBinding,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum,
    TaskSpec, TaskSpecContainerSpec,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, UpdateServiceOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use dubernetes_core::{Backend, Dubernetes, IngressSettings, PodSpec, UpdateStrategy};

use crate::engine::LABEL_BENCH;
use crate::stats::{Samples, fmt};
use crate::{Ctx, Section, engine, swarm};

const V1: &str = "dubernetes/whoami:v1";
const V2: &str = "dubernetes/whoami:v2";
const REPLICAS: u32 = 5;
const RATE: u64 = 50;
const LIMIT: Duration = Duration::from_secs(120);

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let instance = format!("{}-swb", ctx.run);
    ctx.cleanup.instance(&instance);
    // The endpoint files in a bound host directory, as a server's data dir has them.
    let endpoints = tempfile::tempdir()?;
    let o = Dubernetes::builder()
        .instance(&instance)
        .in_memory()
        .backend(Backend::Swarm)
        .ingress(
            IngressSettings::new("dubernetes/nginx:local-4", "127.0.0.1:0".parse()?)
                .with_endpoints_dir(endpoints.path().join("endpoints")),
        )
        .build()
        .await?;
    let result = measure(ctx, &o).await;
    if let Err(e) = o.purge().await {
        eprintln!("bench: warning: purging {instance}: {e}");
    }
    result
}

fn spec(name: &str, image: &str) -> PodSpec {
    let mut spec = PodSpec::new(name, image)
        .with_replicas(REPLICAS)
        .with_host(format!("{name}.bench.local"))
        .with_health("/healthz");
    if let Some(h) = spec.health.as_mut() {
        h.interval = Duration::from_millis(250);
    }
    // The mechanism, not the stabilization window (as the rollout section).
    let mut update = UpdateStrategy::default();
    update.min_ready = Duration::ZERO;
    spec.update = Some(update);
    spec
}

async fn served(port: u16, host: &str) -> bool {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build();
    let Ok(client) = client else { return false };
    client
        .get(format!("http://127.0.0.1:{port}/"))
        .header(reqwest::header::HOST, host)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn measure(ctx: &Ctx, o: &Dubernetes) -> Result<Section> {
    let rounds = if ctx.quick { 2 } else { 3 };
    let image_v1 = engine::image_id(&ctx.docker, V1).await?;
    let image_v2 = engine::image_id(&ctx.docker, V2).await?;

    // --- apply → served ---
    let (mut ours_apply, mut plain_apply) = (Samples::default(), Samples::default());
    for round in 0..rounds {
        let name = format!("apply{round}");
        let t0 = Instant::now();
        o.apply(spec(&name, V1)).await?;
        o.wait_ready(&name, LIMIT).await?;
        let port = ingress_port(o).await?;
        let host = format!("{name}.bench.local");
        while !served(port, &host).await {
            if t0.elapsed() > LIMIT {
                bail!("swarm backend: {name} ready but not served");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ours_apply.push(t0.elapsed());
        o.delete(&name).await?;
        o.wait_deleted(&name, LIMIT).await?;

        let t0 = Instant::now();
        let svc = plain_service(ctx, &format!("{}-apply{round}", ctx.run), &image_v1, None).await?;
        swarm::wait_running(
            &ctx.docker,
            Some(&svc),
            REPLICAS as usize,
            &[],
            Duration::from_millis(5),
            LIMIT,
        )
        .await?;
        plain_apply.push(t0.elapsed());
        let _ = ctx.docker.delete_service(&svc).await;
        eprintln!(
            "bench: swarm backend: apply {} (plain Swarm {})",
            fmt(ours_apply.max()),
            fmt(t0.elapsed())
        );
    }

    // --- kill → replaced and routed ---
    let (mut ours_kill, mut plain_kill) = (Samples::default(), Samples::default());
    o.apply(spec("kill", V1)).await?;
    o.wait_ready("kill", LIMIT).await?;
    let svc = plain_service(ctx, &format!("{}-kill", ctx.run), &image_v1, None).await?;
    swarm::wait_running(
        &ctx.docker,
        Some(&svc),
        REPLICAS as usize,
        &[],
        Duration::from_millis(5),
        LIMIT,
    )
    .await?;
    for _ in 0..rounds {
        // A replica that dies young counts as crash-looping: kill one past 11 s.
        let pod = o.get("kill").await?;
        let oldest = pod
            .replicas
            .iter()
            .min_by_key(|r| r.created)
            .context("no replica")?
            .clone();
        let age = now_secs() - oldest.created;
        if age < 11 {
            tokio::time::sleep(Duration::from_secs((11 - age) as u64)).await;
        }
        let victim = task_container(&ctx.docker, &oldest.id).await?;
        let t0 = Instant::now();
        engine::kill(&ctx.docker, &victim).await?;
        loop {
            let pod = o.get("kill").await?;
            if pod.is_converged() && pod.replicas.iter().all(|r| r.id != oldest.id) {
                break;
            }
            if t0.elapsed() > LIMIT {
                bail!("swarm backend: no ready replacement after the kill");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ours_kill.push(t0.elapsed());

        let victim = task_container(&ctx.docker, &svc).await?;
        let t0 = Instant::now();
        engine::kill(&ctx.docker, &victim).await?;
        swarm::wait_running(
            &ctx.docker,
            Some(&svc),
            REPLICAS as usize,
            std::slice::from_ref(&victim),
            Duration::from_millis(5),
            LIMIT,
        )
        .await?;
        plain_kill.push(t0.elapsed());
        eprintln!(
            "bench: swarm backend: kill {} (plain Swarm {})",
            fmt(ours_kill.max()),
            fmt(t0.elapsed())
        );
    }
    let _ = ctx.docker.delete_service(&svc).await;
    o.delete("kill").await?;
    o.wait_deleted("kill", LIMIT).await?;

    // --- rolling update under load ---
    o.apply(spec("roll", V1)).await?;
    o.wait_ready("roll", LIMIT).await?;
    let load = Load::start(ingress_port(o).await?, "roll.bench.local");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    o.apply(spec("roll", V2)).await?;
    loop {
        let pod = o.get("roll").await?;
        if pod.is_converged() && pod.replicas.len() == REPLICAS as usize {
            break;
        }
        if t0.elapsed() > LIMIT {
            bail!("swarm backend: the rolling update did not finish");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ours_roll = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ours_load = load.finish().await;
    o.delete("roll").await?;

    let network = format!("{}-swb-plain", ctx.run);
    let plain = plain_rollout(ctx, &network, &image_v1, &image_v2).await;
    engine::remove_network(&ctx.docker, &network).await;
    let (plain_roll, plain_load) = plain?;

    let mut body = String::new();
    writeln!(
        body,
        "The same single-node swarm (`docker swarm init --advertise-addr 127.0.0.1`), {REPLICAS} replicas of \
         `{V1}`, in the same run. Dubernetes: the library with `.backend(Backend::Swarm)` (as \
         `dubernetes-server --backend swarm`): one service per replica, readiness through the probe agent, \
         our nginx. Plain Swarm: one service of {REPLICAS} replicas by image id (as `docker service create \
         --no-resolve-image`), default restart policy, and for the update `--update-order start-first \
         --update-parallelism 1`, DNS round-robin endpoint (Swarm's virtual IP does not route on this machine), \
         behind the same nginx image on its own attachable overlay, re-resolving the tasks every second. \
         Plain Swarm's replacement after a kill includes its default restart delay (5 s). Times to *ready* for Dubernetes are to passing readiness checks and routed; \
         for plain Swarm to tasks *running* (Swarm has no readiness gate without a health check).\n"
    )?;
    writeln!(body, "| | Dubernetes `--backend swarm` | plain Swarm |")?;
    writeln!(body, "|---|---|---|")?;
    writeln!(
        body,
        "| apply {REPLICAS} replicas → served (median of {rounds}) | {} | {} (running) |",
        fmt(ours_apply.median()),
        fmt(plain_apply.median())
    )?;
    writeln!(
        body,
        "| `docker kill` of one task → replaced (median of {rounds}) | {} (ready and routed) | {} (running) |",
        fmt(ours_kill.median()),
        fmt(plain_kill.median())
    )?;
    writeln!(
        body,
        "| rolling update v1 → v2 of {REPLICAS} under {RATE} req/s: wall time | {} | {} |",
        fmt(ours_roll),
        fmt(plain_roll)
    )?;
    writeln!(
        body,
        "| … failed requests | {} of {} | {} of {} |",
        ours_load.failed, ours_load.sent, plain_load.failed, plain_load.sent
    )?;
    if !ours_load.reasons.is_empty() || !plain_load.reasons.is_empty() {
        writeln!(
            body,
            "\nFirst failures: Dubernetes {:?}; plain Swarm {:?}",
            ours_load.reasons, plain_load.reasons
        )?;
    }
    Ok(Section {
        key: "swarm-backend",
        title: "Swarm backend vs plain Swarm (issue 16)",
        body,
    })
}

/// The ingress's host port, once the ingress runs (it starts with the first pod).
async fn ingress_port(o: &Dubernetes) -> Result<u16> {
    let t0 = Instant::now();
    loop {
        if let Some(p) = o.ingress_port().await {
            return Ok(p);
        }
        if t0.elapsed() > LIMIT {
            bail!("the ingress has no port");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The running task container of a service.
async fn task_container(docker: &Docker, service: &str) -> Result<String> {
    swarm::tasks(docker, Some(service))
        .await?
        .iter()
        .filter(|t| swarm::is_running(t))
        .find_map(swarm::container_id)
        .with_context(|| format!("service {service} has no running task"))
}

/// A plain Swarm service of `REPLICAS` tasks of `image` (an image id), on
/// `network` if given, updated start-first one at a time.
async fn plain_service(ctx: &Ctx, name: &str, image: &str, network: Option<&str>) -> Result<String> {
    let labels = HashMap::from([(LABEL_BENCH.to_string(), ctx.run.clone())]);
    let spec = ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                labels: Some(labels),
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
                replicas: Some(i64::from(REPLICAS)),
            }),
            ..Default::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
            ..Default::default()
        }),
        // DNS round-robin: the virtual IP (IPVS) does not route on this
        // machine ("No route to host" from a container on the overlay).
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: None,
        }),
        ..Default::default()
    };
    let created = ctx
        .docker
        .create_service(spec, None)
        .await
        .with_context(|| format!("creating swarm service {name}"))?;
    let id = created.id.context("no service id")?;
    ctx.cleanup.swarm_service(&id);
    Ok(id)
}

/// Plain Swarm's rolling update under the same load: a service on an
/// overlay network, our nginx image in front of its virtual IP, then
/// `docker service update --image` (start-first) and a wait until every
/// running task runs the new image and the update is completed.
async fn plain_rollout(ctx: &Ctx, network: &str, v1: &str, v2: &str) -> Result<(Duration, LoadResult)> {
    swarm::create_overlay(&ctx.docker, &ctx.cleanup, network, &ctx.run).await?;
    let name = format!("{}-plainroll", ctx.run);
    let svc = plain_service(ctx, &name, v1, Some(network)).await?;
    swarm::wait_running(
        &ctx.docker,
        Some(&svc),
        REPLICAS as usize,
        &[],
        Duration::from_millis(20),
        LIMIT,
    )
    .await?;
    let nginx = format!("{}-plainnginx", ctx.run);
    let port = plain_nginx(ctx, &nginx, network, &name).await?;
    let result = async {
        let t_ready = Instant::now();
        while !served(port, "x").await {
            if t_ready.elapsed() > LIMIT {
                bail!("plain Swarm: nginx never served the service");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let load = Load::start(port, "x");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t0 = Instant::now();
        let service = ctx
            .docker
            .inspect_service(&svc, None::<bollard::query_parameters::InspectServiceOptions>)
            .await?;
        let mut spec = service.spec.context("no spec")?;
        if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
            c.image = Some(v2.to_string());
        }
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let options = UpdateServiceOptionsBuilder::new()
            .version(i32::try_from(version)?)
            .build();
        ctx.docker.update_service(&svc, spec, options, None).await?;
        loop {
            let service = ctx
                .docker
                .inspect_service(&svc, None::<bollard::query_parameters::InspectServiceOptions>)
                .await?;
            let done = service
                .update_status
                .and_then(|u| u.state)
                .is_some_and(|s| s.to_string() == "completed");
            if done {
                break;
            }
            if t0.elapsed() > LIMIT {
                bail!("plain Swarm: the update did not complete");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok((took, load.finish().await))
    }
    .await;
    let _ = ctx
        .docker
        .remove_container(&nginx, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
        .await;
    let _ = ctx.docker.delete_service(&svc).await;
    result
}

/// Our nginx image as a plain container on `network`, proxying every request
/// to `service`'s tasks (Docker's DNS, re-resolved every second, the next
/// address tried on a connection error), published on loopback.
async fn plain_nginx(ctx: &Ctx, name: &str, network: &str, service: &str) -> Result<u16> {
    let conf = format!(
        "server {{\n  listen 80 default_server;\n  resolver 127.0.0.11 valid=1s ipv6=off;\n  location / {{\n    \
         set $up {service};\n    proxy_pass http://$up:80;\n    proxy_next_upstream error timeout;\n  }}\n}}\n"
    );
    let body = ContainerCreateBody {
        image: Some("dubernetes/nginx:local-4".into()),
        labels: Some(HashMap::from([(LABEL_BENCH.to_string(), ctx.run.clone())])),
        exposed_ports: Some(vec!["80/tcp".into()]),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            port_bindings: Some(HashMap::from([(
                "80/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = ctx
        .docker
        .create_container(Some(CreateContainerOptionsBuilder::new().name(name).build()), body)
        .await
        .context("creating the plain Swarm nginx")?
        .id;
    let mut header = tar::Header::new_gnu();
    header.set_size(conf.len() as u64);
    header.set_mode(0o644);
    let mut archive = tar::Builder::new(Vec::new());
    archive.append_data(&mut header, "default.conf", conf.as_bytes())?;
    let archive = archive.into_inner()?;
    ctx.docker
        .upload_to_container(
            &id,
            Some(UploadToContainerOptionsBuilder::new().path("/etc/nginx/conf.d").build()),
            bollard::body_full(archive.into()),
        )
        .await?;
    ctx.docker
        .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
        .await?;
    let inspect = ctx
        .docker
        .inspect_container(&id, None::<bollard::query_parameters::InspectContainerOptions>)
        .await?;
    inspect
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove("80/tcp"))
        .flatten()
        .and_then(|b| b.into_iter().find_map(|b| b.host_port.and_then(|p| p.parse().ok())))
        .context("the plain Swarm nginx published no port")
}

/// A fixed request rate through an nginx on loopback, each request on its
/// own task (a slow answer never lowers the rate); no retries.
struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    generator: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    reasons: std::sync::Mutex<Vec<String>>,
}

struct LoadResult {
    sent: u64,
    failed: u64,
    reasons: Vec<String>,
}

impl Load {
    fn start(port: u16, host: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let generator = {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            tokio::spawn(async move {
                let Ok(client) = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(5))
                    .build()
                else {
                    return;
                };
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
                let mut inflight = tokio::task::JoinSet::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (client, counts) = (client.clone(), Arc::clone(&counts));
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                    inflight.spawn(async move {
                        let answer = client
                            .get(format!("http://127.0.0.1:{port}/"))
                            .header(reqwest::header::HOST, host)
                            .send()
                            .await;
                        let failure = match answer {
                            Ok(r) if r.status().is_success() => None,
                            Ok(r) => Some(format!("status {}", r.status())),
                            Err(e) => Some(e.to_string()),
                        };
                        if let Some(reason) = failure {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            let mut r = counts.reasons.lock().unwrap_or_else(|e| e.into_inner());
                            if r.len() < 5 {
                                r.push(reason);
                            }
                        }
                    });
                }
                while inflight.join_next().await.is_some() {}
            })
        };
        Load {
            stop,
            counts,
            generator,
        }
    }

    async fn finish(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.generator.await;
        LoadResult {
            sent: self.counts.sent.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
            reasons: self.counts.reasons.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

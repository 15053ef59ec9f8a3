//! Issue 4: time from `docker kill` of a replica to its replacement being
//! ready and routed, Dubernetes vs Swarm; time to scale 3 → 30 vs the engine's
//! own limit.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dubernetes_core::{Dubernetes, IngressSettings, PodSpec};

use crate::stats::{Samples, fmt, ratio};
use crate::{Ctx, Section, engine, swarm};

const IMAGE: &str = "dubernetes/whoami:v1";

const REPLICAS: u32 = 5;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    // The anchor first: endpoint files written through the engine's archive
    // API (what the server does when the engine is remote), then the same
    // rounds with them in a host directory bound into the ingress (the
    // default for a local engine), which also runs the scale part.
    let archive_instance = format!("{}-heal-archive", ctx.run);
    ctx.cleanup.instance(&archive_instance);
    let o = Dubernetes::builder()
        .instance(&archive_instance)
        .in_memory()
        .ingress(IngressSettings::new("dubernetes/nginx:local-4", "127.0.0.1:0".parse()?))
        .build()
        .await?;
    let archive = heal_rounds(ctx, &o).await;
    if o.diagnostics().ingress_endpoints_bound() {
        bail!("heal: the archive anchor's ingress has bound endpoint files");
    }
    if let Err(e) = o.purge().await {
        eprintln!("bench: warning: purging {archive_instance}: {e}");
    }
    let archive = archive?;

    let instance = format!("{}-heal", ctx.run);
    ctx.cleanup.instance(&instance);
    let endpoints = tempfile::tempdir()?;
    let o = Dubernetes::builder()
        .instance(&instance)
        .in_memory()
        .ingress(
            IngressSettings::new("dubernetes/nginx:local-4", "127.0.0.1:0".parse()?)
                .with_endpoints_dir(endpoints.path().join("endpoints")),
        )
        .build()
        .await?;
    let result = measure(ctx, &o, &instance, archive).await;
    if let Err(e) = o.purge().await {
        eprintln!("bench: warning: purging {instance}: {e}");
    }
    result
}

/// `docker kill` of the newest replica, `heal_rounds` times: each round
/// until the pod is converged again without the killed one.
async fn heal_rounds(ctx: &Ctx, o: &Dubernetes) -> Result<Samples> {
    let replicas = REPLICAS;
    let heal_rounds = if ctx.quick { 3 } else { 10 };
    o.apply(
        PodSpec::new("heal", IMAGE)
            .with_replicas(replicas)
            .with_host("heal.bench.local"),
    )
    .await?;
    o.wait_ready("heal", Duration::from_secs(60)).await?;
    eprintln!(
        "bench: heal: {heal_rounds} rounds of docker kill on {replicas} replicas (endpoint files {})",
        if o.diagnostics().ingress_endpoints_bound() {
            "bound"
        } else {
            "through the archive API"
        }
    );
    let mut heal = Samples::default();
    let mut last_victim: Option<String> = None;
    for round in 0..heal_rounds {
        // The newest replica: from the second round on, the replacement of the
        // one killed before, 1 s after it became ready and routed. Kills from
        // outside are not crashes: no back-off may grow with them.
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let pod = o.get("heal").await?;
        let newest = pod
            .replicas
            .iter()
            .filter(|r| last_victim.as_deref() != Some(r.id.as_str()))
            .max_by_key(|r| r.created)
            .context("no replica")?
            .clone();
        last_victim = Some(newest.id.clone());
        let t0 = Instant::now();
        engine::kill(&ctx.docker, &newest.id).await?;
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let pod = o.get("heal").await?;
            if pod.is_converged() && pod.replicas.iter().all(|r| r.id != newest.id) {
                break;
            }
            if Instant::now() > deadline {
                bail!("heal: no ready replacement 30 s after the kill");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        heal.push(t0.elapsed());
        eprintln!("bench: heal: {}", fmt(t0.elapsed()));
    }
    o.delete("heal").await?;
    o.wait_deleted("heal", Duration::from_secs(60)).await?;
    Ok(heal)
}

async fn measure(ctx: &Ctx, o: &Dubernetes, instance: &str, archive: Samples) -> Result<Section> {
    let quick = ctx.quick;
    let replicas = REPLICAS;
    let swarm_rounds = if quick { 2 } else { 5 };
    let scale_rounds = if quick { 1 } else { 3 };
    let heal = heal_rounds(ctx, o).await?;
    if !o.diagnostics().ingress_endpoints_bound() {
        bail!("heal: the ingress did not bind its endpoints directory (see the server's warnings)");
    }
    // The floor: the app's own create → start → answering, straight through
    // the engine on the same network (what any heal must wait for).
    let app = engine::app_ready_time(
        &ctx.docker,
        &ctx.cleanup,
        &ctx.run,
        &format!("dub-{instance}"),
        IMAGE,
        "/healthz",
        5,
    )
    .await?;
    eprintln!("bench: heal: app create → ready {}", fmt(app.median()));

    // --- swarm heal ---
    let mut swarm_heal = Samples::default();
    if ctx.swarm {
        eprintln!("bench: swarm heal: {swarm_rounds} rounds");
        let image = engine::image_id(&ctx.docker, IMAGE).await?;
        let svc = swarm::create_service(
            &ctx.docker,
            &ctx.cleanup,
            &ctx.run,
            &format!("{}-heal", ctx.run),
            &image,
            i64::from(replicas),
            None,
        )
        .await?;
        swarm::wait_running(
            &ctx.docker,
            Some(&svc),
            replicas as usize,
            &[],
            Duration::from_millis(50),
            Duration::from_secs(120),
        )
        .await?;
        for _ in 0..swarm_rounds {
            let tasks = swarm::tasks(&ctx.docker, Some(&svc)).await?;
            let victim = tasks
                .iter()
                .filter(|t| swarm::is_running(t))
                .find_map(swarm::container_id)
                .context("no running swarm task")?;
            let t0 = Instant::now();
            engine::kill(&ctx.docker, &victim).await?;
            swarm::wait_running(
                &ctx.docker,
                Some(&svc),
                replicas as usize,
                std::slice::from_ref(&victim),
                Duration::from_millis(10),
                Duration::from_secs(60),
            )
            .await?;
            swarm_heal.push(t0.elapsed());
            eprintln!("bench: swarm heal: {}", fmt(t0.elapsed()));
        }
        if let Err(e) = ctx.docker.delete_service(&svc).await {
            eprintln!("bench: warning: removing swarm service: {e}");
        }
    }

    // --- scale 3 -> 30 vs the engine's own limit ---
    eprintln!("bench: scale 3 -> 30: {scale_rounds} rounds");
    o.apply(
        PodSpec::new("scale", IMAGE)
            .with_replicas(3)
            .with_host("scale.bench.local"),
    )
    .await?;
    o.wait_ready("scale", Duration::from_secs(60)).await?;
    let mut scale = Samples::default();
    let mut limit = Samples::default();
    let network = format!("dub-{instance}");
    for _ in 0..scale_rounds {
        limit.push(engine::engine_limit(&ctx.docker, &ctx.cleanup, &ctx.run, &network, IMAGE, 27, 16).await?);
        let t0 = Instant::now();
        o.scale("scale", 30).await?;
        o.wait_ready("scale", Duration::from_secs(120)).await?;
        scale.push(t0.elapsed());
        eprintln!(
            "bench: scale 3 -> 30: {} (engine limit {})",
            fmt(t0.elapsed()),
            fmt(limit.0[limit.len() - 1])
        );
        o.scale("scale", 3).await?;
        o.wait_ready("scale", Duration::from_secs(120)).await?;
    }

    let mut md = String::new();
    let target_heal = Duration::from_millis(500);
    writeln!(md, "| measurement | Dubernetes | Docker Swarm | target | met |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    writeln!(
        md,
        "| `docker kill` of the newest of {replicas} replicas (1 s after the previous heal) → replacement ready and routed, median ({} rounds) | {} | {} | < 500 ms | {} |",
        heal.len(),
        fmt(heal.median()),
        if swarm_heal.len() > 0 {
            format!("{} ({} rounds)", fmt(swarm_heal.median()), swarm_heal.len())
        } else {
            "not run".into()
        },
        met(heal.median() < target_heal, heal.median(), target_heal)
    )?;
    writeln!(
        md,
        "| same, p90 / max | {} / {} | {} / {} | | |",
        fmt(heal.quantile(0.9)),
        fmt(heal.max()),
        fmt(swarm_heal.quantile(0.9)),
        fmt(swarm_heal.max())
    )?;
    writeln!(
        md,
        "| anchor, same run: the same rounds with the endpoint files written through the engine's archive API (a remote engine), median / p90 | {} / {} | | | |",
        fmt(archive.median()),
        fmt(archive.quantile(0.9)),
    )?;
    writeln!(
        md,
        "| the floor: the app's own create → start → answering straight through the engine, median of 5 | {} | | | |",
        fmt(app.median())
    )?;
    writeln!(
        md,
        "| ours: heal median minus that floor (detect the kill, reconcile, readiness check, endpoint write) | {} | | | |",
        fmt(heal.median().saturating_sub(app.median()))
    )?;
    let r = ratio(scale.median(), limit.median());
    writeln!(
        md,
        "\n| measurement | Dubernetes | engine's own limit | ratio | target | met |\n|---|---|---|---|---|---|"
    )?;
    writeln!(
        md,
        "| scale 3 → 30 replicas until all ready and routed, median ({} rounds) | {} | {} | {r:.2}× | ≤ 1.3× | {} |",
        scale.len(),
        fmt(scale.median()),
        fmt(limit.median()),
        if r <= 1.3 {
            "yes".to_string()
        } else {
            format!("no, by {:.0}%", (r / 1.3 - 1.0) * 100.0)
        }
    )?;
    writeln!(
        md,
        "\nHow: the library (`Dubernetes` handle, in-memory store, engine concurrency 16) in the bench process; \
         the kill is `POST /containers/{{id}}/kill` (SIGKILL) of the newest replica (the previous \
         round's replacement, 1 s after it was ready and routed: a kill from outside is no crash, so no back-off \
         grows); \"ready and routed\" is the pod's own status polled every 2 ms: every replica running, passing \
         its readiness check and in the ingress's endpoint files (read by nginx per request, no reload), which \
         are renamed in a host directory bound into the ingress (the anchor row: written through the engine's \
         archive API instead, in its own instance before). Swarm: a 5-replica service of the same image \
         (given by image id, so the agent does not try a registry), task states read through the engine API \
         every 10 ms until 5 tasks run again; no traffic goes through Swarm's routing mesh, so its figure does \
         not include routing and is a lower bound. The engine's own limit: the same 27 containers (same image, \
         same network) created and started straight through the API, 16 at a time; it includes no readiness \
         or routing, so the ratio is an upper bound of our overhead."
    )?;
    Ok(Section {
        key: "heal",
        title: "Self-healing and scaling (issue 4)",
        body: md,
    })
}

fn met(ok: bool, got: Duration, target: Duration) -> String {
    if ok {
        "yes".into()
    } else {
        format!("no, by {}", fmt(got.saturating_sub(target)))
    }
}

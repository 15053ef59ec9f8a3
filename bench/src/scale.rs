//! Issue 8: hundreds of pods on one machine, through a real `dubernetes-server`
//! process: convergence from one `dubectl apply` of a directory, one change
//! among idle pods, idle CPU, peak RSS, API latency, nginx change time; and
//! the same convergence by Swarm and by the engine straight through its API.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dubernetes_core::PodSpec;

use crate::server::{Server, cpu_seconds, ingress_status, vm_kib};
use crate::stats::{Samples, fmt, ratio};
use crate::{Ctx, Section, engine, swarm};

const V1: &str = "dubernetes/whoami:v1";
const V2: &str = "dubernetes/whoami:v2";

struct Sizes {
    pods: usize,
    replicas: u32,
    total_pods: usize,
    idle: Duration,
    gets: usize,
    lists: usize,
    applies: usize,
    nginx_rounds: usize,
}

fn yaml(name: &str, image: &str, replicas: u32) -> String {
    format!("name: {name}\nimage: {image}\nreplicas: {replicas}\naccess:\n  host: {name}.bench.local\n")
}

fn spec(name: &str, image: &str, replicas: u32) -> PodSpec {
    PodSpec::new(name, image)
        .with_replicas(replicas)
        .with_host(format!("{name}.bench.local"))
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let s = if ctx.quick {
        Sizes {
            pods: 10,
            replicas: 4,
            total_pods: 40,
            idle: Duration::from_secs(10),
            gets: 100,
            lists: 50,
            applies: 50,
            nginx_rounds: 2,
        }
    } else {
        Sizes {
            pods: 50,
            replicas: 4,
            total_pods: 200,
            idle: Duration::from_secs(60),
            gets: 500,
            lists: 200,
            applies: 200,
            nginx_rounds: 5,
        }
    };
    let n_containers = s.pods * s.replicas as usize;
    let mut md = String::new();

    // --- the engine's own limit, on a network of our own ---
    eprintln!("bench: scale: engine limit, {n_containers} containers");
    let network = format!("{}-engine", ctx.run);
    engine::create_network(&ctx.docker, &ctx.cleanup, &network, &ctx.run).await?;
    let limit = engine::engine_limit(&ctx.docker, &ctx.cleanup, &ctx.run, &network, V1, n_containers, 16).await?;
    engine::remove_network(&ctx.docker, &network).await;
    eprintln!("bench: scale: engine limit {}", fmt(limit));
    // The same on the default bridge (what Swarm's tasks use without a
    // network): how much the user network itself costs on this engine.
    let limit_bridge =
        engine::engine_limit(&ctx.docker, &ctx.cleanup, &ctx.run, "bridge", V1, n_containers, 16).await?;
    eprintln!("bench: scale: engine limit on the default bridge {}", fmt(limit_bridge));

    // --- Dubernetes, through the server ---
    let instance = format!("{}-scale", ctx.run);
    ctx.cleanup.instance(&instance);
    let server = Server::start(&ctx.server_bin, &instance).await?;
    let result = with_server(ctx, &server, &s, limit, &mut md).await;
    let pid = server.pid().ok();
    server.stop().await;
    let _ = pid;
    // The server leaves containers running by design: remove this instance's now.
    ctx.cleanup.run_instance(&ctx.docker, &instance).await;
    let (ours, reloads) = result?;

    // --- Swarm, same engine, same image: bare, then on an overlay network ---
    let mut swarm_time = None;
    let mut swarm_overlay_time = None;
    if ctx.swarm {
        let image = engine::image_id(&ctx.docker, V1).await?;
        let overlay = format!("{}-overlay", ctx.run);
        swarm::create_overlay(&ctx.docker, &ctx.cleanup, &overlay, &ctx.run).await?;
        for network in [None, Some(overlay.as_str())] {
            eprintln!(
                "bench: scale: swarm, {} services × {}{}",
                s.pods,
                s.replicas,
                if network.is_some() {
                    " on an overlay network"
                } else {
                    ""
                }
            );
            let t0 = Instant::now();
            let mut ids = Vec::new();
            for i in 0..s.pods {
                ids.push(
                    swarm::create_service(
                        &ctx.docker,
                        &ctx.cleanup,
                        &ctx.run,
                        &format!("{}-svc-{i:03}", ctx.run),
                        &image,
                        i64::from(s.replicas),
                        network,
                    )
                    .await?,
                );
            }
            swarm::wait_running(
                &ctx.docker,
                None,
                n_containers,
                &[],
                Duration::from_millis(100),
                Duration::from_secs(600),
            )
            .await?;
            let took = t0.elapsed();
            eprintln!("bench: scale: swarm {}", fmt(took));
            match network {
                None => swarm_time = Some(took),
                Some(_) => swarm_overlay_time = Some(took),
            }
            for id in &ids {
                if let Err(e) = ctx.docker.delete_service(id).await {
                    eprintln!("bench: warning: removing swarm service {id}: {e}");
                }
            }
            // The next variant starts from an engine without these tasks.
            swarm::wait_containers_gone(&ctx.docker, &ctx.run, Duration::from_secs(300)).await?;
        }
        engine::remove_network(&ctx.docker, &overlay).await;
    }

    let r_limit = ratio(ours, limit);
    let mut head = String::new();
    writeln!(
        head,
        "| measurement | Dubernetes | engine's own limit | Docker Swarm | target | met |\n|---|---|---|---|---|---|"
    )?;
    let swarm_cell = swarm_time.map(fmt).unwrap_or_else(|| "not run".into());
    let vs = |what: &str, t: Option<Duration>| match t {
        Some(t) if ours < t => format!("faster than {what} by {:.0}%", (1.0 - ratio(ours, t)) * 100.0),
        Some(t) => format!("slower than {what} by {:.0}%", (ratio(ours, t) - 1.0) * 100.0),
        None => format!("{what} not run"),
    };
    writeln!(
        head,
        "| converge {} pods × {} replicas from empty, one `dubectl apply -f dir` → all ready and routed | {} ({reloads} nginx reloads) | {} | {swarm_cell} | ≤ 1.2× engine limit, faster than Swarm | {:.2}× the limit ({}); {} |",
        s.pods,
        s.replicas,
        fmt(ours),
        fmt(limit),
        r_limit,
        if r_limit <= 1.2 { "yes" } else { "no" },
        vs("Swarm", swarm_time),
    )?;
    writeln!(
        head,
        "| anchors, same run: the engine's own limit on the default bridge (no user network); Swarm with its services on an overlay network (so a proxy can reach them, as ours are) | | {} | {} | | {}; {} |",
        fmt(limit_bridge),
        swarm_overlay_time.map(fmt).unwrap_or_else(|| "not run".into()),
        vs("the engine on the default bridge", Some(limit_bridge)),
        vs("Swarm on an overlay", swarm_overlay_time),
    )?;
    Ok(Section {
        key: "scale",
        title: "Scale: hundreds of pods on one machine (issue 8)",
        body: format!("{head}{md}"),
    })
}

/// Everything measured against the server. Returns the convergence time and
/// the number of nginx reloads it took; writes the other rows into `md`.
async fn with_server(
    ctx: &Ctx,
    server: &Server,
    s: &Sizes,
    limit: Duration,
    md: &mut String,
) -> Result<(Duration, u64)> {
    let _ = limit;
    let pid = server.pid()?;

    // One change with nothing else stored, as a baseline for the change among 199 idle pods.
    eprintln!("bench: scale: one change, alone");
    server.put(&spec("solo", V1, s.replicas)).await?;
    server
        .wait_all_converged(1, Duration::from_millis(20), Duration::from_secs(120))
        .await?;
    let alone = change_image(server, "solo", s.replicas).await?;
    server.delete("solo").await?;
    wait_gone(server, "solo").await?;

    // Converge from one apply of a directory.
    eprintln!("bench: scale: converge {} pods × {}", s.pods, s.replicas);
    let dir = tempfile::tempdir()?;
    for i in 0..s.pods {
        let name = format!("pod-{i:03}");
        std::fs::write(dir.path().join(format!("{name}.yaml")), yaml(&name, V1, s.replicas))?;
    }
    let reloads_before = server.ingress_reloads().await?;
    let t0 = Instant::now();
    let apply_took = server.dubectl_apply(&ctx.dubectl_bin, dir.path()).await?;
    server
        .wait_all_converged(s.pods, Duration::from_millis(100), Duration::from_secs(600))
        .await?;
    let converge = t0.elapsed();
    let reloads = server.ingress_reloads().await?.saturating_sub(reloads_before);
    eprintln!(
        "bench: scale: converged in {} ({reloads} reloads; apply itself {})",
        fmt(converge),
        fmt(apply_took)
    );

    // Fill up to the total number of pods (1 replica each), then let it settle.
    eprintln!("bench: scale: {} more pods", s.total_pods - s.pods);
    let more = tempfile::tempdir()?;
    for i in s.pods..s.total_pods {
        let name = format!("pod-{i:03}");
        std::fs::write(more.path().join(format!("{name}.yaml")), yaml(&name, V1, 1))?;
    }
    server.dubectl_apply(&ctx.dubectl_bin, more.path()).await?;
    server
        .wait_all_converged(s.total_pods, Duration::from_millis(200), Duration::from_secs(600))
        .await?;
    let containers = s.pods * s.replicas as usize + (s.total_pods - s.pods);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Idle CPU.
    eprintln!("bench: scale: idle CPU over {:?}", s.idle);
    let c0 = cpu_seconds(pid)?;
    let t_idle = Instant::now();
    tokio::time::sleep(s.idle).await;
    let idle_cpu = (cpu_seconds(pid)? - c0) / t_idle.elapsed().as_secs_f64() * 100.0;

    // API latency.
    eprintln!("bench: scale: API latency");
    let (mut get, mut list, mut apply) = (Samples::default(), Samples::default(), Samples::default());
    let mut list_wide = Samples::default();
    for i in 0..s.gets {
        let name = format!("pod-{:03}", i % s.total_pods);
        let t = Instant::now();
        server.get(&name).await?;
        get.push(t.elapsed());
    }
    for (replicas, samples) in [(false, &mut list), (true, &mut list_wide)] {
        for _ in 0..s.lists {
            let t = Instant::now();
            let pods = server.list_with(replicas).await?;
            samples.push(t.elapsed());
            if pods.len() != s.total_pods {
                bail!("list returned {} pods, expected {}", pods.len(), s.total_pods);
            }
        }
    }
    for i in 0..s.applies {
        let idx = s.pods + i % (s.total_pods - s.pods);
        let name = format!("pod-{idx:03}");
        let t = Instant::now();
        server.put(&spec(&name, V1, 1)).await?;
        apply.push(t.elapsed());
    }

    // One pod's image change while the others idle.
    eprintln!("bench: scale: one change among {} pods", s.total_pods);
    let among = change_image(server, "pod-000", s.replicas).await?;

    // nginx config change with all hosts: a pod with a host and no replica
    // only changes routes (the host answers 503 once the config is live).
    eprintln!("bench: scale: nginx change with {} hosts", s.total_pods);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut nginx = Samples::default();
    let ingress_port = server.ingress_port().await?;
    for round in 0..s.nginx_rounds {
        let name = format!("probe-{round}");
        let host = format!("{name}.bench.local");
        let t = Instant::now();
        server.put(&spec(&name, V1, 0)).await?;
        wait_status(&client, ingress_port, &host, 503).await?;
        nginx.push(t.elapsed());
        let t = Instant::now();
        server.delete(&name).await?;
        wait_status(&client, ingress_port, &host, 404).await?;
        nginx.push(t.elapsed());
    }
    let hwm = vm_kib(pid, "VmHWM")?;
    let rss = vm_kib(pid, "VmRSS")?;

    let hosts = s.total_pods;
    writeln!(
        md,
        "| one pod's image change (v1 → v2, {} replicas, rolling) while {} others idle | {} | alone on the server: {} | | about the same | {} |",
        s.replicas,
        s.total_pods - 1,
        fmt(among),
        fmt(alone),
        if ratio(among, alone) <= 1.3 {
            format!("yes ({:.2}×)", ratio(among, alone))
        } else {
            format!("no ({:.2}×)", ratio(among, alone))
        }
    )?;
    writeln!(
        md,
        "| server CPU over {:?} idle, {} pods / {containers} containers running | {idle_cpu:.2}% of a core | | | < 1% | {} |",
        s.idle,
        s.total_pods,
        if idle_cpu < 1.0 {
            "yes".to_string()
        } else {
            format!("no, by {:.2} points", idle_cpu - 1.0)
        }
    )?;
    writeln!(
        md,
        "| server peak RSS (VmHWM) over the whole run; RSS at the end | {:.1} MiB; {:.1} MiB | | | < 50 MiB | {} |",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        if hwm < 50 * 1024 {
            "yes".to_string()
        } else {
            format!("no, by {:.1} MiB", hwm as f64 / 1024.0 - 50.0)
        }
    )?;
    for (what, samples, target) in [
        ("GET /v1/pods/{name}", &get, Some(Duration::from_millis(10))),
        ("GET /v1/pods (list)", &list, Some(Duration::from_millis(10))),
        ("GET /v1/pods?replicas=true (list with every replica)", &list_wide, None),
        ("PUT /v1/pods/{name} (unchanged spec)", &apply, None),
    ] {
        let p99 = samples.quantile(0.99);
        writeln!(
            md,
            "| API {what} with {} pods stored, p50 / p99 ({} requests) | {} / {} | | | {} | {} |",
            s.total_pods,
            samples.len(),
            fmt(samples.median()),
            fmt(p99),
            if target.is_some() { "p99 < 10 ms" } else { "" },
            match target {
                Some(t) if p99 < t => "yes".to_string(),
                Some(t) => format!("no, by {}", fmt(p99 - t)),
                None => String::new(),
            }
        )?;
    }
    writeln!(
        md,
        "| nginx config change with {hosts} hosts (API write → the ingress answers with the new config), median / max ({} changes) | {} / {} | | | | |",
        nginx.len(),
        fmt(nginx.median()),
        fmt(nginx.max())
    )?;
    writeln!(
        md,
        "\nHow: a release `dubernetes-server` (its own data dir, API and ingress on 127.0.0.1, engine concurrency 16); \
         convergence is timed from the start of `dubectl apply -f <dir>` of {} YAML files until `GET /v1/pods` \
         (polled every 100 ms) shows every pod converged: all replicas running the current revision and in the \
         live nginx config. Then {} more pods of 1 replica each are applied, so {} pods / {containers} containers run for \
         the rest. Idle CPU is utime+stime from /proc/<pid>/stat; peak RSS is VmHWM. API requests are sequential over \
         one keep-alive connection. The image change is timed from the PUT until the pod reports the new \
         generation converged (rolling, max surge 1, 1 s drain per old replica). The nginx change adds (then \
         deletes) a pod with a host and 0 replicas and times until the ingress answers 503 (then 404) for it: \
         render, `nginx -t`, SIGHUP, and the wait until nginx serves the new config. The engine's own limit: the \
         same {n} containers created and started straight through the API, 16 at a time, on a network of their \
         own; it includes no readiness or routing. Swarm: {pods} services × {r} replicas of the same image (by image \
         id), default networking (no overlay, no published port), created one after the other, timed until the \
         engine's task list shows {n} tasks running (no routing).",
        s.pods,
        s.total_pods - s.pods,
        s.total_pods,
        n = s.pods * s.replicas as usize,
        pods = s.pods,
        r = s.replicas,
    )?;
    Ok((converge, reloads))
}

/// Changes a pod's image to v2 and times it until converged at the new generation.
async fn change_image(server: &Server, name: &str, replicas: u32) -> Result<Duration> {
    let before = server.get(name).await?.generation;
    let t0 = Instant::now();
    server.put(&spec(name, V2, replicas)).await?;
    let deadline = t0 + Duration::from_secs(300);
    loop {
        let pod = server.get(name).await?;
        if pod.generation > before && pod.is_converged() {
            return Ok(t0.elapsed());
        }
        if Instant::now() > deadline {
            bail!("{name}: the image change did not converge within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_gone(server: &Server, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.list().await?.iter().any(|p| p.name == name) {
        if Instant::now() > deadline {
            bail!("{name} still listed after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn wait_status(client: &reqwest::Client, port: u16, host: &str, want: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ingress_status(client, port, host).await == Some(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "the ingress did not answer {want} for {host} within 30 s"
            ))
            .context("nginx change");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

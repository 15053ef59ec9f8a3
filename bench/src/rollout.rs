//! Issue 3: a rolling update v1 → v2 of 10 replicas under a fixed request
//! rate through the ingress: failed requests, wall time, and how much of it
//! is the app's own start and readiness.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use dubernetes_core::{Dubernetes, IngressSettings, PodSpec, UpdateStrategy};

use crate::stats::fmt;
use crate::{Ctx, Section, engine};

const V1: &str = "dubernetes/whoami:v1";
const V2: &str = "dubernetes/whoami:v2";
const HOST: &str = "roll.bench.local";

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let instance = format!("{}-roll", ctx.run);
    ctx.cleanup.instance(&instance);
    // The endpoint files in a bound host directory, as a server's data dir has them.
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
    let mut result = measure(ctx, &o, &instance).await;
    if let Ok(section) = result.as_mut() {
        match crate::rollout_stops::rows(ctx, &o).await {
            Ok(rows) => section.body.push_str(&rows),
            Err(e) => result = Err(e.context("the slow-stop rows")),
        }
    }
    if let Err(e) = o.purge().await {
        eprintln!("bench: warning: purging {instance}: {e}");
    }
    result
}

#[derive(Default)]
struct Load {
    sent: AtomicU64,
    ok_v1: AtomicU64,
    ok_v2: AtomicU64,
    failed: AtomicU64,
    /// The first few failures: what went wrong, for the notes.
    reasons: std::sync::Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, reason: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut r = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() < 10 {
            r.push(reason);
        }
    }
}

fn spec(image: &str, replicas: u32, interval: Duration) -> PodSpec {
    let mut spec = PodSpec::new("roll", image)
        .with_replicas(replicas)
        .with_host(HOST)
        .with_health("/healthz");
    if let Some(h) = spec.health.as_mut() {
        h.interval = interval;
    }
    // This section measures the mechanism (engine calls, checks, reloads,
    // drains): no stabilization window, which would add `min_ready` (5s by
    // default) to every step and nothing else.
    let mut update = UpdateStrategy::default();
    update.min_ready = Duration::ZERO;
    spec.update = Some(update);
    spec
}

async fn measure(ctx: &Ctx, o: &Dubernetes, instance: &str) -> Result<Section> {
    let replicas: u32 = if ctx.quick { 4 } else { 10 };
    let rate: u64 = 400;
    let interval = Duration::from_millis(250);

    // The app's own start → ready time, straight through the engine.
    let network = format!("dub-{instance}");
    let app = engine::app_ready_time(&ctx.docker, &ctx.cleanup, &ctx.run, &network, V2, "/healthz", 5).await?;
    eprintln!("bench: rollout: app start → ready {}", fmt(app.median()));

    o.apply(spec(V1, replicas, interval)).await?;
    o.wait_ready("roll", Duration::from_secs(120)).await?;
    let port = match o.ingress_port().await {
        Some(p) => p,
        None => bail!("the ingress has no port"),
    };

    // Fixed-rate load: one request every 1/rate s, each on its own task, so a
    // slow answer never lowers the rate. Keep-alive connections (the client's
    // pool), and no request is ever sent twice: a replica change must not
    // close a connection under a client.
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    let generator = {
        let load = Arc::clone(&load);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut inflight = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let client = client.clone();
                let load = Arc::clone(&load);
                load.sent.fetch_add(1, Ordering::Relaxed);
                inflight.spawn(async move {
                    let send = || {
                        client
                            .get(format!("http://127.0.0.1:{port}/"))
                            .header(reqwest::header::HOST, HOST)
                            .send()
                    };
                    let answer = send().await;
                    let body = match answer {
                        Ok(r) if r.status().is_success() => r.text().await.map_err(|e| format!("body: {e}")),
                        Ok(r) => Err(format!("status {}", r.status().as_u16())),
                        Err(e) if e.is_timeout() => Err("timeout".to_string()),
                        Err(e) if e.is_connect() => Err(format!("connect: {e}")),
                        Err(e) => Err(format!("request: {e}")),
                    };
                    match body {
                        Ok(b) if b.contains("Version: v2") => {
                            load.ok_v2.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(b) if b.contains("Version: v1") => {
                            load.ok_v1.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => load.fail("unexpected body".to_string()),
                        Err(reason) => load.fail(reason),
                    }
                });
                while inflight.try_join_next().is_some() {}
            }
            while inflight.join_next().await.is_some() {}
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("bench: rollout: v1 → v2 of {replicas} replicas under {rate} req/s");
    let reloads_before = o.diagnostics().ingress_reloads();
    let updates_before = o.diagnostics().ingress_endpoint_updates();
    let t0 = Instant::now();
    o.apply(spec(V2, replicas, interval)).await?;
    o.wait_ready("roll", Duration::from_secs(600)).await?;
    let wall = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = o.get("roll").await?;
    stop.store(true, Ordering::Relaxed);
    if generator.await.is_err() {
        bail!("the load generator panicked");
    }
    let live: Vec<_> = pod.replicas.iter().filter(|r| r.state.is_live()).collect();
    let only_new = live.iter().all(|r| r.up_to_date) && live.len() == replicas as usize;
    let sent = load.sent.load(Ordering::Relaxed);
    let failed = load.failed.load(Ordering::Relaxed);
    let reloads = o.diagnostics().ingress_reloads().saturating_sub(reloads_before);
    let updates = o
        .diagnostics()
        .ingress_endpoint_updates()
        .saturating_sub(updates_before);
    let (v1, v2) = (load.ok_v1.load(Ordering::Relaxed), load.ok_v2.load(Ordering::Relaxed));
    eprintln!("bench: rollout: {} wall, {failed} of {sent} failed", fmt(wall));

    // Where the wall time goes: with max surge 1 / max unavailable 0 the
    // update is `replicas` steps, each: start a new replica, wait until its
    // check passes, route it, unroute an old one; the old one drains and
    // stops in the background while the next step runs, so only the last
    // drain adds to the wall time.
    let steps = replicas;
    let app_share = app.median() * steps;
    let drain_share = Duration::from_secs(1);
    let ours = wall.saturating_sub(app_share + drain_share);
    let reasons = load.reasons.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut md = String::new();
    writeln!(md, "| measurement | result | target | met |\n|---|---|---|---|")?;
    writeln!(
        md,
        "| failed requests during a {replicas}-replica rolling update v1 → v2 at {rate} req/s through the ingress, keep-alive client, no retries | {failed} of {sent} ({v1} answered by v1, {v2} by v2) | 0 | {} |",
        if failed == 0 { "yes" } else { "no" }
    )?;
    writeln!(
        md,
        "| nginx reloads during the update; endpoint updates (replica changes written without a reload) | {reloads}; {updates} | 0 reloads | {} |",
        if reloads == 0 { "yes" } else { "no" }
    )?;
    writeln!(
        md,
        "| wall time of the update (apply → every replica v2, ready and routed, no v1 left) | {} | | |",
        fmt(wall)
    )?;
    writeln!(
        md,
        "| of which the app's own start → ready ({steps} steps × {} median, measured straight through the engine) | {} ({:.0}%) | dominates | {} |",
        fmt(app.median()),
        fmt(app_share),
        app_share.as_secs_f64() / wall.as_secs_f64() * 100.0,
        if app_share >= ours { "yes" } else { "no" }
    )?;
    writeln!(
        md,
        "| of which the last drain pause (1 s, `drain_period`, lets nginx finish requests to an old replica; the others overlap the next step) | {} ({:.0}%) | | |",
        fmt(drain_share),
        drain_share.as_secs_f64() / wall.as_secs_f64() * 100.0
    )?;
    writeln!(
        md,
        "| the rest: ours (engine calls, readiness checks, endpoint updates, stop), per step | {} ({:.0}%), {} per step | < 200 ms per step | {} |",
        fmt(ours),
        ours.as_secs_f64() / wall.as_secs_f64() * 100.0,
        fmt(ours / steps.max(1)),
        if ours / steps.max(1) < Duration::from_millis(200) {
            "yes"
        } else {
            "no"
        }
    )?;
    if !reasons.is_empty() {
        writeln!(
            md,
            "| what the failed requests saw (first {}) | {} | | |",
            reasons.len(),
            reasons.join("; ")
        )?;
    }
    writeln!(
        md,
        "| afterwards only v2 containers run | {} | yes | {} |",
        if only_new { "yes" } else { "no" },
        if only_new { "yes" } else { "no" }
    )?;
    writeln!(
        md,
        "\nHow: the library in the bench process (in-memory store, default update strategy max surge 1 / max \
         unavailable 0, `min_ready: 0` (no stabilization window), readiness check `GET /healthz` every {} (every \
         15 ms until a replica first passes), 1 s drain); a generator sends one request every \
         {} ms over a pooled keep-alive client, never retried, to the ingress on 127.0.0.1 with `Host: {HOST}` (each on its own task, 5 s timeout, so slow answers \
         never lower the rate), from 2 s before the apply to 2 s after the pod converged; a request fails on \
         a connection error, a timeout, a non-2xx status or a body from neither version. The app's start → \
         ready is the median of 5 containers of the v2 image created, started and polled on `/healthz` every \
         5 ms straight through the engine.",
        fmt(interval),
        1000.0 / rate as f64
    )?;
    Ok(Section {
        key: "rollout",
        title: "Rolling update under load (issue 3)",
        body: md,
    })
}

//! Issue 17: takeover time. Two servers of one instance share a real
//! PostgreSQL (a throwaway cluster on loopback); `kill -9` of the leader, then
//! a scale written through the survivor: the time until that write is acted
//! on (the new replica ready and routed, as the survivor reports it). The
//! anchor, in the same run: the same write through the standby while the
//! leader lives. The killed server is started again as the next standby.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use dubernetes_core::PodSpec;
use dubernetes_core::pg_cluster::PgCluster;

use crate::server::Server;
use crate::stats::{Samples, fmt};
use crate::{Ctx, Section};

const IMAGE: &str = "dubernetes/whoami:v1";
const POD: &str = "takeover";

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let instance = format!("{}-takeover", ctx.run);
    ctx.cleanup.instance(&instance);
    eprintln!("bench: takeover: starting a PostgreSQL cluster");
    let cluster = PgCluster::start();
    let url = cluster.new_database().await;
    let start = Starter {
        ctx,
        instance: &instance,
        url: &url,
    };
    let mut leader = start.server().await?;
    wait_leading(&leader, Duration::from_secs(30)).await?;
    let mut standby = start.server().await?;
    let result = measure(ctx, &mut leader, &mut standby, &start).await;
    leader.stop().await;
    standby.stop().await;
    drop(cluster);
    result
}

/// Starts servers of the instance on the shared store (and so one ingress).
struct Starter<'a> {
    ctx: &'a Ctx,
    instance: &'a str,
    url: &'a str,
}

impl Starter<'_> {
    async fn server(&self) -> Result<Server> {
        Server::start_with(&self.ctx.server_bin, self.instance, &["--store", self.url]).await
    }
}

async fn wait_leading(server: &Server, timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    while !server.leads().await {
        if t0.elapsed() > timeout {
            bail!("no server led {timeout:?} after the kill");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t0.elapsed())
}

/// Writes `replicas` through `via` and waits until `via` shows it acted on.
async fn scale_and_wait(via: &Server, replicas: u32) -> Result<()> {
    via.put(
        &PodSpec::new(POD, IMAGE)
            .with_replicas(replicas)
            .with_host("takeover.bench.local"),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(pod) = via.get(POD).await
            && pod.is_converged()
            && pod.status.ready_replicas == replicas
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("scale to {replicas} through {} not acted on within 60 s", via.api);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn measure(ctx: &Ctx, leader: &mut Server, standby: &mut Server, start: &Starter<'_>) -> Result<Section> {
    let rounds = if ctx.quick { 2 } else { 5 };
    let mut replicas = 2;
    scale_and_wait(standby, replicas).await?;
    let (mut takeover, mut leads, mut anchor) = (Samples::default(), Samples::default(), Samples::default());
    for round in 0..rounds {
        // Anchor: the same write through the standby, the leader alive.
        replicas += 1;
        let t0 = Instant::now();
        scale_and_wait(standby, replicas).await?;
        anchor.push(t0.elapsed());
        // Takeover: kill -9 the leader, write through the survivor at once.
        replicas += 1;
        let t0 = Instant::now();
        leader.kill9().await;
        let write = scale_and_wait(standby, replicas);
        let lead = wait_leading(standby, Duration::from_secs(30));
        let (written, led) = tokio::join!(write, lead);
        written?;
        let (acted, led, base) = (t0.elapsed(), led?, anchor.max());
        takeover.push(acted);
        leads.push(led);
        eprintln!(
            "bench: takeover round {}: acted on after {}, leading after {} (slowest anchor so far {})",
            round + 1,
            fmt(acted),
            fmt(led),
            fmt(base)
        );
        // The killed server comes back as the standby; the survivor leads.
        let fresh = start.server().await?;
        let old = std::mem::replace(leader, std::mem::replace(standby, fresh));
        drop(old);
        // Scale back down, so the pod stays small (not measured).
        replicas = 2;
        scale_and_wait(standby, replicas).await?;
    }
    let mut body = String::new();
    writeln!(
        body,
        "Two `dubernetes-server` processes of one instance on one PostgreSQL 15 (a throwaway cluster on loopback, \
         `fsync=off`), `dubernetes/whoami:v1`. Each round: `kill -9` of the leader, then at once a scale +1 written \
         through the survivor; measured until the survivor shows the new replica ready and routed. The anchor is the \
         same write through the standby while the leader lives. {rounds} rounds."
    )?;
    writeln!(body)?;
    writeln!(body, "| | median | max |")?;
    writeln!(body, "|---|---|---|")?;
    writeln!(
        body,
        "| takeover: kill -9 of the leader → the write through the survivor acted on | {} | {} |",
        fmt(takeover.median()),
        fmt(takeover.max())
    )?;
    writeln!(
        body,
        "| of which: until the survivor leads (`GET /healthz`) | {} | {} |",
        fmt(leads.median()),
        fmt(leads.max())
    )?;
    writeln!(
        body,
        "| anchor: the same write through the standby, leader alive | {} | {} |",
        fmt(anchor.median()),
        fmt(anchor.max())
    )?;
    writeln!(body)?;
    writeln!(
        body,
        "The survivor polls the leader lock every {} ms; a killed leader's session ends with its socket, so the lock \
         is free at once. A leader cut off from the database (not killed) stops acting after {} s without a \
         confirmation, and the database frees its lock after {} s (`idle_session_timeout`): that case takes over in \
         about {} s plus the time above.",
        dubernetes_core::leadership::HEARTBEAT.as_millis(),
        dubernetes_core::leadership::FENCE_AFTER.as_secs(),
        dubernetes_core::leadership::SESSION_TIMEOUT.as_secs(),
        dubernetes_core::leadership::SESSION_TIMEOUT.as_secs(),
    )?;
    Ok(Section {
        key: "takeover",
        title: "Takeover (issue 17: PostgreSQL store, leader election)",
        body,
    })
}

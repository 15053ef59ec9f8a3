//! Issue 25 item 6: what the ingress costs. Requests/s and p99 latency with
//! `wrk` through the Dubernetes ingress to 2 replicas of a trivial backend,
//! beside plain nginx (the same image, no Lua, no logging) with a static
//! `upstream` and `keepalive` to the same 2 replicas, measured in the same
//! run: rounds alternate between the two, and each side's median is reported.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, StartContainerOptions,
};
use dubernetes_core::labels::LABEL_INSTANCE;
use dubernetes_core::labels::LABEL_ROLE;
use dubernetes_core::{Dubernetes, IngressSettings, PodSpec};

use crate::engine::LABEL_BENCH;
use crate::{Ctx, Section};

const IMAGE: &str = "dubernetes/nginx:local-4";
const BACKEND: &str = "dubernetes/whoami:v1";
const HOST: &str = "ingress.bench.local";
const CONNECTIONS: u32 = 32;
const THREADS: u32 = 2;

/// Plain nginx: a static upstream of the two replicas with keep-alive, nothing else.
fn plain_conf(servers: &[String]) -> String {
    let servers: String = servers.iter().map(|s| format!("        server {s};\n")).collect();
    format!(
        "user nginx;\nworker_processes auto;\nerror_log /dev/stderr notice;\npid /var/run/nginx.pid;\n\
         events {{\n    worker_connections 1024;\n}}\n\
         http {{\n    access_log off;\n    upstream web {{\n{servers}        keepalive 64;\n    }}\n\
         \x20   server {{\n        listen 80;\n        location / {{\n            proxy_pass http://web;\n\
         \x20           proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n\
         \x20           proxy_set_header Host $host;\n        }}\n    }}\n}}\n"
    )
}

/// One wrk run: requests/s, p99, requests that failed (errors, non-2xx),
/// and the proxy container's CPU time per request (µs; None if the cgroup
/// is not readable here).
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p99: Duration,
    bad: u64,
    requests: u64,
    cpu_us: Option<f64>,
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    if std::process::Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed (Debian: apt-get install wrk)");
    }
    let instance = format!("{}-ingress", ctx.run);
    ctx.cleanup.instance(&instance);
    // The endpoint files in a bound host directory, as a server's data dir has them.
    let endpoints = tempfile::tempdir()?;
    let o = Dubernetes::builder()
        .instance(&instance)
        .in_memory()
        .ingress(
            IngressSettings::new(IMAGE, "127.0.0.1:0".parse()?).with_endpoints_dir(endpoints.path().join("endpoints")),
        )
        .build()
        .await?;
    let result = measure(ctx, &o, &instance).await;
    // Plain nginx is on the instance's network: gone first, so the purge can remove it.
    if let Err(e) = crate::engine::remove_labelled(&ctx.docker, LABEL_BENCH, &plain_label(ctx)).await {
        eprintln!("bench: warning: removing plain nginx: {e}");
    }
    if let Err(e) = o.purge().await {
        eprintln!("bench: warning: purging {instance}: {e}");
    }
    result
}

async fn measure(ctx: &Ctx, o: &Dubernetes, instance: &str) -> Result<Section> {
    let (rounds, secs) = if ctx.quick { (2, 5) } else { (5, 10) };
    o.apply(PodSpec::new("web", BACKEND).with_replicas(2).with_host(HOST))
        .await?;
    o.wait_ready("web", Duration::from_secs(120)).await?;
    let ours = match o.ingress_port().await {
        Some(p) => p,
        None => bail!("the ingress has no port"),
    };
    let network = format!("dub-{instance}");
    let servers = replica_addresses(ctx, instance, &network).await?;
    if servers.len() != 2 {
        bail!("expected 2 replicas on {network}, found {servers:?}");
    }
    let conf_dir = tempfile::tempdir()?;
    let conf = conf_dir.path().join("nginx.conf");
    std::fs::write(&conf, plain_conf(&servers))?;
    let (plain, plain_id) = start_plain(ctx, &network, &conf).await?;
    let ingress_id = ingress_container(ctx, instance).await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()?;
    for port in [ours, plain] {
        wait_ok(&client, port).await?;
    }
    // Warm-up: connections, workers' caches, the replicas' threads.
    wrk(ours, 2, None).await?;
    wrk(plain, 2, None).await?;
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first, so a drift in the machine's load hits both.
        let order = if round % 2 == 0 { [plain, ours] } else { [ours, plain] };
        for port in order {
            let id = if port == ours { &ingress_id } else { &plain_id };
            let r = wrk(port, secs, Some(id)).await?;
            eprintln!(
                "bench: ingress: round {} {}: {:.0} req/s, p99 {:.1} ms, {} µs CPU/request",
                round + 1,
                if port == ours { "ours" } else { "plain" },
                r.rps,
                ms(r.p99),
                r.cpu_us.map_or("?".into(), |c| format!("{c:.1}"))
            );
            if port == ours { &mut mine } else { &mut theirs }.push(r);
        }
    }
    let (m_rps, m_p99) = medians(&mine);
    let (t_rps, t_p99) = medians(&theirs);
    let bad: u64 = mine.iter().chain(&theirs).map(|r| r.bad).sum();
    let (m_cpu, t_cpu) = (cpu_per_request(&mine), cpu_per_request(&theirs));
    let mut body = String::new();
    writeln!(
        body,
        "`wrk -t{THREADS} -c{CONNECTIONS} -d{secs}s --latency` from the host to 2 replicas of `{BACKEND}` (a minimal \
         HTTP server), through the published port of each proxy, {rounds} rounds alternating between the two; \
         medians of the rounds. **Dubernetes' ingress** is the instance's own (`{IMAGE}`: Lua balancer, \
         endpoints cached per worker, keep-alive to the replicas, buffered access log). **Plain nginx** is the \
         same image with a static `upstream` of the two replica addresses, `keepalive 64`, no access log and \
         no Lua: what a hand-written config costs.\n"
    )?;
    writeln!(body, "| | requests/s | p99 latency |")?;
    writeln!(body, "|---|---:|---:|")?;
    writeln!(body, "| Dubernetes ingress | {m_rps:.0} | {:.1} ms |", ms(m_p99))?;
    writeln!(
        body,
        "| plain nginx, static keep-alive upstream | {t_rps:.0} | {:.1} ms |",
        ms(t_p99)
    )?;
    writeln!(
        body,
        "| ratio (ours / plain) | **{:.2}×** | **{:.2}×** |",
        m_rps / t_rps.max(1.0),
        ms(m_p99) / ms(t_p99).max(0.001)
    )?;
    if let (Some(a), Some(b)) = (m_cpu, t_cpu) {
        writeln!(
            body,
            "\nCPU time of the proxy container per request (its cgroup, all rounds): Dubernetes ingress {a:.1} µs, \
             plain nginx {b:.1} µs ({:.2}×). Less sensitive to other work on the machine than requests/s: what the \
             Lua balancer, the endpoint cache check and the access log cost per request.",
            a / b.max(0.001)
        )?;
    }
    writeln!(body, "\nEvery round (requests/s, p99):\n")?;
    writeln!(body, "| round | Dubernetes ingress | plain nginx |")?;
    writeln!(body, "|---:|---:|---:|")?;
    for (i, (a, b)) in mine.iter().zip(&theirs).enumerate() {
        writeln!(
            body,
            "| {} | {:.0}, {:.1} ms | {:.0}, {:.1} ms |",
            i + 1,
            a.rps,
            ms(a.p99),
            b.rps,
            ms(b.p99)
        )?;
    }
    writeln!(
        body,
        "\nFailed requests (socket errors, non-2xx answers) in all rounds: {bad}. Goal (issue 25): at least 0.9× \
         the throughput and at most 1.5× the p99 of plain nginx."
    )?;
    Ok(Section {
        key: "ingress",
        title: "Ingress overhead vs plain nginx (issue 25)",
        body,
    })
}

/// µs of CPU per request over all rounds (None if any round has no figure).
fn cpu_per_request(runs: &[Run]) -> Option<f64> {
    let cpu: f64 = runs
        .iter()
        .map(|r| r.cpu_us.map(|c| c * r.requests as f64))
        .sum::<Option<f64>>()?;
    let n: u64 = runs.iter().map(|r| r.requests).sum();
    (n > 0).then(|| cpu / n as f64)
}

/// CPU time (ns) a container used so far: cgroup v1 (cpuacct) or v2.
fn cpu_ns(id: &str) -> Option<u64> {
    let v1 = format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage");
    if let Ok(text) = std::fs::read_to_string(v1) {
        return text.trim().parse().ok();
    }
    for v2 in [
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
        format!("/sys/fs/cgroup/docker/{id}/cpu.stat"),
    ] {
        if let Ok(text) = std::fs::read_to_string(v2) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|us| us * 1000);
        }
    }
    None
}

fn plain_label(ctx: &Ctx) -> String {
    format!("{}-plain-nginx", ctx.run)
}

/// The id of the instance's ingress container.
async fn ingress_container(ctx: &Ctx, instance: &str) -> Result<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_INSTANCE}={instance}"), format!("{LABEL_ROLE}=ingress")],
    )]);
    let options = ListContainersOptionsBuilder::new().filters(&filters).build();
    ctx.docker
        .list_containers(Some(options))
        .await?
        .into_iter()
        .find_map(|c| c.id)
        .context("the instance has no ingress container")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn medians(runs: &[Run]) -> (f64, Duration) {
    let mut rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    rps.sort_by(f64::total_cmp);
    let mut p99: Vec<Duration> = runs.iter().map(|r| r.p99).collect();
    p99.sort();
    (
        rps.get(rps.len() / 2).copied().unwrap_or(0.0),
        p99.get(p99.len() / 2).copied().unwrap_or_default(),
    )
}

/// `ip:80` of the instance's replicas on its network.
async fn replica_addresses(ctx: &Ctx, instance: &str, network: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([
        ("label".to_string(), vec![format!("{LABEL_INSTANCE}={instance}")]),
        ("ancestor".to_string(), vec![BACKEND.to_string()]),
    ]);
    let options = ListContainersOptionsBuilder::new().filters(&filters).build();
    let mut out = Vec::new();
    for c in ctx.docker.list_containers(Some(options)).await? {
        let Some(id) = c.id else { continue };
        let inspect = ctx
            .docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await?;
        if let Some(ip) = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
        {
            out.push(format!("{ip}:80"));
        }
    }
    out.sort();
    Ok(out)
}

/// Starts plain nginx on `network` with `conf`, published on a loopback port; returns the port.
async fn start_plain(ctx: &Ctx, network: &str, conf: &std::path::Path) -> Result<(u16, String)> {
    let label = plain_label(ctx);
    ctx.cleanup.bench_label(&label);
    let body = ContainerCreateBody {
        image: Some(IMAGE.to_string()),
        labels: Some(HashMap::from([(LABEL_BENCH.to_string(), label.clone())])),
        exposed_ports: Some(vec!["80/tcp".into()]),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            binds: Some(vec![format!("{}:/etc/nginx/nginx.conf:ro", conf.display())]),
            port_bindings: Some(HashMap::from([(
                "80/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network.to_string(), EndpointSettings::default())])),
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::new().name(&label).build();
    let created = ctx
        .docker
        .create_container(Some(options), body)
        .await
        .context("creating the plain nginx container")?;
    ctx.docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .context("starting the plain nginx container")?;
    let inspect = ctx
        .docker
        .inspect_container(&created.id, None::<InspectContainerOptions>)
        .await?;
    let port = inspect
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove("80/tcp"))
        .flatten()
        .and_then(|b| b.into_iter().find_map(|b| b.host_port))
        .and_then(|p| p.parse().ok())
        .context("plain nginx has no published port")?;
    Ok((port, created.id))
}

async fn wait_ok(client: &reqwest::Client, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/"))
            .header(reqwest::header::HOST, HOST)
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("127.0.0.1:{port} did not answer 200 within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// wrk against `port`; with `container`, its CPU time per request too.
async fn wrk(port: u16, secs: u64, container: Option<&str>) -> Result<Run> {
    let cpu_before = container.and_then(cpu_ns);
    let out = tokio::process::Command::new("wrk")
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Host: {HOST}"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed ({}): {text}", out.status);
    }
    let cpu_after = container.and_then(cpu_ns);
    let mut run = parse_wrk(&text).with_context(|| format!("unexpected wrk output: {text}"))?;
    if let (Some(a), Some(b)) = (cpu_before, cpu_after)
        && run.requests > 0
    {
        run.cpu_us = Some(b.saturating_sub(a) as f64 / 1000.0 / run.requests as f64);
    }
    Ok(run)
}

/// Requests/s, the 99th percentile of `--latency`, and failed requests.
fn parse_wrk(text: &str) -> Option<Run> {
    let mut rps = None;
    let mut p99 = None;
    let mut bad = 0;
    let mut requests = 0;
    for line in text.lines().map(str::trim) {
        // "70000 requests in 5.00s, 20.00MB read"
        if let Some((n, _)) = line.split_once(" requests in ") {
            requests = n.trim().parse().unwrap_or(0);
        }
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = duration(v.trim());
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            bad += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            bad += v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(Run {
        rps: rps?,
        p99: p99?,
        bad,
        requests,
        cpu_us: None,
    })
}

/// wrk's durations: `850.00us`, `1.25ms`, `2.01s`, `1.10m`.
fn duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n  Latency Distribution\n     \
                    50%    1.50ms\n     99%   14.74ms\n  70000 requests in 5.00s, 20.00MB read\n  Socket errors: \
                    connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  13991.36\n";
        let r = parse_wrk(text).expect("parsed");
        assert!((r.rps - 13991.36).abs() < 0.01);
        assert_eq!(r.p99, Duration::from_secs_f64(0.01474));
        assert_eq!(r.bad, 7);
        assert_eq!(r.requests, 70000);
        assert_eq!(duration("850.00us"), Some(Duration::from_micros(850)));
        assert_eq!(duration("2.00s"), Some(Duration::from_secs(2)));
        assert!(parse_wrk("nothing").is_none());
    }
}

//! `dubernetes-bench`: measures Dubernetes on this machine against Docker
//! Swarm and the engine's own limit, and writes docs/benchmarks.md.
//!
//! Bounded (every wait has a deadline), loopback only (the ingress and the API
//! on 127.0.0.1, containers on networks this run creates), and it removes
//! everything it made (containers, services, networks, the swarm it joined)
//! also when a measurement fails or it is interrupted. Run it through
//! `scripts/bench.sh`, which builds the release binaries first.

mod engine;
mod heal;
mod ingress;
mod rollout;
mod rollout_stops;
mod scale;
mod server;
mod stats;
mod swarm;
mod swarm_backend;
mod takeover;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use bollard::Docker;
use clap::{Parser, ValueEnum};

use crate::engine::Cleanup;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// Issue 4: heal after `docker kill` (vs Swarm), scale 3 → 30 (vs the engine).
    Heal,
    /// Issue 8: 50 pods × 4 replicas, 200 pods: convergence (vs Swarm and the engine), CPU, RSS, API latency, nginx.
    Scale,
    /// Issue 3: rolling update of 10 replicas under 100 req/s; issue 25 item 7: 5 replicas that stop slowly or at once, vs Swarm.
    Rollout,
    /// Issue 16: `--backend swarm` vs plain Swarm: apply → served, kill → replaced, rolling update under load.
    SwarmBackend,
    /// Issue 17: kill -9 of the leader of two servers on one PostgreSQL → a write through the survivor acted on.
    Takeover,
    /// Issue 25: requests/s and p99 through the ingress vs plain nginx with a keep-alive upstream (wrk).
    Ingress,
    /// All of the above.
    All,
}

/// Benchmarks of Dubernetes (bounded, loopback only).
#[derive(Debug, Parser)]
#[command(after_help = "Example:\n  scripts/bench.sh all --write-docs docs/benchmarks.md")]
struct Cli {
    /// Which benchmark to run.
    suite: Suite,
    /// Smaller sizes and fewer rounds, for development.
    #[arg(long)]
    quick: bool,
    /// Write (or update) this Markdown file with the results.
    #[arg(long)]
    write_docs: Option<PathBuf>,
    /// Skip the Docker Swarm comparisons.
    #[arg(long)]
    no_swarm: bool,
    /// The server binary (default: target/release/dubernetes-server).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The CLI binary (default: target/release/dubectl).
    #[arg(long)]
    dubectl_bin: Option<PathBuf>,
}

/// What every suite needs.
pub struct Ctx {
    pub docker: Docker,
    pub cleanup: Cleanup,
    /// The run's name: a prefix of every instance, network and service it makes.
    pub run: String,
    pub quick: bool,
    pub swarm: bool,
    pub server_bin: PathBuf,
    pub dubectl_bin: PathBuf,
}

/// One section of docs/benchmarks.md.
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    pub body: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sqlx=warn,bollard=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let docker = engine::connect().await?;
    let cleanup = Cleanup::default();
    let ctx = std::sync::Arc::new(Ctx {
        docker: docker.clone(),
        cleanup: cleanup.clone(),
        run: format!("bench-{:06x}", rand::random::<u32>() & 0xff_ffff),
        quick: cli.quick,
        swarm: !cli.no_swarm,
        server_bin: cli
            .server_bin
            .clone()
            .unwrap_or_else(|| server::release_binary("dubernetes-server")),
        dubectl_bin: cli
            .dubectl_bin
            .clone()
            .unwrap_or_else(|| server::release_binary("dubectl")),
    });
    let machine = Machine::read(&docker).await;
    eprintln!("bench: run {} on {}", ctx.run, machine.summary());
    let started = Instant::now();
    // The suites run on their own task so that a panic, an error or Ctrl-C
    // all end up in the same clean-up below.
    let work = {
        let ctx = std::sync::Arc::clone(&ctx);
        let suite = cli.suite;
        tokio::spawn(async move { run_suites(&ctx, suite).await })
    };
    let abort = work.abort_handle();
    let outcome = tokio::select! {
        joined = work => joined.map_err(|e| anyhow!("the benchmark panicked: {e}")).and_then(|r| r),
        _ = tokio::signal::ctrl_c() => {
            abort.abort();
            Err(anyhow!("interrupted"))
        }
    };
    eprintln!("bench: cleaning up");
    cleanup.run(&docker).await;
    let sections = outcome?;
    let load_end = loadavg();
    let header = format!(
        "Command: `{}`{}  \nDate: {} (UTC), {} in all  \nMachine: {}  \nLoad average at start: {}; at the end: {} ({})",
        command_line(),
        if cli.quick {
            " (quick mode: smaller sizes, fewer rounds)"
        } else {
            ""
        },
        utc_now(),
        stats::fmt(started.elapsed()),
        machine.summary(),
        machine.load_start,
        load_end,
        load_note(&machine.load_start),
    );
    for s in &sections {
        println!("\n## {}\n\n{header}\n\n{}", s.title, s.body);
    }
    if let Some(path) = &cli.write_docs {
        write_docs(path, &header, &sections)?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

async fn run_suites(ctx: &Ctx, suite: Suite) -> Result<Vec<Section>> {
    if suite == Suite::SwarmBackend && !ctx.swarm {
        anyhow::bail!("the swarm-backend benchmark needs a swarm: drop --no-swarm");
    }
    if ctx.swarm
        && matches!(
            suite,
            Suite::Heal | Suite::Scale | Suite::Rollout | Suite::SwarmBackend | Suite::All
        )
    {
        swarm::init(&ctx.docker, &ctx.cleanup).await?;
    }
    let mut sections = Vec::new();
    if matches!(suite, Suite::Heal | Suite::All) {
        sections.push(heal::run(ctx).await.context("heal benchmark")?);
    }
    if matches!(suite, Suite::Scale | Suite::All) {
        sections.push(scale::run(ctx).await.context("scale benchmark")?);
    }
    if matches!(suite, Suite::Rollout | Suite::All) {
        sections.push(rollout::run(ctx).await.context("rollout benchmark")?);
    }
    if ctx.swarm && matches!(suite, Suite::SwarmBackend | Suite::All) {
        sections.push(swarm_backend::run(ctx).await.context("swarm backend benchmark")?);
    }
    if matches!(suite, Suite::Takeover | Suite::All) {
        sections.push(takeover::run(ctx).await.context("takeover benchmark")?);
    }
    if matches!(suite, Suite::Ingress | Suite::All) {
        sections.push(ingress::run(ctx).await.context("ingress benchmark")?);
    }
    Ok(sections)
}

/// Replaces each section between its markers, or appends it; creates the file with a preamble.
fn write_docs(path: &Path, header: &str, sections: &[Section]) -> Result<()> {
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|_| PREAMBLE.to_string());
    for s in sections {
        let start = format!("<!-- bench:{}:start -->", s.key);
        let end = format!("<!-- bench:{}:end -->", s.key);
        let block = format!("{start}\n## {}\n\n{header}\n\n{}\n{end}", s.title, s.body.trim_end());
        match (text.find(&start), text.find(&end)) {
            (Some(a), Some(b)) if b > a => text.replace_range(a..b + end.len(), &block),
            _ => {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push('\n');
                text.push_str(&block);
                text.push('\n');
            }
        }
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

const PREAMBLE: &str = "# Benchmarks\n\nWritten by `scripts/bench.sh` (the `dubernetes-bench` binary, `bench/`). Each section says the command \
that produced it, when, and on what machine. Every figure is measured on one machine in one run; nothing here is \
a test assertion. Re-run with `scripts/bench.sh all --write-docs docs/benchmarks.md` (about 10 minutes; \
`--quick` for a smaller run).\n";

struct Machine {
    cpu: String,
    cores: usize,
    mem_gib: f64,
    kernel: String,
    docker: String,
    load_start: String,
}

impl Machine {
    async fn read(docker: &Docker) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mem_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let docker = match docker.version().await {
            Ok(v) => format!(
                "Docker Engine {} (API {})",
                v.version.unwrap_or_default(),
                v.api_version.unwrap_or_default()
            ),
            Err(_) => "Docker Engine (version unknown)".into(),
        };
        Machine {
            cpu,
            cores,
            mem_gib: mem_kib / 1024.0 / 1024.0,
            kernel,
            docker,
            load_start: loadavg(),
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} cores ({}), {:.0} GiB RAM, Linux {}, {}",
            self.cores, self.cpu, self.mem_gib, self.kernel, self.docker
        )
    }
}

/// What the load at the start says about the figures: other work on the
/// cores (noisy), or an otherwise idle machine (the load during the run is
/// the benchmark's own).
fn load_note(load_start: &str) -> &'static str {
    let one_minute: f64 = load_start
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(f64::MAX);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    if one_minute >= cores {
        "other work kept the cores busy when the run started, so figures are noisy"
    } else {
        "no other work ran on the machine; the load during the run is the benchmark's own"
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn command_line() -> String {
    std::env::var("DUBERNETES_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("dubernetes-bench {}", args.join(" "))
    })
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_422), (2025, 11, 30));
    }

    #[test]
    fn sections_are_replaced_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.md");
        let s = |body: &str| Section {
            key: "heal",
            title: "Heal",
            body: body.into(),
        };
        write_docs(&path, "h", &[s("first-body")]).expect("write");
        write_docs(&path, "h", &[s("second-body")]).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("second-body") && !text.contains("first-body"), "{text}");
        assert_eq!(text.matches("bench:heal:start").count(), 1);
    }
}

//! Issue 25 item 7: a rolling update of 5 replicas, every default, with an
//! app that ignores SIGTERM (`dubernetes/whoami:stubborn`: each old replica
//! takes the 10 s grace period to stop) and with one that exits at once
//! (`dubernetes/whoami:v1` → `v2`); ours beside Docker Swarm's start-first
//! update of the same images in the same run. Two times each: until every
//! replica is new and running (ours: ready and routed), and until no old
//! replica is left.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bollard::models::{
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum,
    TaskSpec, TaskSpecContainerSpec,
};
use bollard::query_parameters::{InspectServiceOptions, ListContainersOptionsBuilder, UpdateServiceOptionsBuilder};
use dubernetes_core::{Dubernetes, PodSpec};

use crate::engine::LABEL_BENCH;
use crate::stats::fmt;
use crate::{Ctx, engine, swarm};

const REPLICAS: u32 = 5;
/// Longest any one update may take before the run fails.
const LIMIT: Duration = Duration::from_secs(300);
/// How often both sides are polled.
const POLL: Duration = Duration::from_millis(50);

/// One case: the image before and after, and whether the update changes the
/// image or, for the same image, an env value.
struct Case {
    what: &'static str,
    before: &'static str,
    after: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        what: "ignores SIGTERM (`whoami:stubborn`, a new env value)",
        before: "dubernetes/whoami:stubborn",
        after: "dubernetes/whoami:stubborn",
    },
    Case {
        what: "exits at once on SIGTERM (`whoami:v1` → `v2`)",
        before: "dubernetes/whoami:v1",
        after: "dubernetes/whoami:v2",
    },
];

/// Until every replica was new and running or ready; until no old one was
/// left; Swarm: until it called the update `completed`.
#[derive(Clone, Copy)]
struct Times {
    new: Duration,
    clean: Duration,
    completed: Option<Duration>,
}

/// The rows, as Markdown, for the rollout section.
pub async fn rows(ctx: &Ctx, o: &Dubernetes) -> Result<String> {
    let mut results = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let ours = ours(o, &format!("stops{i}"), case).await?;
        eprintln!(
            "bench: rollout: {}: ours {} / {}",
            case.what,
            fmt(ours.new),
            fmt(ours.clean)
        );
        let theirs = if ctx.swarm {
            let t = swarm_update(ctx, &format!("{}-stops{i}", ctx.run), case).await?;
            eprintln!("bench: rollout: {}: Swarm {} / {}", case.what, fmt(t.new), fmt(t.clean));
            Some(t)
        } else {
            None
        };
        results.push((case, ours, theirs));
    }
    let mut md = String::new();
    writeln!(
        md,
        "\n### Slow stops (issue 25 item 7): {REPLICAS} replicas, every default, ours beside Swarm's start-first update\n"
    )?;
    writeln!(
        md,
        "| the app | until every replica is new: ours (ready and routed) | Swarm (running) | until no old replica is left: ours | Swarm | Swarm calls the update `completed` | ours not slower |\n|---|---|---|---|---|---|---|"
    )?;
    for (case, ours, theirs) in &results {
        let swarm = |d: Option<Duration>| d.map(fmt).unwrap_or_else(|| "not run".into());
        let not_slower = match theirs {
            Some(t) if ours.new <= t.new && ours.clean <= t.clean => "yes".to_string(),
            Some(t) => format!(
                "no: {:+.1} s / {:+.1} s",
                ours.new.as_secs_f64() - t.new.as_secs_f64(),
                ours.clean.as_secs_f64() - t.clean.as_secs_f64()
            ),
            None => "—".to_string(),
        };
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {not_slower} |",
            case.what,
            fmt(ours.new),
            swarm(theirs.map(|t| t.new)),
            fmt(ours.clean),
            swarm(theirs.map(|t| t.clean)),
            swarm(theirs.and_then(|t| t.completed)),
        )?;
    }
    writeln!(
        md,
        "\nHow: ours through the library in the bench process (pod with a host on the ingress, no `health` \
         and no `update` given: max surge 1, max unavailable 0, `min_ready` 5 s, drain 1 s, stop grace 10 s); \
         Swarm: a service of the image id (no registry look-up), default networking, \
         `--update-order start-first` and otherwise Swarm's defaults (parallelism 1, no delay, monitor 5 s, \
         stop grace 10 s). Both updated from {REPLICAS} running replicas, polled every {}; the clock starts at the \
         apply / `service update` call. \"No old replica left\" means no container of the old revision or spec \
         exists any more (a SIGTERM-ignoring one is killed at the end of its grace period).",
        fmt(POLL)
    )?;
    Ok(md)
}

/// Our rolling update of `case`: apply, wait converged, update, time it.
async fn ours(o: &Dubernetes, name: &str, case: &Case) -> Result<Times> {
    let host = format!("{name}.bench.local");
    let spec = |image: &str, generation: &str| {
        PodSpec::new(name, image)
            .with_replicas(REPLICAS)
            .with_host(host.clone())
            .with_env("GENERATION", generation)
    };
    o.apply(spec(case.before, "1")).await?;
    o.wait_ready(name, Duration::from_secs(120)).await?;
    let t0 = Instant::now();
    let (pod, _) = o.apply(spec(case.after, "2")).await?;
    let generation = pod.generation;
    let mut new = None;
    let clean = loop {
        let pod = o.get(name).await?;
        let s = &pod.status;
        let old_left = pod.replicas.iter().any(|r| r.state.is_live() && !r.up_to_date);
        if new.is_none()
            && s.observed_generation == generation
            && s.updated_replicas == REPLICAS
            && s.ready_replicas == REPLICAS
        {
            new = Some(t0.elapsed());
        }
        if let Some(new) = new
            && !old_left
            && pod.is_converged()
        {
            break Times {
                new,
                clean: t0.elapsed(),
                completed: None,
            };
        }
        if t0.elapsed() > LIMIT {
            bail!("ours: {name} did not converge in {LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    };
    o.delete(name).await?;
    o.wait_deleted(name, Duration::from_secs(60)).await?;
    Ok(clean)
}

/// Swarm's start-first update of `case` on a plain service.
async fn swarm_update(ctx: &Ctx, name: &str, case: &Case) -> Result<Times> {
    let docker = &ctx.docker;
    let before = engine::image_id(docker, case.before).await?;
    let after = engine::image_id(docker, case.after).await?;
    let labels = HashMap::from([(LABEL_BENCH.to_string(), ctx.run.clone())]);
    let spec = ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(before),
                labels: Some(labels),
                env: Some(vec!["GENERATION=1".into()]),
                ..Default::default()
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
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
            ..Default::default()
        }),
        ..Default::default()
    };
    let svc = docker
        .create_service(spec, None)
        .await
        .with_context(|| format!("creating swarm service {name}"))?
        .id
        .context("no service id")?;
    ctx.cleanup.swarm_service(&svc);
    let result = async {
        swarm::wait_running(
            docker,
            Some(&svc),
            REPLICAS as usize,
            &[],
            POLL,
            Duration::from_secs(120),
        )
        .await?;
        let old: Vec<String> = swarm::tasks(docker, Some(&svc))
            .await?
            .iter()
            .filter_map(swarm::container_id)
            .collect();
        let service = docker.inspect_service(&svc, None::<InspectServiceOptions>).await?;
        let mut spec = service.spec.context("no spec")?;
        if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
            c.image = Some(after);
            c.env = Some(vec!["GENERATION=2".into()]);
        }
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let options = UpdateServiceOptionsBuilder::new()
            .version(i32::try_from(version)?)
            .build();
        let t0 = Instant::now();
        docker.update_service(&svc, spec, options, None).await?;
        let filters = HashMap::from([("label", vec![format!("com.docker.swarm.service.id={svc}")])]);
        let (mut new, mut completed) = (None, None);
        loop {
            let done = docker
                .inspect_service(&svc, None::<InspectServiceOptions>)
                .await?
                .update_status
                .and_then(|u| u.state)
                .is_some_and(|s| s.to_string() == "completed");
            let running_new = swarm::tasks(docker, Some(&svc))
                .await?
                .iter()
                .filter(|t| swarm::is_running(t))
                .filter(|t| swarm::container_id(t).is_some_and(|c| !old.contains(&c)))
                .count();
            if new.is_none() && running_new >= REPLICAS as usize {
                new = Some(t0.elapsed());
            }
            if completed.is_none() && done {
                completed = Some(t0.elapsed());
            }
            let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
            let old_left = docker
                .list_containers(Some(options))
                .await?
                .iter()
                .filter(|c| {
                    c.id.as_ref().is_some_and(|id| old.contains(id))
                        && c.state.as_ref().is_some_and(|s| s.to_string() == "running")
                })
                .count();
            if let (Some(new), Some(_)) = (new, completed)
                && old_left == 0
            {
                return Ok(Times {
                    new,
                    clean: t0.elapsed(),
                    completed,
                });
            }
            if t0.elapsed() > LIMIT {
                bail!("Swarm: the update of {name} did not finish in {LIMIT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
    .await;
    let _ = docker.delete_service(&svc).await;
    result
}

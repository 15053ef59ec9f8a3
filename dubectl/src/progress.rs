//! Waiting for a rollout through the watch API, with live progress: an
//! `indicatif` bar on a terminal, one plain line per change otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, bail};
use dubernetes_api::{Pod, WatchKind};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Client;

/// What a wait waits for.
pub struct Target {
    pub name: String,
    /// Views of the pod older than this generation (the feed may still hold them) are skipped.
    pub min_generation: i64,
    /// The revision being rolled out; a different one means it was rolled back.
    pub revision: i64,
}

enum Display {
    Bar(ProgressBar),
    Lines(String),
}

impl Display {
    fn new(name: &str) -> Display {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            let template = if crate::style::enabled(true) {
                "{spinner:.cyan} {prefix:.bold} [{bar:24.green/white}] {pos}/{len} ready {msg} ({elapsed})"
            } else {
                "{spinner} {prefix} [{bar:24}] {pos}/{len} ready {msg} ({elapsed})"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("pod/{name}"));
            bar.enable_steady_tick(Duration::from_millis(120));
            Display::Bar(bar)
        } else {
            Display::Lines(String::new())
        }
    }

    fn show(&mut self, pod: &Pod) {
        let s = &pod.status;
        let detail = format!(
            "revision {}, {}/{} up to date, {}{}",
            s.revision_number,
            s.updated_replicas,
            s.desired_replicas,
            crate::escape::line(s.reason.as_deref().unwrap_or(s.phase.as_str())),
            s.message
                .as_ref()
                .map(|m| format!(": {}", crate::escape::line(m)))
                .unwrap_or_default()
        );
        match self {
            Display::Bar(bar) => {
                bar.set_length(u64::from(s.desired_replicas));
                bar.set_position(u64::from(s.ready_replicas));
                bar.set_message(detail);
            }
            Display::Lines(last) => {
                let line = format!(
                    "pod/{}: {}/{} ready, {detail}",
                    pod.name, s.ready_replicas, s.desired_replicas
                );
                if *last != line {
                    eprintln!("{line}");
                    *last = line;
                }
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Done, failed, or still going.
fn verdict(pod: &Pod, target: &Target) -> Option<Result<(), String>> {
    let s = &pod.status;
    if s.revision_number != target.revision {
        return Some(Err(format!(
            "revision {} was rolled back (now revision {}): {}",
            target.revision,
            s.revision_number,
            crate::escape::line(s.message.as_deref().unwrap_or("see `dubectl rollout history`"))
        )));
    }
    let progressing = s
        .conditions
        .iter()
        .find(|c| c.kind == dubernetes_api::ConditionType::Progressing);
    if let Some(c) = progressing.filter(|c| !c.status) {
        return Some(Err(format!(
            "{}: {}",
            crate::escape::line(&c.reason),
            crate::escape::line(&c.message)
        )));
    }
    // Nothing of the new revision can start until the image or secret is
    // fixed (the server keeps retrying with back-off): say why now.
    if let Some(reason) = s
        .reason
        .as_deref()
        .filter(|r| ["ImagePullFailed", "SecretUnavailable"].contains(r))
    {
        return Some(Err(format!(
            "{}: {}",
            reason,
            crate::escape::line(s.message.as_deref().unwrap_or(""))
        )));
    }
    if pod.is_converged() {
        return Some(Ok(()));
    }
    None
}

/// Waits until the target is fully rolled out; fails with the reason when it
/// fails, is rolled back, deleted, or the timeout passes.
pub async fn wait(client: &Client, target: &Target, timeout: Duration) -> anyhow::Result<Pod> {
    let mut display = Display::new(&target.name);
    let result = tokio::time::timeout(timeout, follow(client, target, &mut display)).await;
    display.finish();
    match result {
        Ok(outcome) => outcome,
        Err(_) => {
            let pod = client.get(&target.name).await?;
            let s = &pod.status;
            bail!(
                "pod/{} not rolled out after {}: {}/{} ready, {}/{} up to date, {}{}",
                target.name,
                humantime_secs(timeout),
                s.ready_replicas,
                s.desired_replicas,
                s.updated_replicas,
                s.desired_replicas,
                crate::escape::line(s.reason.as_deref().unwrap_or(s.phase.as_str())),
                s.message
                    .as_ref()
                    .map(|m| format!(": {}", crate::escape::line(m)))
                    .unwrap_or_default()
            )
        }
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

async fn follow(client: &Client, target: &Target, display: &mut Display) -> anyhow::Result<Pod> {
    let mut since: Option<u64> = None;
    loop {
        let mut changes = Box::pin(match client.watch(since).await {
            Ok(stream) => stream,
            // The feed moved on while we reconnected: start from a fresh snapshot.
            Err(_) if since.is_some() => {
                since = None;
                continue;
            }
            Err(e) => return Err(e),
        });
        while let Some(change) = changes.next().await {
            let change = match change {
                Ok(c) => c,
                Err(_) => break,
            };
            since = Some(change.version);
            if change.name != target.name {
                continue;
            }
            let Some(pod) = change.pod else { continue };
            if change.kind == WatchKind::Deleted {
                bail!("pod/{} was deleted while waiting for it", target.name);
            }
            if pod.generation < target.min_generation {
                continue;
            }
            display.show(&pod);
            match verdict(&pod, target) {
                Some(Ok(())) => return Ok(pod),
                Some(Err(reason)) => return Err(anyhow!("rollout of pod/{} failed: {reason}", target.name)),
                None => {}
            }
        }
        // The stream ended (server restart, or this watcher fell behind): resume.
    }
}

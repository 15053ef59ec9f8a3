//! Tables, JSON and YAML output.

use std::time::{SystemTime, UNIX_EPOCH};

use dubernetes_core::{Event, Pod};

use crate::Format;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// kubectl-style age: 45s, 12m, 3h, 2d.
pub fn age(since_ms: i64) -> String {
    let secs = ((now_ms() - since_ms) / 1000).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn table(rows: &[Vec<String>]) {
    let columns = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("   ").trim_end());
    }
}

pub fn print_pods(pods: &[Pod], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(pods)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(pods)?),
        Format::Table | Format::Wide => {
            if pods.is_empty() {
                eprintln!("No pods found.");
                return Ok(());
            }
            let mut header = vec!["NAME", "READY", "UP-TO-DATE", "STATUS", "AGE", "HOST"];
            if format == Format::Wide {
                header.extend(["IMAGE", "REVISION", "RESTARTS"]);
            }
            let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            for pod in pods {
                let s = &pod.status;
                let mut row = vec![
                    pod.name.clone(),
                    format!("{}/{}", s.ready_replicas, s.desired_replicas),
                    s.updated_replicas.to_string(),
                    s.reason.clone().unwrap_or_else(|| s.phase.clone()),
                    age(pod.created_at),
                    pod.spec.host().unwrap_or("<none>").to_string(),
                ];
                if format == Format::Wide {
                    row.extend([pod.spec.image.clone(), s.revision.clone(), s.restarts.to_string()]);
                }
                rows.push(row);
            }
            table(&rows);
        }
    }
    Ok(())
}

pub fn print_events(events: &[Event]) {
    if events.is_empty() {
        eprintln!("No events found.");
        return;
    }
    let mut rows = vec![["AGE", "TYPE", "REASON", "POD", "MESSAGE"].map(String::from).to_vec()];
    for e in events {
        rows.push(vec![
            age(e.at),
            e.kind.clone(),
            e.reason.clone(),
            e.pod.clone(),
            e.message.replace('\n', " "),
        ]);
    }
    table(&rows);
}

pub fn print_history(revisions: &[dubernetes_core::Revision]) {
    let mut rows = vec![
        ["REVISION", "AGE", "OUTCOME", "IMAGE", "REASON", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for r in revisions {
        rows.push(vec![
            r.number.to_string(),
            age(r.created_at),
            r.outcome.clone(),
            r.spec.image.clone(),
            r.reason.clone().unwrap_or_default(),
            r.message.clone().unwrap_or_default().replace('\n', " "),
        ]);
    }
    table(&rows);
}

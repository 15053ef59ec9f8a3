//! Tables, JSON and YAML output.

use std::time::{SystemTime, UNIX_EPOCH};

use dubernetes_api::{AnySecret, Event, NamedVolume, Pod, Run, WatchKind};

use crate::Format;
use crate::escape;

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

/// Prints rows aligned; returns the column widths (for rows printed later by watches).
fn table(rows: &[Vec<String>], min: &[usize]) -> Vec<usize> {
    let columns = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain(min.get(i).copied())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("   ").trim_end());
    }
    widths
}

fn pod_header(format: Format) -> Vec<String> {
    let mut header = vec!["NAME", "READY", "UP-TO-DATE", "STATUS", "AGE", "HOST"];
    if format == Format::Wide {
        header.extend(["IMAGE", "REVISION", "RESTARTS"]);
    }
    header.into_iter().map(String::from).collect()
}

pub fn pod_row(pod: &Pod, format: Format) -> Vec<String> {
    let s = &pod.status;
    let mut row = vec![
        pod.name.clone(),
        format!("{}/{}", s.ready_replicas, s.desired_replicas),
        s.updated_replicas.to_string(),
        status_cell(pod),
        age(pod.created_at),
        host_cell(pod),
    ];
    if format == Format::Wide {
        row.extend([
            pod.spec.image.clone(),
            s.revision_number.to_string(),
            s.restarts.to_string(),
        ]);
    }
    row
}

/// The STATUS cell of `get pods`: the reason or phase, and how many
/// warnings the pod has (`describe` prints them).
fn status_cell(pod: &Pod) -> String {
    let s = &pod.status;
    let word = escape::line(s.reason.as_deref().unwrap_or(s.phase.as_str()));
    match s.warnings.len() {
        0 => word,
        1 => format!("{word} (1 warning)"),
        n => format!("{word} ({n} warnings)"),
    }
}

/// Prints pods; `single`: one pod asked for by name (JSON/YAML print the object, not a list).
pub fn print_pods(pods: &[Pod], format: Format, single: bool) -> anyhow::Result<Vec<usize>> {
    match format {
        Format::Json if single && pods.len() == 1 => {
            println!("{}", escape::json(serde_json::to_string_pretty(&pods[0])?))
        }
        Format::Yaml if single && pods.len() == 1 => print!("{}", escape::yaml(&pods[0])?),
        Format::Json => println!("{}", escape::json(serde_json::to_string_pretty(pods)?)),
        Format::Yaml => print!("{}", escape::yaml(pods)?),
        Format::Table | Format::Wide => {
            if pods.is_empty() {
                eprintln!("No pods found.");
                let header = pod_header(format);
                return Ok(header.iter().map(|h| h.len()).collect());
            }
            let mut rows = vec![pod_header(format)];
            rows.extend(pods.iter().map(|p| pod_row(p, format)));
            return Ok(table(&rows, &[]));
        }
    }
    Ok(Vec::new())
}

/// Prints one pod change of `get -w`; returns the widths for the next one.
pub fn print_pod_change(pod: &Pod, kind: WatchKind, format: Format, widths: Vec<usize>) -> anyhow::Result<Vec<usize>> {
    match format {
        Format::Json => {
            println!(
                "{}",
                escape::json(serde_json::to_string(
                    &serde_json::json!({"type": kind, "object": pod})
                )?)
            );
            Ok(widths)
        }
        Format::Yaml => {
            print!(
                "---\n{}",
                escape::yaml(&serde_json::json!({"type": kind, "object": pod}))?
            );
            Ok(widths)
        }
        Format::Table | Format::Wide => {
            let mut row = pod_row(pod, format);
            if kind == WatchKind::Deleted {
                row[3] = "Deleted".into();
            }
            Ok(table(&[row], &widths))
        }
    }
}

fn event_row(e: &Event) -> Vec<String> {
    vec![
        age(e.at),
        e.kind.to_string(),
        escape::line(&e.reason),
        e.pod.clone(),
        escape::line(&e.message.replace('\n', " ")),
    ]
}

/// Prints events as a table; returns the column widths.
pub fn print_events(events: &[Event], say_when_empty: bool) -> Vec<usize> {
    let header = ["AGE", "TYPE", "REASON", "POD", "MESSAGE"].map(String::from).to_vec();
    if events.is_empty() {
        if say_when_empty {
            eprintln!("No events found.");
            return Vec::new();
        }
        return table(&[header], &[4, 7, 16, 12, 0]);
    }
    let mut rows = vec![header];
    rows.extend(events.iter().map(event_row));
    table(&rows, &[])
}

/// Prints one event of `events -w`.
pub fn print_event_row(e: &Event, widths: Vec<usize>) -> Vec<usize> {
    table(&[event_row(e)], &widths)
}

/// `describe pod`: everything about one pod, for people.
pub fn describe(pod: &Pod, events: &[Event]) -> anyhow::Result<()> {
    let s = &pod.status;
    let field = |k: &str, v: &str| println!("{:<14}{v}", format!("{k}:"));
    field("Name", &pod.name);
    field("Image", &pod.spec.image);
    field("Host", &host_column(&pod.spec));
    field("Port", &pod.spec.port.to_string());
    field("Created", &format!("{} ago", age(pod.created_at)));
    field(
        "Replicas",
        &format!(
            "{} desired | {} updated | {} ready | {} current",
            s.desired_replicas, s.updated_replicas, s.ready_replicas, s.current_replicas
        ),
    );
    field("Revision", &format!("{} ({})", s.revision_number, s.revision));
    field(
        "Generation",
        &format!("{} (observed {})", pod.generation, s.observed_generation),
    );
    field("Status", s.phase.as_str());
    if let Some(reason) = &s.reason {
        field("Reason", &escape::line(reason));
    }
    if let Some(message) = &s.message {
        field("Message", &escape::line(&message.replace('\n', " ")));
    }
    field("Restarts", &s.restarts.to_string());
    if let Some(code) = s.last_exit_code {
        field("Last exit", &code.to_string());
    }
    if !s.warnings.is_empty() {
        println!("Warnings:");
        for warning in &s.warnings {
            println!("  {}", escape::line(warning));
        }
    }
    println!("Conditions:");
    let mut rows = vec![["  TYPE", "STATUS", "REASON", "MESSAGE"].map(String::from).to_vec()];
    for c in &s.conditions {
        rows.push(vec![
            format!("  {}", c.kind),
            if c.status { "True" } else { "False" }.into(),
            escape::line(&c.reason),
            escape::line(&c.message),
        ]);
    }
    table(&rows, &[]);
    println!("Replicas:");
    if pod.replicas.is_empty() {
        println!("  <none>");
    } else {
        let mut rows = vec![
            ["  NAME", "STATE", "READY", "UP-TO-DATE", "REVISION", "IP", "STATUS"]
                .map(String::from)
                .to_vec(),
        ];
        for r in &pod.replicas {
            rows.push(vec![
                format!("  {}", r.name.trim_start_matches('/')),
                serde_json::to_value(r.state)?.as_str().unwrap_or("?").to_string(),
                if r.ready { "true" } else { "false" }.into(),
                if r.up_to_date { "true" } else { "false" }.into(),
                r.revision.clone(),
                r.ip.clone().unwrap_or_else(|| "<none>".into()),
                escape::line(&match &r.check_error {
                    Some(err) => format!("{} (check failing: {err})", r.status),
                    None => r.status.clone(),
                }),
            ]);
        }
        table(&rows, &[]);
    }
    if let Some(tls) = &s.tls {
        let serving = if tls.serving {
            "HTTPS"
        } else {
            "plain HTTP (no certificate served yet)"
        };
        field("TLS", &format!("{} ({serving})", tls.source));
        if let Some(issuer) = &tls.issuer {
            field("  Issuer", &escape::line(issuer));
        }
        if let Some(not_after) = tls.not_after {
            field("  Expires", &format!("{} ({})", date(not_after), expires_in(not_after)));
        }
        if let Some(error) = &tls.error {
            field("  Error", &escape::line(error));
        }
        if let Some(warning) = &tls.warning {
            field("  Warning", &escape::line(warning));
        }
    }
    println!("Spec:");
    for line in escape::yaml(&pod.spec)?.lines() {
        println!("  {line}");
    }
    println!("Events:");
    if events.is_empty() {
        println!("  <none>");
    } else {
        let mut rows = vec![["  AGE", "TYPE", "REASON", "MESSAGE"].map(String::from).to_vec()];
        let recent = &events[events.len().saturating_sub(15)..];
        for e in recent {
            rows.push(vec![
                format!("  {}", age(e.at)),
                e.kind.to_string(),
                escape::line(&e.reason),
                escape::line(&e.message.replace('\n', " ")),
            ]);
        }
        table(&rows, &[]);
    }
    Ok(())
}

pub fn print_history(revisions: &[dubernetes_api::Revision]) {
    let mut rows = vec![
        ["REVISION", "AGE", "OUTCOME", "IMAGE", "REASON", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    for r in revisions {
        rows.push(vec![
            r.number.to_string(),
            age(r.created_at),
            r.outcome.to_string(),
            r.spec.image.clone(),
            escape::line(r.reason.as_deref().unwrap_or_default()),
            escape::line(&r.message.clone().unwrap_or_default().replace('\n', " ")),
        ]);
    }
    table(&rows, &[]);
}

/// A unix time in seconds as an RFC 3339 date, e.g. `2026-03-01T12:00:00Z`.
pub fn date(unix_secs: i64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix_secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The HOST cell of `get pods`: the host, and a word on its certificate when
/// it expires soon or has expired (the status's `tls.warning`).
fn host_cell(pod: &Pod) -> String {
    let host = host_column(&pod.spec);
    match &pod.status.tls {
        Some(tls) if tls.warning.is_some() => match tls.not_after {
            Some(t) if t <= now_ms() / 1000 => format!("{host} (certificate EXPIRED)"),
            Some(t) => format!("{host} (certificate expires {})", expires_in(t)),
            None => format!("{host} (certificate: see describe)"),
        },
        _ => host,
    }
}

/// How long until `unix_secs`: `in 89d`, or `EXPIRED`.
fn expires_in(unix_secs: i64) -> String {
    let left = unix_secs - now_ms() / 1000;
    match left {
        l if l <= 0 => "EXPIRED".into(),
        l if l < 2 * 86_400 => format!("in {}h", l / 3600),
        l => format!("in {}d", l / 86_400),
    }
}

/// `get secrets`: names, types, keys or hosts, expiry, users (never a key
/// or value: the server sends none).
pub fn print_secrets(secrets: &[AnySecret], format: Format, single: bool) -> anyhow::Result<()> {
    match format {
        Format::Json if single && secrets.len() == 1 => {
            println!("{}", escape::json(serde_json::to_string_pretty(&secrets[0])?))
        }
        Format::Yaml if single && secrets.len() == 1 => print!("{}", escape::yaml(&secrets[0])?),
        Format::Json => println!("{}", escape::json(serde_json::to_string_pretty(secrets)?)),
        Format::Yaml => print!("{}", escape::yaml(secrets)?),
        Format::Table | Format::Wide => {
            if secrets.is_empty() {
                eprintln!("No secrets found.");
                return Ok(());
            }
            let mut rows = vec![
                ["NAME", "TYPE", "DATA", "EXPIRES", "NOT-AFTER", "USED-BY", "ISSUER"]
                    .map(String::from)
                    .to_vec(),
            ];
            let users = |used_by: &[String]| {
                if used_by.is_empty() {
                    "-".to_string()
                } else {
                    escape::line(&used_by.join(","))
                }
            };
            for s in secrets {
                rows.push(match s {
                    AnySecret::Tls(s) => vec![
                        escape::line(&s.name),
                        "tls".into(),
                        escape::line(&s.hosts.join(",")),
                        expires_in(s.not_after),
                        date(s.not_after),
                        users(&s.used_by),
                        escape::line(&s.issuer),
                    ],
                    AnySecret::Data(s) => vec![
                        escape::line(&s.name),
                        s.kind.as_str().into(),
                        escape::line(&match &s.docker_server {
                            Some(server) => server.clone(),
                            None => s.keys.join(","),
                        }),
                        "-".into(),
                        "-".into(),
                        users(&s.used_by),
                        "-".into(),
                    ],
                });
            }
            table(&rows, &[]);
        }
    }
    Ok(())
}

/// The pod's hosts (comma-separated) and path when not `/`, or `<none>`.
fn host_column(spec: &dubernetes_api::PodSpec) -> String {
    let hosts = spec.hosts();
    if hosts.is_empty() {
        return "<none>".into();
    }
    match spec.route_path() {
        "/" => hosts.join(","),
        path => format!("{}{path}", hosts.join(",")),
    }
}

/// `get volumes`: names, sizes (where the engine knows), users, engine names.
pub fn print_volumes(volumes: &[NamedVolume], format: Format, single: bool) -> anyhow::Result<()> {
    match format {
        Format::Json if single && volumes.len() == 1 => println!("{}", serde_json::to_string_pretty(&volumes[0])?),
        Format::Yaml if single && volumes.len() == 1 => print!("{}", serde_yaml_ng::to_string(&volumes[0])?),
        Format::Json => println!("{}", serde_json::to_string_pretty(volumes)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(volumes)?),
        Format::Table | Format::Wide => {
            if volumes.is_empty() {
                eprintln!("No volumes found.");
                return Ok(());
            }
            let mut rows = vec![["NAME", "SIZE", "USED-BY", "ENGINE-NAME"].map(String::from).to_vec()];
            for v in volumes {
                rows.push(vec![
                    escape::line(&v.name),
                    v.size_bytes.map_or_else(|| "-".to_string(), human_bytes),
                    if v.used_by.is_empty() {
                        "-".into()
                    } else {
                        escape::line(&v.used_by.join(","))
                    },
                    escape::line(&v.engine_name),
                ]);
            }
            table(&rows, &[]);
        }
    }
    Ok(())
}

/// `get nodes`: host names, roles, states, availability, the replicas on
/// each by pod; `-o wide` adds ids and labels.
pub fn print_nodes(nodes: &[dubernetes_api::Node], format: Format, single: bool) -> anyhow::Result<()> {
    match format {
        Format::Json if single && nodes.len() == 1 => println!("{}", serde_json::to_string_pretty(&nodes[0])?),
        Format::Yaml if single && nodes.len() == 1 => print!("{}", serde_yaml_ng::to_string(&nodes[0])?),
        Format::Json => println!("{}", serde_json::to_string_pretty(nodes)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(nodes)?),
        Format::Table | Format::Wide => {
            if nodes.is_empty() {
                eprintln!("No nodes found.");
                return Ok(());
            }
            let wide = format == Format::Wide;
            let mut header = vec!["HOSTNAME", "ROLE", "STATE", "AVAILABILITY", "REPLICAS"];
            if wide {
                header.extend(["ID", "LABELS"]);
            }
            let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            let join = |m: &std::collections::BTreeMap<String, String>| {
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if parts.is_empty() {
                    "-".to_string()
                } else {
                    escape::line(&parts.join(","))
                }
            };
            for n in nodes {
                let replicas: Vec<String> = n.replicas.iter().map(|(pod, count)| format!("{pod}:{count}")).collect();
                let mut row = vec![
                    escape::line(&n.hostname),
                    escape::line(&n.role),
                    escape::line(&n.state),
                    escape::line(&n.availability),
                    if replicas.is_empty() {
                        "-".into()
                    } else {
                        escape::line(&replicas.join(","))
                    },
                ];
                if wide {
                    row.extend([escape::line(&n.id), join(&n.labels)]);
                }
                rows.push(row);
            }
            table(&rows, &[]);
        }
    }
    Ok(())
}

/// `dubectl get runs POD`: a pod's runs, newest first (a cron pod's ticks
/// and `dubectl run`s): name, tick, start, state, exit code, duration.
pub fn print_runs(runs: &[Run], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(runs)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(runs)?),
        Format::Table | Format::Wide => {
            if runs.is_empty() {
                eprintln!("No runs found.");
                return Ok(());
            }
            let mut rows = vec![
                ["NAME", "SCHEDULED", "STARTED", "STATE", "EXIT", "DURATION"]
                    .map(String::from)
                    .to_vec(),
            ];
            let now = now_ms() / 1000;
            for r in runs {
                let end = r.finished.unwrap_or(now);
                rows.push(vec![
                    escape::line(&r.name),
                    r.scheduled.map_or_else(|| "-".to_string(), date),
                    date(r.created),
                    escape::line(&r.state),
                    r.exit_code.map_or_else(|| "-".to_string(), |c| c.to_string()),
                    if r.state == "running" || r.finished.is_some() {
                        humantime::format_duration(std::time::Duration::from_secs((end - r.created).max(0) as u64))
                            .to_string()
                    } else {
                        "-".to_string()
                    },
                ]);
            }
            table(&rows, &[]);
        }
    }
    Ok(())
}

/// Bytes in binary units, e.g. `4.0Ki`, `12.3Mi`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["Ki", "Mi", "Gi", "Ti", "Pi"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

//! Cron pods (issue 27, item 4) against the real engine, on both backends:
//! bad input refused naming the field; a pod with `schedule: "* * * * *"`
//! runs within its minute, keeps `history` exited runs with their exit code
//! and log (`dubectl get runs`, `dubectl logs`), honours `concurrency:
//! forbid` (a tick is skipped while a run still runs) and `replace` (the
//! running one is stopped first), stops a run past its `timeout`; a deleted
//! cron pod leaves no container. On Docker also: a tick missed while the server was
//! down runs once when it starts again within `starting_deadline`, and with
//! two servers on PostgreSQL a new leader runs no tick twice.
//!
//! No test waits for a minute boundary blindly: each waits for the run (or
//! the event) itself, with a deadline of a minute and a margin.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dubernetes_tests::{Backend, TestServer, docker, stderr, stdout, wait_for};

const BUSYBOX: &str = "dubernetes/busybox:local";
/// A minute boundary and a margin for the run to start.
const TICK: Duration = Duration::from_secs(80);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn runs(server: &TestServer, pod: &str) -> Vec<serde_json::Value> {
    let (status, body) = server.get_json(&format!("/v1/pods/{pod}/runs")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

/// The containers of a pod in the instance, in any state.
async fn containers_of(instance: &str, pod: &str) -> usize {
    let filters = std::collections::HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            format!("io.dubernetes.pod={pod}"),
        ],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker()
        .await
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .len()
}

async fn refused(server: &TestServer, yaml: &str, field: &str) {
    let (status, body) = server.put_yaml("bad", yaml).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], field, "{body}");
    let (status, _) = server.get_json("/v1/pods/bad").await;
    assert_eq!(status, 404, "nothing stored");
}

async fn cron_pods(backend: Backend) {
    let mut server = TestServer::start_on(backend, "cron").await;

    // Bad input: refused, naming the field, nothing stored.
    let base = format!("name: bad\nimage: {BUSYBOX}\n");
    refused(&server, &format!("{base}schedule: \"61 * * * *\"\n"), "schedule").await;
    refused(&server, &format!("{base}schedule: \"* * *\"\n"), "schedule").await;
    refused(
        &server,
        &format!("{base}schedule: \"* * * * *\"\nreplicas: 2\n"),
        "replicas",
    )
    .await;
    refused(
        &server,
        &format!("{base}schedule: \"* * * * *\"\naccess: {{host: bad.local}}\n"),
        "access",
    )
    .await;
    refused(
        &server,
        &format!("{base}schedule: \"* * * * *\"\ntimezone: Nowhere/Atall\n"),
        "timezone",
    )
    .await;
    refused(&server, &format!("{base}history: 3\n"), "history").await;

    // `quick` exits at once with 3: two ticks leave one run (history: 1).
    // `slow` outlives a minute: its second tick is skipped (forbid).
    let quick = format!(
        "name: quick\nimage: {BUSYBOX}\nschedule: \"* * * * *\"\nhistory: 1\nenv: {{GREETING: hello}}\n\
         command: [/bin/sh, -c, \"echo tick-$GREETING; exit 3\"]\n"
    );
    let slow = format!(
        "name: slow\nimage: {BUSYBOX}\nschedule: \"* * * * *\"\ntimezone: Europe/Paris\n\
         command: [/bin/sh, -c, \"echo slow-start; trap 'exit 0' TERM; sleep 150 & wait $!\"]\n"
    );
    // `replaced` outlives a minute too: its second tick stops it first (replace).
    // `bounded` would run 150 s: its timeout stops it after 3 s.
    let replaced = slow.replace("name: slow", "name: replaced") + "concurrency: replace\n";
    let bounded = slow.replace("name: slow", "name: bounded") + "timeout: 3s\n";
    let pods = [
        ("quick", &quick),
        ("slow", &slow),
        ("replaced", &replaced),
        ("bounded", &bounded),
    ];
    for (name, yaml) in pods {
        let (status, body) = server.put_yaml(name, yaml).await;
        assert!(status == 200 || status == 201, "{status}: {body}");
        let (_, pod) = server.get_json(&format!("/v1/pods/{name}")).await;
        assert_eq!(pod["status"]["desired_replicas"], 0, "{pod}");
    }
    let applied = now();

    // Within its minute: the first tick's run, its exit code, its log.
    let first = wait_for("quick's first run to exit", TICK, || async {
        runs(&server, "quick")
            .await
            .into_iter()
            .find(|r| r["state"] == "exited")
    })
    .await;
    let tick = first["scheduled"].as_i64().expect("a tick");
    assert!(tick > applied && tick - applied <= 60 && tick % 60 == 0, "{first}");
    assert!(
        first["created"].as_i64().expect("created") - tick < 10,
        "started late: {first}"
    );
    assert_eq!(first["exit_code"], 3, "{first}");
    let out = server.dubectl(&["logs", "quick"]);
    assert!(stdout(&out).contains("tick-hello"), "{} {}", stdout(&out), stderr(&out));
    let out = server.dubectl(&["get", "runs", "quick"]);
    let table = stdout(&out);
    assert!(
        table.contains("SCHEDULED") && table.contains(first["name"].as_str().unwrap_or("?")),
        "{table} {}",
        stderr(&out)
    );
    eprintln!(
        "{backend}: first run {} s after its tick",
        first["created"].as_i64().unwrap_or(0) - tick
    );
    // Past its timeout, a run is stopped: its exit code is kept, an event says so.
    let stopped = wait_for("bounded's run to be stopped", Duration::from_secs(30), || async {
        runs(&server, "bounded")
            .await
            .into_iter()
            .find(|r| r["state"] == "exited")
    })
    .await;
    assert_eq!(stopped["scheduled"].as_i64(), Some(tick), "{stopped}");
    let took = stopped["finished"].as_i64().unwrap_or(0) - stopped["created"].as_i64().unwrap_or(0);
    assert!((3..=12).contains(&took), "stopped {took} s after it started: {stopped}");
    server.wait_event("bounded", "RunTimedOut", Some("Warning")).await;
    // dubectl knows the kind: help and completion.
    assert!(stdout(&server.dubectl(&["get", "--help"])).contains("dubectl get runs"));
    assert!(stdout(&server.dubectl(&["completion", "bash"])).contains("runs"));

    // The second tick: quick's first run goes (history: 1), slow's tick is skipped.
    let second = wait_for("quick's second run, alone in its history", TICK, || async {
        let list = runs(&server, "quick").await;
        match list.as_slice() {
            [only] if only["state"] == "exited" && only["scheduled"].as_i64() > Some(tick) => Some(only.clone()),
            _ => None,
        }
    })
    .await;
    assert_eq!(second["scheduled"].as_i64(), Some(tick + 60), "{second}");
    assert_eq!(second["exit_code"], 3, "{second}");
    let skipped = server.wait_event("slow", "SkippedTick", Some("Normal")).await;
    assert!(
        skipped["message"].as_str().unwrap_or("").contains("forbid"),
        "{skipped}"
    );
    let slow_runs = runs(&server, "slow").await;
    assert_eq!(slow_runs.len(), 1, "forbid: one run only: {slow_runs:?}");
    assert_eq!(slow_runs[0]["state"], "running", "{slow_runs:?}");
    // replace: the first run was stopped (kept, with its exit code), the second runs.
    let pair = wait_for(
        "replaced's second run beside its stopped first",
        Duration::from_secs(30),
        || async {
            let list = runs(&server, "replaced").await;
            let exited = list
                .iter()
                .any(|r| r["state"] == "exited" && r["scheduled"].as_i64() == Some(tick));
            let running = list
                .iter()
                .any(|r| r["state"] == "running" && r["scheduled"].as_i64() == Some(tick + 60));
            (exited && running && list.len() == 2).then_some(list)
        },
    )
    .await;
    assert!(
        pair.iter()
            .all(|r| r["exit_code"].is_null() == (r["state"] == "running")),
        "{pair:?}"
    );
    server.wait_event("replaced", "ReplacingRun", Some("Normal")).await;
    // No replica ever: the pod is a schedule, not a service.
    let (_, pod) = server.get_json("/v1/pods/slow").await;
    assert_eq!(pod["status"]["ready_replicas"], 0, "{pod}");

    // Deleting a cron pod stops its running run and removes its history.
    for (name, _) in pods {
        let out = server.dubectl(&["delete", "pod", name]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let instance = server.instance.clone();
    wait_for(
        "the cron pods' containers to be gone",
        Duration::from_secs(30),
        || async {
            let mut left = 0;
            for (name, _) in pods {
                left += containers_of(&instance, name).await;
            }
            (left == 0).then_some(())
        },
    )
    .await;
    server.stop();
}

dubernetes_tests::on_both_backends!(cron_pods);

/// A tick missed while the server was down runs once when it starts again
/// within `starting_deadline`; the restarted server does not run it twice.
#[tokio::test]
async fn a_missed_tick_runs_once_at_start_up() {
    let mut server = TestServer::start_on(Backend::Docker, "cron-missed").await;
    let yaml = format!(
        "name: nightly\nimage: {BUSYBOX}\nschedule: \"* * * * *\"\nstarting_deadline: 2m\n\
         command: [/bin/sh, -c, \"echo caught-up\"]\n"
    );
    let (status, body) = server.put_yaml("nightly", &yaml).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    // Down before the next tick (at least 3 s ahead, or the one after).
    let mut due = (now() / 60 + 1) * 60;
    if due - now() < 3 {
        due += 60;
    }
    server.stop();
    wait_for("the tick to pass while the server is down", TICK, || async {
        (now() > due + 2).then_some(())
    })
    .await;
    server.start_again().await;
    let run = wait_for("the missed tick's run", Duration::from_secs(30), || async {
        runs(&server, "nightly")
            .await
            .into_iter()
            .find(|r| r["state"] == "exited" && r["scheduled"].as_i64() == Some(due))
    })
    .await;
    assert_eq!(run["exit_code"], 0, "{run}");
    // Once: a restart after it ran does not run it again. The scheduler's
    // first pass comes at start-up; 3 s give it (and a wrong second run) time.
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list = runs(&server, "nightly").await;
    let of_due = list.iter().filter(|r| r["scheduled"].as_i64() == Some(due)).count();
    assert_eq!(of_due, 1, "{list:?}");
    server.stop();
}

/// Two servers of one instance on PostgreSQL: the leader runs a tick and is
/// killed; the new leader reads what ran from the engine, runs that tick
/// no second time, and runs the next one.
#[tokio::test]
async fn a_new_leader_runs_no_tick_twice() {
    let url = dubernetes_tests::PgCluster::shared().new_database().await;
    let instance = dubernetes_tests::instance_name("cron-ha");
    let mut servers = Vec::new();
    for _ in 0..2 {
        let server = TestServer::start_shared("cron-ha", &instance, &url, &[]).await;
        if servers.is_empty() {
            wait_for("the first server to lead", Duration::from_secs(20), || async {
                (server.leads().await == Some(true)).then_some(())
            })
            .await;
        }
        servers.push(server);
    }
    let yaml = format!(
        "name: ha\nimage: {BUSYBOX}\nschedule: \"* * * * *\"\nhistory: 3\ncommand: [/bin/sh, -c, \"echo ha\"]\n"
    );
    let (status, body) = servers[1].put_yaml("ha", &yaml).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    let first = wait_for("the first leader's run", TICK, || async {
        runs(&servers[1], "ha")
            .await
            .into_iter()
            .find(|r| r["state"] == "exited")
    })
    .await;
    let tick = first["scheduled"].as_i64().expect("a tick");
    servers[0].kill9();
    wait_for("the second server to lead", Duration::from_secs(30), || async {
        (servers[1].leads().await == Some(true)).then_some(())
    })
    .await;
    let list = wait_for("the new leader's run of the next tick", TICK, || async {
        let list = runs(&servers[1], "ha").await;
        list.iter()
            .any(|r| r["scheduled"].as_i64() == Some(tick + 60) && r["state"] == "exited")
            .then_some(list)
    })
    .await;
    let of_tick = list.iter().filter(|r| r["scheduled"].as_i64() == Some(tick)).count();
    assert_eq!(of_tick, 1, "the tick ran once: {list:?}");
    assert_eq!(list.len(), 2, "{list:?}");
    let out = servers[1].dubectl(&["delete", "pod", "ha"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the pod's runs to be gone", Duration::from_secs(30), || async {
        (containers_of(&instance, "ha").await == 0).then_some(())
    })
    .await;
    servers[1].stop();
}

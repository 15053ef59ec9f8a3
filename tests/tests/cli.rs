//! The real `dubectl` binary against a real server and engine: every command,
//! its output and its exit code, plus the watch API's latency.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dubernetes_tests::{TestServer, auth_headers, binary, docker, stderr, stdout, wait_for};
use futures::StreamExt;

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        code(output),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// A pod file in a fresh directory tree: `dir/a.yaml` (two documents) and
/// `dir/nested/b.yml`, plus a file that is not YAML.
fn write_tree(dir: &std::path::Path, prefix: &str) {
    std::fs::create_dir_all(dir.join("nested")).expect("mkdir");
    std::fs::write(
        dir.join("a.yaml"),
        format!(
            "name: {prefix}-one\nimage: dubernetes/whoami:v1\nreplicas: 1\naccess: {{host: {prefix}-one.local}}\n---\nname: {prefix}-two\nimage: dubernetes/whoami:v1\nreplicas: 0\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("nested/b.yml"),
        format!("name: {prefix}-three\nimage: dubernetes/whoami:v1\nreplicas: 0\n"),
    )
    .expect("write");
    std::fs::write(dir.join("README.txt"), "not a pod").expect("write");
}

#[tokio::test]
async fn every_command_against_a_real_server() {
    let server = TestServer::start("cli").await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("pods");
    write_tree(&tree, "cli");
    let tree_arg = tree.to_str().expect("utf-8 path");

    // apply: directory, recursive, multi-document.
    let out = ok(&server.dubectl(&["apply", "-f", tree_arg]), "apply -f DIR");
    assert_eq!(
        out, "pod/cli-one created\npod/cli-two created\npod/cli-three created\n",
        "apply output"
    );
    let out = ok(&server.dubectl(&["apply", "-f", tree_arg]), "apply again");
    assert!(out.contains("pod/cli-one unchanged"), "{out}");
    server.wait_converged("cli-one", Duration::from_secs(60)).await;

    // The list is light (status, no per-replica detail) unless asked.
    let (_, light) = server.get_json("/v1/pods").await;
    let (_, full) = server.get_json("/v1/pods?replicas=true").await;
    let one = |list: &serde_json::Value| {
        list.as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == "cli-one").cloned())
            .expect("cli-one listed")
    };
    assert_eq!(one(&light)["replicas"], serde_json::json!([]), "{light}");
    assert_eq!(one(&light)["status"]["ready_replicas"], 1, "{light}");
    assert_eq!(one(&full)["replicas"].as_array().map(Vec::len), Some(1), "{full}");
    let out = ok(&server.dubectl(&["get", "pods", "-o", "json"]), "get -o json");
    assert!(out.contains("\"up_to_date\""), "get -o json prints the replicas: {out}");

    // get: the table.
    let out = ok(&server.dubectl(&["get", "pods"]), "get pods");
    let header = out.lines().next().unwrap_or_default();
    for column in ["NAME", "READY", "UP-TO-DATE", "STATUS", "AGE", "HOST"] {
        assert!(header.contains(column), "header {header:?} lacks {column}");
    }
    let row = out.lines().find(|l| l.starts_with("cli-one ")).expect("row of cli-one");
    assert!(
        row.contains("1/1") && row.contains("Running") && row.contains("cli-one.local"),
        "{row}"
    );
    let out = ok(&server.dubectl(&["get", "pods", "-o", "wide"]), "get -o wide");
    assert!(out.contains("IMAGE") && out.contains("dubernetes/whoami:v1"), "{out}");

    // get -o json of one pod: one object that round-trips through apply -f -.
    let json = ok(&server.dubectl(&["get", "pod", "cli-one", "-o", "json"]), "get -o json");
    let pod: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(pod["name"], "cli-one");
    assert!(pod.is_object());
    let out = server.dubectl_stdin(&["apply", "-f", "-"], &json);
    assert_eq!(ok(&out, "apply -f - of get -o json"), "pod/cli-one unchanged\n");
    let yaml = ok(&server.dubectl(&["get", "pod", "cli-one", "-o", "yaml"]), "get -o yaml");
    assert!(yaml.contains("name: cli-one"), "{yaml}");
    let out = server.dubectl_stdin(&["apply", "-f", "-"], &yaml);
    assert_eq!(ok(&out, "apply -f - of get -o yaml"), "pod/cli-one unchanged\n");

    // diff: 0 without changes, 1 with, 2 on errors.
    let one = tmp.path().join("one.yaml");
    std::fs::write(
        &one,
        "name: cli-one\nimage: dubernetes/whoami:v1\nreplicas: 1\naccess: {host: cli-one.local}\n",
    )
    .expect("write");
    let out = server.dubectl(&["diff", "-f", one.to_str().expect("path")]);
    assert_eq!(code(&out), 0, "diff without changes: {}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "");
    std::fs::write(
        &one,
        "name: cli-one\nimage: dubernetes/whoami:v2\nreplicas: 1\naccess: {host: cli-one.local}\n",
    )
    .expect("write");
    let out = server.dubectl(&["diff", "-f", one.to_str().expect("path")]);
    assert_eq!(code(&out), 1, "diff with changes: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("--- live/pod/cli-one")
            && text.contains("-image: dubernetes/whoami:v1")
            && text.contains("+image: dubernetes/whoami:v2"),
        "{text}"
    );
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "name: cli-one\nimage: x\nreplicas: -1\n").expect("write");
    let out = server.dubectl(&["diff", "-f", bad.to_str().expect("path")]);
    assert_eq!(code(&out), 2, "diff of an invalid file: {}", stderr(&out));

    // apply --dry-run: validated by the server, nothing changes.
    let out = ok(
        &server.dubectl(&["apply", "--dry-run", "-f", one.to_str().expect("path")]),
        "apply --dry-run",
    );
    assert_eq!(out, "pod/cli-one configured (server dry run)\n");
    let (_, pod) = server.get_json("/v1/pods/cli-one").await;
    assert_eq!(pod["spec"]["image"], "dubernetes/whoami:v1", "dry run changed nothing");
    let taken = tmp.path().join("taken.yaml");
    std::fs::write(
        &taken,
        "name: cli-other\nimage: dubernetes/whoami:v1\naccess: {host: cli-one.local}\n",
    )
    .expect("write");
    let out = server.dubectl(&["apply", "--dry-run", "-f", taken.to_str().expect("path")]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("already routed"), "{}", stderr(&out));

    // logs: every line prefixed with its replica; -f sees a line written after it started.
    server
        .via_ingress("cli-one.local")
        .await
        .expect("request through the ingress");
    let out = ok(&server.dubectl(&["logs", "cli-one"]), "logs");
    assert!(
        out.lines().all(|l| l.starts_with("[cli-one-")) && out.contains("listening"),
        "{out}"
    );
    let out = ok(&server.dubectl(&["logs", "cli-one", "--tail", "1"]), "logs --tail 1");
    assert_eq!(out.lines().count(), 1, "{out}");
    let mut follower = Command::new(binary("dubectl"))
        .args(["logs", "cli-one", "-f", "--tail", "0"])
        .env("DUBERNETES_SERVER", &server.url)
        .env("DUBERNETES_TOKEN", &server.token)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dubectl logs -f");
    let (tx, rx) = mpsc::channel::<String>();
    let child_out = follower.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(child_out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // With --tail 0 nothing old is printed: any request line was written after `logs -f` started.
    let line = wait_for("logs -f to print a new request", Duration::from_secs(20), || {
        let server = &server;
        let rx = &rx;
        async move {
            let _ = server.via_ingress("cli-one.local").await;
            rx.recv_timeout(Duration::from_millis(200)).ok()
        }
    })
    .await;
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(line.starts_with("[cli-one-") && line.contains("GET / 200"), "{line}");

    // describe: spec, status, conditions, replicas, events.
    let out = ok(&server.dubectl(&["describe", "pod", "cli-one"]), "describe");
    for part in [
        "Name:         cli-one",
        "Conditions:",
        "Available",
        "Replicas:",
        "running",
        "Spec:",
        "Events:",
        "Created",
    ] {
        assert!(out.contains(part), "describe lacks {part:?}:\n{out}");
    }

    // get -w and events -w: a line for each change, from the watch API.
    let (mut get_w, get_lines) = follow(&server, &["get", "pods", "cli-two", "-w"]);
    let (mut events_w, event_lines) = follow(&server, &["events", "cli-two", "-w"]);
    // Both have printed their header, so they are listening.
    let header = get_lines.recv_timeout(Duration::from_secs(10)).expect("get -w header");
    assert!(header.starts_with("NAME"), "{header}");
    let first = get_lines.recv_timeout(Duration::from_secs(10)).expect("get -w row");
    assert!(first.starts_with("cli-two ") && first.contains("0/0"), "{first}");
    let header = event_lines
        .recv_timeout(Duration::from_secs(10))
        .expect("events -w header");
    assert!(header.contains("REASON"), "{header}");

    // scale, events, version.
    assert_eq!(
        ok(
            &server.dubectl(&["scale", "pod", "cli-two", "--replicas", "1"]),
            "scale"
        ),
        "pod/cli-two scaled\n"
    );
    let out = ok(
        &server.dubectl(&["rollout", "status", "cli-two", "--timeout", "60s"]),
        "rollout status",
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let row = wait_line(&get_lines, "get -w to show cli-two 1/1", |l| {
        l.starts_with("cli-two ") && l.contains("1/1") && l.contains("Running")
    });
    let event = wait_line(&event_lines, "events -w to show the new replica", |l| {
        l.contains("cli-two") && l.contains("Created")
    });
    for child in [&mut get_w, &mut events_w] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(row.contains("1/1"), "{row}");
    assert!(event.contains("Normal"), "{event}");
    let out = ok(&server.dubectl(&["events", "cli-two"]), "events");
    assert!(out.contains("REASON") && out.contains("cli-two"), "{out}");
    let out = ok(&server.dubectl(&["version"]), "version");
    assert!(
        out.contains("Client Version: ") && out.contains("Server Version: "),
        "{out}"
    );

    // A rolling update with --wait, then a rollback.
    let out = ok(
        &server.dubectl(&["apply", "-f", one.to_str().expect("path"), "--wait", "--timeout", "90s"]),
        "apply --wait",
    );
    assert_eq!(out, "pod/cli-one configured\npod/cli-one ready\n");
    let (_, pod) = server.get_json("/v1/pods/cli-one").await;
    assert_eq!(pod["spec"]["image"], "dubernetes/whoami:v2");
    let out = ok(&server.dubectl(&["rollout", "undo", "cli-one"]), "rollout undo");
    assert!(out.contains("rolled back") && out.contains("whoami:v1"), "{out}");
    let out = ok(
        &server.dubectl(&["rollout", "status", "cli-one", "--timeout", "90s"]),
        "status after undo",
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = ok(&server.dubectl(&["rollout", "history", "cli-one"]), "history");
    assert!(out.contains("whoami:v2") && out.contains("whoami:v1"), "{out}");

    // A change that cannot roll out: --wait exits non-zero with the reason.
    let crash = tmp.path().join("crash.yaml");
    std::fs::write(
        &crash,
        "name: cli-crash\nimage: dubernetes/whoami:v1\nreplicas: 1\ncommand: [\"/does-not-exist\"]\n",
    )
    .expect("write");
    let out = server.dubectl(&[
        "apply",
        "-f",
        crash.to_str().expect("path"),
        "--wait",
        "--timeout",
        "4s",
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("pod/cli-crash not rolled out after 4s"),
        "{}",
        stderr(&out)
    );

    // delete: by name (several), by file, unknown names.
    let out = ok(
        &server.dubectl(&["delete", "pod", "cli-two", "cli-crash"]),
        "delete pods",
    );
    assert_eq!(out, "pod/cli-two deleted\npod/cli-crash deleted\n");
    let out = ok(
        &server.dubectl(&["delete", "-f", tree_arg, "--ignore-not-found"]),
        "delete -f",
    );
    assert!(
        out.contains("pod/cli-one deleted") && out.contains("pod/cli-three deleted"),
        "{out}"
    );
    let out = server.dubectl(&["get", "pod", "cli-one"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("not found") && stderr(&out).contains("dubectl get pods"),
        "{}",
        stderr(&out)
    );
}

/// Starts a long-running dubectl (e.g. `-w`, `-f`) and hands its stdout lines over a channel.
fn follow(server: &TestServer, args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(binary("dubectl"))
        .args(args)
        .env("DUBERNETES_SERVER", &server.url)
        .env("DUBERNETES_TOKEN", &server.token)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dubectl");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// The first line matching `pred` within 30 s.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("timed out waiting for {what}; saw {seen:#?}");
}

/// One Server-Sent Event: (event, data).
async fn next_sse(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
) -> Option<(String, String)> {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if data.is_empty() {
                continue;
            }
            return Some((event, data));
        }
        let chunk = stream.next().await?.ok()?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_watch_sees_a_killed_replica_within_a_second() {
    let server = TestServer::start("watchkill").await;
    let (status, _) = server
        .put_yaml("wk", "name: wk\nimage: dubernetes/whoami:v1\nreplicas: 2\n")
        .await;
    assert_eq!(status, 201);
    let pod = server.wait_converged("wk", Duration::from_secs(60)).await;
    let victim = pod["replicas"][0]["id"].as_str().expect("replica id").to_string();

    // Resuming from a version the feed never held is 410 expired.
    let response = server
        .http
        .get(format!("{}/v1/watch?since=1", server.url))
        .send()
        .await
        .expect("GET /v1/watch?since=1");
    assert_eq!(response.status().as_u16(), 410);
    let body: serde_json::Value = response.json().await.expect("error body");
    assert_eq!(body["code"], "expired");

    let streaming = reqwest::Client::builder()
        .default_headers(auth_headers(&server.token))
        .build()
        .expect("client");
    let response = streaming
        .get(format!("{}/v1/watch", server.url))
        .send()
        .await
        .expect("GET /v1/watch");
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = Box::pin(response.bytes_stream());
    let mut buffer = String::new();
    // The snapshot first: the pod as ADDED.
    let (event, data) = tokio::time::timeout(Duration::from_secs(10), next_sse(&mut stream, &mut buffer))
        .await
        .expect("snapshot in time")
        .expect("snapshot");
    assert_eq!(event, "ADDED", "{data}");

    let docker = docker().await;
    // When the engine reports the death: the orchestrator's own part of the
    // latency is measured from here (the engine itself is slow on a loaded machine).
    let (died_tx, died_rx) = tokio::sync::oneshot::channel::<Instant>();
    let filters =
        std::collections::HashMap::from([("container", vec![victim.clone()]), ("event", vec!["die".to_string()])]);
    let mut engine_events = docker.events(Some(
        bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build(),
    ));
    let events_task = tokio::spawn(async move {
        if let Some(Ok(_)) = engine_events.next().await {
            let _ = died_tx.send(Instant::now());
        }
    });
    let killed_at = Instant::now();
    docker
        .kill_container(&victim, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .expect("docker kill");
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((_, data)) = next_sse(&mut stream, &mut buffer).await {
            let change: serde_json::Value = serde_json::from_str(&data).expect("JSON data");
            let Some(replicas) = change["pod"]["replicas"].as_array() else {
                continue;
            };
            let victim_running = replicas
                .iter()
                .any(|r| r["id"].as_str() == Some(victim.as_str()) && r["state"] == "running");
            if change["name"] == "wk" && !victim_running {
                return Some(Instant::now());
            }
        }
        None
    })
    .await
    .expect("the watch reported the kill within 5 s")
    .expect("the watch stream went on");
    let total = seen.duration_since(killed_at);
    let died_at = tokio::time::timeout(Duration::from_secs(5), died_rx)
        .await
        .ok()
        .and_then(Result::ok);
    events_task.abort();
    let died_at = died_at.expect("the engine reported the die event");
    let ours = seen.saturating_duration_since(died_at);
    eprintln!(
        "watch latency: {ours:?} from the engine's die event to the SSE change ({total:?} from the `docker kill` call)"
    );
    assert!(
        ours < Duration::from_secs(1),
        "the watch took {ours:?} after the engine's die event"
    );
    assert!(
        total < Duration::from_secs(5),
        "the watch took {total:?} after docker kill"
    );
}

fn dubectl_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary("dubectl"));
    command
        .args(args)
        .env_remove("DUBERNETES_SERVER")
        .env_remove("DUBERNETES_TOKEN")
        .env("NO_COLOR", "1");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("run dubectl")
}

#[test]
fn help_completion_config_and_unreachable_server() {
    // --help with examples on every command.
    for command in [
        vec!["apply"],
        vec!["get"],
        vec!["describe"],
        vec!["logs"],
        vec!["diff"],
        vec!["delete"],
        vec!["scale"],
        vec!["events"],
        vec!["version"],
        vec!["completion"],
        vec!["config", "view"],
        vec!["rollout", "status"],
        vec!["rollout", "history"],
        vec!["rollout", "undo"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let out = dubectl_env(&args, &[]);
        assert!(out.status.success(), "{command:?} --help");
        assert!(stdout(&out).contains("Example"), "{command:?} --help has no examples");
    }

    for shell in ["bash", "zsh", "fish"] {
        let out = dubectl_env(&["completion", shell], &[]);
        assert!(
            out.status.success() && stdout(&out).contains("dubectl"),
            "completion {shell}"
        );
    }

    // Precedence: flag > env > config file > default.
    let home = tempfile::tempdir().expect("tempdir");
    let xdg = home.path().to_str().expect("utf-8");
    let out = dubectl_env(&["config", "view"], &[("XDG_CONFIG_HOME", xdg)]);
    assert!(
        stdout(&out).contains("server: http://127.0.0.1:8080    # from default"),
        "{}",
        stdout(&out)
    );
    std::fs::create_dir_all(home.path().join("dubernetes")).expect("mkdir");
    std::fs::write(
        home.path().join("dubernetes/config.yaml"),
        "server: http://127.0.0.1:1\ntoken: from-file\n",
    )
    .expect("write");
    let out = dubectl_env(&["config", "view"], &[("XDG_CONFIG_HOME", xdg)]);
    let text = stdout(&out);
    assert!(
        text.contains("server: http://127.0.0.1:1    # from config file"),
        "{text}"
    );
    assert!(
        text.contains("token: REDACTED    # from config file") && !text.contains("from-file"),
        "{text}"
    );
    let out = dubectl_env(
        &["config", "view"],
        &[("XDG_CONFIG_HOME", xdg), ("DUBERNETES_SERVER", "http://127.0.0.1:2")],
    );
    assert!(stdout(&out).contains("server: http://127.0.0.1:2    # from flag or environment"));
    let out = dubectl_env(
        &["config", "view", "--server", "http://127.0.0.1:3"],
        &[("XDG_CONFIG_HOME", xdg), ("DUBERNETES_SERVER", "http://127.0.0.1:2")],
    );
    assert!(stdout(&out).contains("server: http://127.0.0.1:3"));

    // The file's server is used, and an unreachable server says which URL and how to start one.
    let out = dubectl_env(&["get", "pods"], &[("XDG_CONFIG_HOME", xdg)]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("http://127.0.0.1:1") && err.contains("dubernetes-server") && !err.contains("\x1b["),
        "{err}"
    );
}

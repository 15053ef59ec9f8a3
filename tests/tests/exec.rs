//! `dubectl exec` and `dubectl run` (issue 27, items 1 and 2) against the
//! real engine, on both backends: output and exit code, stdin, a terminal
//! under a real pty (Debian's `script`), no process left behind after Ctrl-C
//! or a dropped connection, one-off runs (output, exit code, nothing left,
//! detached with their log), the run limit, and exec into a pod with no
//! ready replica (a clear error at once).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dubernetes_tests::{Backend, TestServer, binary, docker, stderr, stdout, wait_for};

const T: Duration = Duration::from_secs(90);
const BUSYBOX: &str = "dubernetes/busybox:local";

fn shell_pod(replicas: u32) -> String {
    format!(
        "name: shell\nimage: {BUSYBOX}\nreplicas: {replicas}\nenv: {{GREETING: hello-from-pod}}\n\
         command: [/bin/sh, -c, \"trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done\"]\n\
         health: {{type: none}}\n"
    )
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// `script` runs `line` under a new pty (its stdin and stdout), with dubectl's env.
fn under_pty(server: &TestServer, line: &str, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-qefc", line, "/dev/null"])
        .env("DUBERNETES_SERVER", &server.url)
        .env("DUBERNETES_TOKEN", &server.token)
        .env("DUBECTL", binary("dubectl"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script (bsdutils)");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    // Kept open until the command is done: script ends its session at end of input.
    let out = std::thread::spawn(move || child.wait_with_output().expect("script output"));
    let result = out.join().expect("script thread");
    drop(input);
    result
}

/// The processes of the pod's replica whose command line holds `needle` (`ps` in the replica).
fn processes(server: &TestServer, needle: &str) -> Vec<String> {
    let out = server.dubectl(&["exec", "shell", "--", "ps", "-o", "pid,args"]);
    assert_eq!(code(&out), 0, "ps: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("ps -o"))
        .map(str::to_string)
        .collect()
}

async fn wait_gone(server: &TestServer, needle: &str, what: &str) -> Duration {
    let started = Instant::now();
    wait_for(what, Duration::from_secs(20), || async {
        processes(server, needle).is_empty().then_some(())
    })
    .await;
    started.elapsed()
}

async fn wait_running(server: &TestServer, needle: &str) {
    wait_for(
        &format!("{needle} to run in the replica"),
        Duration::from_secs(20),
        || async { (!processes(server, needle).is_empty()).then_some(()) },
    )
    .await;
}

/// Run containers of the instance, in every state.
async fn run_containers(instance: &str) -> Vec<String> {
    let docker = docker().await;
    let filters = std::collections::HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            "io.dubernetes.role=run".to_string(),
        ],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

async fn exec_and_run(backend: Backend) {
    let mut server = TestServer::start_with_on(backend, "exec", &["--max-runs", "1"]).await;
    let (status, body) = server.put_yaml("shell", &shell_pod(1)).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("shell", T).await;

    // Output, both streams, exit code.
    let started = Instant::now();
    let out = server.dubectl(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo out-$GREETING; echo err >&2; exit 7",
    ]);
    eprintln!("{backend}: exec round trip {:?}", started.elapsed());
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_eq!(stdout(&out), "out-hello-from-pod\n");
    assert_eq!(stderr(&out), "err\n");

    // stdin with -i, to its end; without -i the command reads nothing.
    let out = server.dubectl_stdin(
        &["exec", "-i", "shell", "--", "sh", "-c", "cat; echo done"],
        "line one\nline two\n",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "line one\nline two\ndone\n");
    let out = server.dubectl_stdin(&["exec", "shell", "--", "sh", "-c", "cat; echo done"], "ignored\n");
    assert_eq!(stdout(&out), "done\n", "{}", stderr(&out));

    // A terminal under a real pty: the command sees a tty of the client's size.
    let out = under_pty(
        &server,
        "stty cols 101 rows 33; \"$DUBECTL\" exec -t shell -- sh -c 'tty; sleep 0.3; stty size; exit 5'",
        "",
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 5, "{text} {}", stderr(&out));
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("33 101"), "{text}");
    // Interactive: keys typed on the pty reach a shell in the replica.
    let out = under_pty(
        &server,
        "\"$DUBECTL\" exec -it shell -- sh",
        "echo typed-$((40+2))\nexit 3\n",
    );
    let text = stdout(&out);
    assert!(text.contains("typed-42"), "{text} {}", stderr(&out));
    assert_eq!(code(&out), 3, "{text}");

    // Ctrl-C (no tty): dubectl ends, and so does the command in the container.
    let mut child = Command::new(binary("dubectl"))
        .args(["exec", "shell", "--", "sleep", "1001"])
        .env("DUBERNETES_SERVER", &server.url)
        .env("DUBERNETES_TOKEN", &server.token)
        .spawn()
        .expect("dubectl exec");
    wait_running(&server, "sleep 1001").await;
    let signal = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(signal.success());
    let status = child.wait().expect("dubectl ends");
    assert_eq!(status.code(), Some(130));
    let took = wait_gone(&server, "sleep 1001", "the interrupted command to end").await;
    eprintln!("{backend}: process gone {took:?} after Ctrl-C");

    // A dropped connection (dubectl killed): the command ends too.
    let mut child = Command::new(binary("dubectl"))
        .args(["exec", "shell", "--", "sleep", "1002"])
        .env("DUBERNETES_SERVER", &server.url)
        .env("DUBERNETES_TOKEN", &server.token)
        .spawn()
        .expect("dubectl exec");
    wait_running(&server, "sleep 1002").await;
    child.kill().expect("kill dubectl");
    let _ = child.wait();
    let took = wait_gone(&server, "sleep 1002", "the abandoned command to end").await;
    eprintln!("{backend}: process gone {took:?} after the connection dropped");

    // The same with a terminal: the pty's session ends (script killed, dubectl hung up).
    let mut child = Command::new("script")
        .args(["-qefc", "\"$DUBECTL\" exec -t shell -- sleep 1003", "/dev/null"])
        .env("DUBERNETES_SERVER", &server.url)
        .env("DUBERNETES_TOKEN", &server.token)
        .env("DUBECTL", binary("dubectl"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("script");
    wait_running(&server, "sleep 1003").await;
    child.kill().expect("kill script");
    let _ = child.wait();
    let took = wait_gone(&server, "sleep 1003", "the abandoned terminal command to end").await;
    eprintln!("{backend}: tty process gone {took:?} after its session ended");

    // A one-off run: the pod's env, output, exit code, and nothing left.
    let started = Instant::now();
    let out = server.dubectl(&[
        "run",
        "shell",
        "--",
        "sh",
        "-c",
        "echo run-$GREETING; echo run-err >&2; exit 4",
    ]);
    eprintln!("{backend}: run round trip {:?}", started.elapsed());
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(stdout(&out), "run-hello-from-pod\n");
    assert!(stderr(&out).contains("run-err"), "{}", stderr(&out));
    assert!(
        run_containers(&server.instance).await.is_empty(),
        "the run was not removed"
    );
    // It was no replica: the pod still has exactly its one, never restarted.
    let pod = server.wait_converged("shell", T).await;
    assert_eq!(pod["status"]["restarts"].as_u64().unwrap_or(0), 0, "{pod}");

    // Detached: its name at once, its log through `logs --run`, kept until deleted.
    let out = server.dubectl(&[
        "run",
        "shell",
        "--detach",
        "--",
        "sh",
        "-c",
        "echo detached-out; sleep 30",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let name = stdout(&out)
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("run/"))
        .expect("run/NAME")
        .to_string();
    wait_for("the detached run's output in its log", T, || async {
        let out = server.dubectl(&["logs", "shell", "--run", &name]);
        stdout(&out).contains("detached-out").then_some(())
    })
    .await;
    // --max-runs 1: a second run at once is refused, 429.
    let out = server.dubectl(&["run", "shell", "--", "true"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("HTTP 429"), "{}", stderr(&out));
    let (status, run) = server.get_json(&format!("/v1/pods/shell/runs/{name}")).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["state"], "running", "{run}");
    let gone = server
        .http
        .delete(format!("{}/v1/pods/shell/runs/{name}", server.url))
        .send()
        .await
        .expect("DELETE run");
    assert_eq!(gone.status().as_u16(), 200);
    wait_for("the deleted run to be gone", T, || async {
        run_containers(&server.instance).await.is_empty().then_some(())
    })
    .await;

    // Exec into a pod with no ready replica: a clear error, at once; a missing pod: 404.
    let (status, body) = server.put_yaml("shell", &shell_pod(0)).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("shell", T).await;
    let started = Instant::now();
    let out = server.dubectl(&["exec", "shell", "--", "true"]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("no ready replica"), "{}", stderr(&out));
    assert!(stderr(&out).contains("HTTP 409"), "{}", stderr(&out));
    let out = server.dubectl(&["exec", "nosuchpod", "--", "true"]);
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
    // Without the upgrade the route says how to call it.
    let plain = server
        .http
        .post(format!("{}/v1/pods/shell/exec", server.url))
        .json(&serde_json::json!({"command": ["true"]}))
        .send()
        .await
        .expect("POST exec");
    assert_eq!(plain.status().as_u16(), 400);
    // An empty command: 422 naming the field, nothing run.
    let empty = server
        .http
        .post(format!("{}/v1/pods/shell/runs", server.url))
        .json(&serde_json::json!({"command": []}))
        .send()
        .await
        .expect("POST runs");
    assert_eq!(empty.status().as_u16(), 422);
    let body: serde_json::Value = empty.json().await.expect("error body");
    assert_eq!(body["field"], "command", "{body}");
    server.stop();
}

dubernetes_tests::on_both_backends!(exec_and_run);

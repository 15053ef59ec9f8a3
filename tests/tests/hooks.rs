//! Deploy hooks (`hooks: {pre_deploy, post_deploy, timeout}`) on the real
//! engine and on the Swarm backend: a failing `pre_deploy` under a steady load
//! through the ingress fails the rollout (`HookFailed`) with not one failed
//! request and not one request served by the new revision; a passing one
//! rolls out; `post_deploy` runs after; a hook past its timeout is killed; a
//! running hook is adopted by a restarted server, not run twice; bad input is
//! refused naming the field.
//!
//! The pod is busybox's `httpd` serving its `VERSION` (a hook needs a shell;
//! the whoami images have none), with a `TERM` trap so a replica stops at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use dubernetes_tests::{Backend, TestServer, docker, stderr, wait_for};

const T: Duration = Duration::from_secs(120);

/// The pod at `version`, with `hooks` (a YAML flow map) when given.
fn spec(version: &str, hooks: &str) -> String {
    let mut yaml = format!(
        "name: web\nimage: dubernetes/busybox:local\nreplicas: 2\naccess: {{host: web.local}}\n\
         env: {{VERSION: {version}}}\nupdate: {{min_ready: 1s}}\n\
         args: [sh, -c, 'mkdir -p /w; echo $VERSION > /w/index.html; trap \"exit 0\" TERM; httpd -f -p 80 -h /w & wait']\n"
    );
    if !hooks.is_empty() {
        yaml.push_str(&format!("hooks: {hooks}\n"));
    }
    yaml
}

/// Requests through the ingress on a few connections, counting each answer.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(server: &TestServer) -> Load {
        let port = server.ingress_port().await;
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (stop, answers) = (stop.clone(), answers.clone());
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let url = format!("http://127.0.0.1:{port}/");
            tasks.push(tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
                    let mut result = http.get(&url).header("host", "web.local").send().await;
                    // A keep-alive connection an nginx reload closed before any byte: once more.
                    if let Err(e) = &result
                        && format!("{e:?}").contains("IncompleteMessage")
                    {
                        result = http.get(&url).header("host", "web.local").send().await;
                    }
                    let answer = match result {
                        Ok(r) if r.status().as_u16() == 200 => r
                            .text()
                            .await
                            .map_or_else(|e| format!("failed: body {e:?}"), |t| t.trim().to_string()),
                        Ok(r) => format!("failed: HTTP {}", r.status()),
                        Err(e) => format!("failed: {e:?}"),
                    };
                    *answers.lock().expect("lock").entry(answer).or_default() += 1;
                }
            }));
        }
        Load { stop, answers, tasks }
    }

    fn count(&self, answer: &str) -> u64 {
        self.answers.lock().expect("lock").get(answer).copied().unwrap_or(0)
    }

    async fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.answers.lock().expect("lock").clone()
    }
}

/// The hook containers of an instance, as (name, state).
async fn hook_containers(instance: &str) -> Vec<(String, String)> {
    let filters = std::collections::HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            "io.dubernetes.role=hook".to_string(),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    docker()
        .await
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .into_iter()
        .map(|c| {
            (
                c.names.and_then(|n| n.into_iter().next()).unwrap_or_default(),
                c.state.map(|s| s.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

/// The pod's events as (reason, message).
async fn events(server: &TestServer) -> Vec<(String, String)> {
    let (_, body) = server.get_json("/v1/events?pod=web&limit=1000").await;
    body.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["reason"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn apply_wait(server: &TestServer, yaml: &str) -> std::process::Output {
    tokio::task::block_in_place(|| server.dubectl_stdin(&["apply", "-f", "-", "--wait", "--timeout", "100s"], yaml))
}

/// v1 (its hooks pass), a load, v2 whose `pre_deploy` fails, v3 whose passes.
async fn failing_then_passing_pre_deploy(backend: Backend) {
    let server = TestServer::start_on(backend, "hooks").await;
    let passing =
        "{pre_deploy: [sh, -c, 'echo migrating to $VERSION'], post_deploy: [sh, -c, 'echo deployed $VERSION']}";

    // The first revision of a new pod runs its pre_deploy too; post_deploy after.
    let out = apply_wait(&server, &spec("v1", passing));
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("v1's post_deploy hook to be recorded", T, || async {
        let e = events(&server).await;
        let pre = e
            .iter()
            .any(|(r, m)| r == "HookSucceeded" && m.contains("pre_deploy hook of revision 1"));
        let post = e
            .iter()
            .any(|(r, m)| r == "HookSucceeded" && m.contains("post_deploy hook of revision 1"));
        (pre && post).then_some(())
    })
    .await;
    let e = events(&server).await;
    assert!(
        e.iter().any(|(_, m)| m.contains("migrating to v1")),
        "the hook's output is in its event: {e:?}"
    );
    wait_for("v1's hook containers to be removed", T, || async {
        hook_containers(&server.instance).await.is_empty().then_some(())
    })
    .await;
    let before = server.replicas(Some("web")).await;
    assert_eq!(before.len(), 2, "{before:?}");

    let load = Load::start(&server).await;
    wait_for("v1 to answer through the ingress", T, || async {
        (load.count("v1") > 20).then_some(())
    })
    .await;

    // v2's migration fails: the rollout fails at once, nothing of v2 starts.
    let failing = "{pre_deploy: [sh, -c, 'echo migrating to $VERSION; echo boom: no such table >&2; exit 3']}";
    let started = Instant::now();
    let out = apply_wait(&server, &spec("v2", failing));
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "apply --wait of a failing hook succeeded: {err}");
    assert!(
        err.contains("HookFailed") && err.contains("exited with code 3") && err.contains("boom: no such table"),
        "{err}"
    );
    eprintln!("{backend:?}: a failing pre_deploy failed `apply --wait` after {took:?}");
    let (_, pod) = server.get_json("/v1/pods/web").await;
    assert_eq!(pod["status"]["reason"], "RolledBack", "{pod}");
    assert_eq!(pod["spec"]["env"]["VERSION"], "v1", "{pod}");
    let (_, revisions) = server.get_json("/v1/pods/web/revisions").await;
    let r2 = revisions
        .as_array()
        .and_then(|a| a.iter().find(|r| r["number"] == 2))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (r2["outcome"].as_str(), r2["reason"].as_str()),
        (Some("failed"), Some("HookFailed")),
        "{revisions}"
    );
    assert!(r2["message"].as_str().unwrap_or_default().contains("boom"), "{r2}");
    let e = events(&server).await;
    assert!(
        e.iter().any(|(r, m)| r == "RolledBack" && m.starts_with("HookFailed")),
        "a Warning event says why: {e:?}"
    );
    // The old replicas are the very same; the hook's container is gone.
    server.wait_converged("web", T).await;
    assert_eq!(server.replicas(Some("web")).await, before);
    // Removed once its result is recorded (just after: a crash in between must not lose it).
    wait_for("the failed hook's container to be removed", T, || async {
        hook_containers(&server.instance).await.is_empty().then_some(())
    })
    .await;
    let seen = load.count("v1");
    wait_for("v1 to keep answering", T, || async {
        (load.count("v1") > seen + 20).then_some(())
    })
    .await;

    // v3's passes: it rolls out.
    let out = apply_wait(&server, &spec("v3", passing));
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("v3 to answer through the ingress", T, || async {
        (load.count("v3") > 20).then_some(())
    })
    .await;
    let answers = load.finish().await;
    eprintln!("{backend:?}: answers through the ingress {answers:?}");
    let failed: u64 = answers
        .iter()
        .filter(|(a, _)| a.starts_with("failed"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(failed, 0, "{answers:?}");
    assert!(
        answers.keys().all(|a| a == "v1" || a == "v3"),
        "only v1 and v3 answered: {answers:?}"
    );
    wait_for("v3's post_deploy hook", T, || async {
        events(&server)
            .await
            .iter()
            .any(|(r, m)| r == "HookSucceeded" && m.contains("post_deploy hook of revision 4"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_failing_pre_deploy_hook_keeps_the_old_revision_serving_and_a_passing_one_rolls_out() {
    failing_then_passing_pre_deploy(Backend::Docker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_hook_past_its_timeout_is_killed_and_fails_the_first_revision() {
    let server = TestServer::start("hooks-timeout").await;
    let hooks = "{pre_deploy: [sleep, '300'], timeout: 2s}";
    let started = Instant::now();
    let out = apply_wait(&server, &spec("v1", hooks));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("HookFailed") && err.contains("timed out after 2s"),
        "{err}"
    );
    eprintln!("a 2s hook timeout failed the rollout after {:?}", started.elapsed());
    // No earlier revision: the pod stays failed, with no replica, and no hook left.
    let (_, pod) = server.get_json("/v1/pods/web").await;
    assert_eq!(pod["status"]["reason"], "HookFailed", "{pod}");
    wait_for("the killed hook to be removed", T, || async {
        hook_containers(&server.instance).await.is_empty().then_some(())
    })
    .await;
    assert!(server.replicas(Some("web")).await.is_empty());
    // A fixed hook alone is a new revision (hooks are part of it): it runs and rolls out.
    let out = apply_wait(&server, &spec("v1", "{pre_deploy: [true], timeout: 2s}"));
    assert!(out.status.success(), "{}", stderr(&out));

    // A hook that prints a secret: its value never reaches the status, revision or events.
    let out = server.dubectl(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hook-secret-Zq81",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let leaky = spec(
        "v2",
        "{pre_deploy: [sh, -c, 'echo connecting with $DB_PASSWORD; exit 1']}",
    )
    .replace(
        "env: {VERSION: v2}",
        "env: {VERSION: v2, DB_PASSWORD: {secret: db, key: password}}",
    );
    let out = apply_wait(&server, &leaky);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("connecting with ***") && !err.contains("hook-secret-Zq81"),
        "{err}"
    );
    let (_, revisions) = server.get_json("/v1/pods/web/revisions").await;
    let e = events(&server).await;
    assert!(
        !format!("{revisions}{e:?}").contains("hook-secret-Zq81"),
        "{revisions} {e:?}"
    );

    // A failing post_deploy: the rollout is complete and stays so; the status and a Warning say it.
    let out = apply_wait(
        &server,
        &spec("v3", "{post_deploy: [sh, -c, 'echo cache purge failed; exit 7']}"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pod = wait_for("the post_deploy failure in the status", T, || async {
        let (_, pod) = server.get_json("/v1/pods/web").await;
        (pod["status"]["reason"] == "PostDeployHookFailed").then_some(pod)
    })
    .await;
    let message = pod["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exited with code 7") && message.contains("cache purge failed"),
        "{pod}"
    );
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    assert_eq!(pod["spec"]["env"]["VERSION"], "v3", "{pod}");
    assert!(
        events(&server)
            .await
            .iter()
            .any(|(r, m)| r == "PostDeployHookFailed" && m.contains("stays so")),
        "a Warning event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_running_hook_is_adopted_by_a_restarted_server_and_runs_once() {
    let mut server = TestServer::start("hooks-restart").await;
    let hooks = "{pre_deploy: [sh, -c, 'echo started; sleep 4; echo done']}";
    let (status, body) = server.put_yaml("web", &spec("v1", hooks)).await;
    assert_eq!(status, 201, "{body}");
    wait_for("the hook to run", T, || async {
        hook_containers(&server.instance)
            .await
            .iter()
            .any(|(_, s)| s == "running")
            .then_some(())
    })
    .await;
    server.restart().await;
    server.wait_converged("web", T).await;
    let e = events(&server).await;
    let started = e.iter().filter(|(r, _)| r == "HookStarted").count();
    let passed: Vec<_> = e.iter().filter(|(r, _)| r == "HookSucceeded").collect();
    assert_eq!((started, passed.len()), (1, 1), "{e:?}");
    assert!(passed[0].1.contains("done"), "{passed:?}");
    assert!(hook_containers(&server.instance).await.is_empty());
    // A scale change is no new revision: no hook.
    let mut scaled = spec("v1", hooks);
    scaled = scaled.replace("replicas: 2", "replicas: 3");
    let out = apply_wait(&server, &scaled);
    assert!(out.status.success(), "{}", stderr(&out));
    let started = events(&server).await.iter().filter(|(r, _)| r == "HookStarted").count();
    assert_eq!(started, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_hook_that_is_not_a_list_of_strings_is_refused_naming_the_field() {
    let server = TestServer::start("hooks-bad").await;
    for (hooks, field) in [
        ("{pre_deploy: ./migrate}", "hooks.pre_deploy"),
        ("{pre_deploy: [./migrate, {up: 1}]}", "hooks.pre_deploy"),
        ("{post_deploy: []}", "hooks.post_deploy"),
        ("{pre_deploy: [true], timeout: 0s}", "hooks.timeout"),
        // A bad duration is named by its map (as for `update`), with the value.
        ("{pre_deploy: [true], timeout: soon}", "is not a duration"),
        ("{pre_deploy: [true], before: [true]}", "before"),
    ] {
        let (status, body) = server.put_yaml("web", &spec("v1", hooks)).await;
        assert!((400..500).contains(&status), "{hooks}: {status} {body}");
        assert!(body.to_string().contains(field), "{hooks}: {body}");
    }
    let (status, _) = server.get_json("/v1/pods/web").await;
    assert_eq!(status, 404, "nothing was written");
}

mod swarm {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn a_failing_pre_deploy_hook_keeps_the_old_revision_serving_and_a_passing_one_rolls_out() {
        failing_then_passing_pre_deploy(Backend::Swarm).await;
    }
}

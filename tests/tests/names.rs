//! Pods find each other by name (issue 25, item 4), on the real engine, on
//! both backends: from a `web` replica, the name `db` resolves through the
//! DNS every container already uses (the engine's embedded DNS, which
//! forwards it to the instance's name responder) to `db`'s ready replicas
//! only, before, during and after a rolling update, and to nothing at
//! `replicas: 0`.
//!
//! The `web` replica runs the responder's own image (`dubernetes/names:local`,
//! a static binary whose `lookup` and `fetch` commands use the system
//! resolver, as any client would): the test runs them in the replica with
//! the engine's exec. `db` is the whoami app with no `access` (a pod no
//! ingress routes to, as a database).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use dubernetes_tests::{Backend, TestServer, WHOAMI_V1, WHOAMI_V2, docker, exec_in_container, wait_for, wait_until};

const T: Duration = Duration::from_secs(90);
const NAMES_IMAGE: &str = "dubernetes/names:local";

fn db(image: &str, replicas: u32) -> String {
    format!(
        "name: db\nimage: {image}\nreplicas: {replicas}\n\
         health: {{path: /healthz, interval: 200ms, timeout: 500ms}}\n"
    )
}

/// A client pod: the responder's image, serving DNS on port 53 (its
/// readiness check connects there); the test runs its client commands.
fn web() -> String {
    format!("name: web\nimage: {NAMES_IMAGE}\nreplicas: 1\nport: 53\n")
}

/// Running replica containers of a pod (task containers on Swarm carry the
/// replica's labels too), with their address on the instance network.
async fn running(docker: &Docker, instance: &str, pod: &str) -> Vec<(String, String)> {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            format!("io.dubernetes.pod={pod}"),
            "io.dubernetes.role=replica".to_string(),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new().filters(&filters).build();
    let list = docker.list_containers(Some(options)).await.expect("list containers");
    let mut out = Vec::new();
    for c in list {
        let id = c.id.unwrap_or_default();
        // Gone since the list: not running.
        let Ok(inspect) = docker.inspect_container(&id, None::<InspectContainerOptions>).await else {
            continue;
        };
        let ip = inspect
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&format!("dub-{instance}")))
            .and_then(|e| e.ip_address)
            .unwrap_or_default();
        out.push((id, ip));
    }
    out.sort();
    out
}

/// What `db` resolves to from the web replica right now (empty: nothing).
async fn lookup(docker: &Docker, web: &str) -> BTreeSet<String> {
    let (code, out) = exec_in_container(docker, web, &["/dubernetes-names", "lookup", "db"]).await;
    let addrs: BTreeSet<String> = out
        .lines()
        .filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
        .collect();
    assert_eq!(code == 0, !addrs.is_empty(), "lookup exit {code}: {out}");
    addrs
}

/// Requests to `http://db/` from the web replica for `millis` ms, each
/// resolving `db` afresh: (ok, failed, addresses used, output).
async fn fetch(docker: &Docker, web: &str, millis: u64) -> (u64, u64, BTreeSet<String>, String) {
    let (_, out) = exec_in_container(
        docker,
        web,
        &["/dubernetes-names", "fetch", "db", "80", &millis.to_string()],
    )
    .await;
    let line = out
        .lines()
        .find(|l| l.starts_with("ok="))
        .unwrap_or_else(|| panic!("fetch said: {out}"));
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_default()
            .to_string()
    };
    let ok = field("ok=").parse().expect("ok count");
    let failed = field("failed=").parse().expect("failed count");
    let addrs = field("addrs=")
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    (ok, failed, addrs, out)
}

async fn addresses(docker: &Docker, instance: &str, pod: &str) -> BTreeSet<String> {
    running(docker, instance, pod)
        .await
        .into_iter()
        .map(|(_, ip)| ip)
        .collect()
}

async fn apply(server: &TestServer, name: &str, yaml: &str) {
    let (status, body) = server.put_yaml(name, yaml).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
}

/// The name follows readiness: before, during and after a rolling update,
/// never listing a replica that is not ready, empty at zero replicas.
async fn a_pod_reaches_another_by_name(backend: Backend) {
    let docker = docker().await;
    let server = TestServer::start_on(backend, "names").await;
    let instance = server.instance.clone();
    apply(&server, "db", &db(WHOAMI_V1, 2)).await;
    apply(&server, "web", &web()).await;
    server.wait_converged("db", T).await;
    server.wait_converged("web", T).await;
    let web = running(&docker, &instance, "web")
        .await
        .first()
        .map(|(id, _)| id.clone())
        .expect("a running web replica");

    // Before: db's two ready replicas, and nothing else.
    let v1 = addresses(&docker, &instance, "db").await;
    assert_eq!(v1.len(), 2, "{v1:?}");
    wait_until(
        &format!("db to resolve to its replicas {v1:?}"),
        T,
        || lookup(&docker, &web),
        |now| *now == v1,
    )
    .await;
    let (ok, failed, used, out) = fetch(&docker, &web, 300).await;
    assert!(ok > 0 && failed == 0, "{out}");
    assert!(used.is_subset(&v1), "{used:?} vs {v1:?}");
    // The engine's own names still resolve (the name responder's container).
    let responder = format!("dub-{instance}-names");
    let (code, out) = exec_in_container(&docker, &web, &["/dubernetes-names", "lookup", &responder]).await;
    assert_eq!(code, 0, "{out}");

    // A replica that runs but is never ready (it never listens) is not in the answer.
    apply(&server, "db", &db("dubernetes/whoami:nolisten", 2)).await;
    let stuck = wait_for("the never-ready replica to run", T, || async {
        let now = addresses(&docker, &instance, "db").await;
        let new: Vec<String> = now.difference(&v1).cloned().collect();
        (!new.is_empty()).then_some(new)
    })
    .await;
    for _ in 0..5 {
        let answer = lookup(&docker, &web).await;
        assert_eq!(answer, v1, "the answer lists a replica that is not ready ({stuck:?})");
    }

    // During a rolling update, a client that resolves afresh for each request
    // never fails; the traffic moves to the new replicas.
    let v1_ids: BTreeSet<String> = running(&docker, &instance, "db")
        .await
        .into_iter()
        .filter(|(_, ip)| v1.contains(ip))
        .map(|(id, _)| id)
        .collect();
    apply(&server, "db", &db(WHOAMI_V2, 2)).await;
    let mut totals = (0u64, 0u64);
    let mut used = BTreeSet::new();
    let mut outputs = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    let mut settled_rounds = 0;
    while settled_rounds < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "db did not converge: {outputs:?}"
        );
        let (ok, failed, addrs, out) = fetch(&docker, &web, 1000).await;
        totals.0 += ok;
        totals.1 += failed;
        used.extend(addrs);
        if failed > 0 {
            outputs.push(out);
        }
        let (status, pod) = server.get_json("/v1/pods/db").await;
        let s = &pod["status"];
        let converged = status == 200
            && s["ready_replicas"] == 2
            && s["updated_replicas"] == 2
            && s["current_replicas"] == 2
            && s["observed_generation"] == pod["generation"];
        if converged {
            settled_rounds += 1;
        }
    }
    eprintln!(
        "{backend}: requests by name during the rollout: {} ok, {} failed",
        totals.0, totals.1
    );
    assert_eq!(totals.1, 0, "requests by name failed during the rollout: {outputs:?}");
    assert!(totals.0 > 20, "{totals:?}");
    let now = running(&docker, &instance, "db").await;
    assert!(
        now.iter().all(|(id, _)| !v1_ids.contains(id)),
        "every replica was replaced: {v1_ids:?} {now:?}"
    );
    let v2: BTreeSet<String> = now.into_iter().map(|(_, ip)| ip).collect();
    assert_eq!(v2.len(), 2, "{v2:?}");
    assert!(
        used.iter().any(|a| v2.contains(a)),
        "traffic reached the new replicas: {used:?} vs {v2:?}"
    );
    // After: the new replicas only.
    assert_eq!(lookup(&docker, &web).await, v2);

    // The responder killed: it comes back at the same address (made again by
    // the controller), and the name resolves again.
    let responder_id = docker
        .inspect_container(&responder, None::<InspectContainerOptions>)
        .await
        .expect("the name responder")
        .id
        .expect("its id");
    docker
        .kill_container(&responder_id, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .expect("kill the name responder");
    wait_until(
        &format!("db to resolve to {v2:?} again after the responder was killed"),
        T,
        || lookup(&docker, &web),
        |now| *now == v2,
    )
    .await;

    // Scaled to zero, the name resolves to nothing; the name left before
    // the replicas stopped, so this holds as soon as they are gone.
    apply(&server, "db", &db(WHOAMI_V2, 0)).await;
    wait_for("db's replicas to be gone", T, || async {
        running(&docker, &instance, "db").await.is_empty().then_some(())
    })
    .await;
    assert!(lookup(&docker, &web).await.is_empty());

    // And back.
    apply(&server, "db", &db(WHOAMI_V2, 2)).await;
    server.wait_converged("db", T).await;
    let back = wait_until(
        "db to resolve again",
        T,
        || lookup(&docker, &web),
        |answer| answer.len() == 2,
    )
    .await;
    assert_eq!(back, addresses(&docker, &instance, "db").await);
    let (ok, failed, _, out) = fetch(&docker, &web, 300).await;
    assert!(ok > 0 && failed == 0, "{out}");
}

dubernetes_tests::on_both_backends!(a_pod_reaches_another_by_name);

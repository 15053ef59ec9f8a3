//! The swarm backend on a real 3-node swarm (`scripts/multinode.sh`: three
//! Docker engines on this machine, each in its own network namespace; the
//! server runs in the manager's). Needs root, `dockerd` and `fuse-overlayfs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::query_parameters::ListTasksOptionsBuilder;
use dubernetes_tests::multinode::{MultiNode, NODES};
use dubernetes_tests::*;

const REPLICAS: usize = 6;
const ROUNDS: usize = 3;
/// How long one round may take (6 replicas started, or replaced one by one, on 3 engines sharing 2 cores).
const ROUND: Duration = Duration::from_secs(90);

fn spec(image: &str, replicas: usize) -> String {
    format!(
        "name: app\nimage: {image}\nreplicas: {replicas}\naccess: {{host: app.local}}\n\
         health: {{path: /healthz, interval: 200ms, timeout: 500ms}}\n"
    )
}

/// How many running tasks of the instance each node has, by node address.
async fn running_tasks_by_node(harness: &MultiNode, instance: &str) -> BTreeMap<String, usize> {
    let docker = harness.docker("m");
    let nodes: HashMap<String, String> = docker
        .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
        .await
        .expect("list nodes")
        .into_iter()
        .filter_map(|n| Some((n.id?, n.status?.addr?)))
        .collect();
    let filters = HashMap::from([
        ("label", vec![format!("io.dubernetes.instance={instance}")]),
        ("desired-state", vec!["running".to_string()]),
    ]);
    let tasks = docker
        .list_tasks(Some(ListTasksOptionsBuilder::new().filters(&filters).build()))
        .await
        .expect("list tasks");
    let mut by_node = BTreeMap::new();
    for t in tasks {
        let running = t
            .status
            .as_ref()
            .and_then(|s| s.state)
            .is_some_and(|s| s == bollard::models::TaskState::RUNNING);
        if running && let Some(node) = t.node_id.and_then(|n| nodes.get(&n).cloned()) {
            *by_node.entry(node).or_insert(0) += 1;
        }
    }
    by_node
}

/// Requests through the ingress until every one of `want` replicas answered
/// (by the hostname whoami reports); the set of hostnames seen.
async fn served_hostnames(server: &TestServer, want: usize, version: &str) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = BTreeSet::new();
    let mut requests = 0;
    while seen.len() < want {
        assert!(
            Instant::now() < deadline,
            "after {requests} requests through the ingress only {} of {want} replicas answered: {seen:?}",
            seen.len()
        );
        requests += 1;
        if let Ok((200, body)) = server.via_ingress("app.local").await {
            assert!(
                body.contains(&format!("Version: {version}")),
                "an old replica served: {body}"
            );
            if let Some(host) = body.lines().find_map(|l| l.strip_prefix("Hostname: ")) {
                seen.insert(host.to_string());
            }
        }
    }
    seen
}

/// Issue 28 item 2: with 6 replicas spread over 3 nodes, every replica, on
/// every node, is probed, becomes ready and is served through the ingress;
/// three rounds (a new pod, then two full replacements).
#[test]
fn multinode_replicas_on_every_node_become_ready_and_served() {
    let harness = MultiNode::up(&[WHOAMI_V1, WHOAMI_V2, NGINX_LOCAL, PROBE_LOCAL]);
    let docker_host = harness.docker_host("m");
    harness.run_on_manager(|| async {
        // No periodic resync within the test: it must not hide a replica that
        // nothing else gets probed (issue 28: one woke only at the resync).
        let server = TestServer::start_swarm_with_env(
            "mn-spread",
            &["--resync-seconds", "3600"],
            &[("DOCKER_HOST", &docker_host)],
        )
        .await;
        let mut spread_seen = BTreeSet::new();
        for round in 0..ROUNDS {
            let version = if round % 2 == 0 { "v1" } else { "v2" };
            let image = format!("dubernetes/whoami:{version}");
            let started = Instant::now();
            let (status, body) = server.put_yaml("app", &spec(&image, REPLICAS)).await;
            assert!(status == 200 || status == 201, "PUT app: {status} {body}");
            let pod = server.wait_converged("app", ROUND).await;
            let took = started.elapsed();
            assert_eq!(pod["status"]["ready_replicas"], REPLICAS, "{pod}");
            let by_node = running_tasks_by_node(&harness, &server.instance).await;
            let served = served_hostnames(&server, REPLICAS, version).await;
            eprintln!(
                "multinode round {round}: {REPLICAS} replicas of {version} ready in {:.1} s, tasks by node {by_node:?}, {} served",
                took.as_secs_f64(),
                served.len()
            );
            assert!(
                by_node.len() >= 2,
                "replicas not spread over the nodes: {by_node:?}"
            );
            spread_seen.extend(by_node.into_keys());
        }
        assert_eq!(
            spread_seen.len(),
            NODES.len(),
            "replicas ran on every node in some round: {spread_seen:?}"
        );
    });
}

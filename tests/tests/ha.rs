//! Several servers of one instance on one real PostgreSQL: exactly one
//! leads, the others serve the whole API; `kill -9` of the leader during a
//! scale and during a rollout loses no acknowledged write, makes no
//! duplicate container, and the ingress keeps serving; a database that goes
//! away leaves the containers alone and the API answers 503 until it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dubernetes_tests::{
    PgCluster, TestServer, WHOAMI_V1, WHOAMI_V2, auth_headers, containers, docker, instance_name, next_sse, stdout,
    wait_for,
};

const CONVERGE: Duration = Duration::from_secs(120);
const TAKEOVER: Duration = Duration::from_secs(20);

/// Starts `n` servers of one new instance on a new database; returns them
/// with the index of the leader (the first, which started alone).
async fn servers(test: &str, n: usize) -> (Vec<TestServer>, String) {
    let url = PgCluster::shared().new_database().await;
    let instance = instance_name(test);
    let mut servers = Vec::new();
    for _ in 0..n {
        let server = TestServer::start_shared(test, &instance, &url, &[]).await;
        if servers.is_empty() {
            wait_for("the first server to lead", TAKEOVER, || async {
                (server.leads().await == Some(true)).then_some(())
            })
            .await;
        }
        servers.push(server);
    }
    (servers, url)
}

/// Waits until exactly one of the live servers leads; returns its index.
async fn the_leader(servers: &[TestServer], skip: Option<usize>) -> usize {
    wait_for("exactly one leader", TAKEOVER, || async {
        let mut leaders = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            if Some(i) != skip && s.leads().await == Some(true) {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

/// Requests through the ingress until stopped: (answered 200, anything else).
struct Prober {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Prober {
    fn start(port: u16, host: &str) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f, host) = (stop.clone(), ok.clone(), failed.clone(), host.to_string());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let mut errors = Vec::new();
            let start = std::time::Instant::now();
            while !s.load(Ordering::Relaxed) {
                let url = format!("http://127.0.0.1:{port}/");
                let mut answer = client.get(&url).header("host", &host).send().await;
                // A keep-alive connection that a reloading nginx closed before
                // reading the request: it never reached a replica, and clients
                // retry such a GET (as safe_rollout.rs does).
                if let Err(e) = &answer
                    && format!("{e:?}").contains("IncompleteMessage")
                {
                    answer = client.get(&url).header("host", &host).send().await;
                }
                match answer {
                    Ok(r) if r.status().is_success() => o.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.push(format!("{:?} after {:?}", other.map(|r| r.status()), start.elapsed()));
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            errors
        });
        Prober { stop, ok, failed, task }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.expect("prober");
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// Waits until pod `pod` has exactly `n` containers, all running `image`.
async fn exactly(instance: &str, pod: &str, n: usize, image: &str) {
    let docker = docker().await;
    wait_for(
        &format!("exactly {n} running {image} containers of {pod}"),
        CONVERGE,
        || async {
            let all = containers(&docker, instance, Some(pod)).await;
            (all.len() == n && all.iter().all(|(_, state, img)| state == "running" && img == image)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_standby_serves_writes_and_watches_and_a_leader_killed_during_a_scale_is_replaced() {
    let (mut s, _) = servers("hascale", 2).await;
    assert_eq!(s[1].leads().await, Some(false), "the second server stands by");
    let version = stdout(&s[1].dubectl(&["version"]));
    assert!(version.contains("Store: postgres (this server stands by"), "{version}");
    let version = stdout(&s[0].dubectl(&["version"]));
    assert!(version.contains("Store: postgres (this server leads"), "{version}");

    // A write through the standby is acted on; the standby shows the leader's view.
    let (status, body) = s[1]
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\nreplicas: 2\naccess: {host: web.ha.local}\n",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let pod = s[1].wait_converged("web", CONVERGE).await;
    assert_eq!(pod["status"]["ready_replicas"], 2);

    // A watch through the standby sees a change made through the leader.
    let streaming = reqwest::Client::builder()
        .default_headers(auth_headers(&s[1].token))
        .build()
        .expect("client");
    let response = streaming
        .get(format!("{}/v1/watch", s[1].url))
        .send()
        .await
        .expect("GET /v1/watch");
    assert_eq!(response.status().as_u16(), 200);
    let mut stream = Box::pin(response.bytes_stream());
    let mut buffer = String::new();
    let (event, _) = tokio::time::timeout(Duration::from_secs(10), next_sse(&mut stream, &mut buffer))
        .await
        .expect("snapshot in time")
        .expect("snapshot");
    assert_eq!(event, "ADDED");
    let (status, body) = s[0]
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\nreplicas: 3\naccess: {host: web.ha.local}\n",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (event, data) = next_sse(&mut stream, &mut buffer).await?;
            let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            if event == "MODIFIED" && v["pod"]["status"]["ready_replicas"] == 3 {
                return Some(v);
            }
        }
    })
    .await
    .expect("the standby's watch sees the leader's work in time");
    assert!(seen.is_some(), "the watch ended");
    drop(stream);

    // Scale through the standby, and kill -9 the leader while it scales.
    let port = s[0].ingress_port().await;
    let prober = Prober::start(port, "web.ha.local");
    let (status, body) = s[1]
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\nreplicas: 6\naccess: {host: web.ha.local}\n",
        )
        .await;
    assert_eq!(status, 200, "acknowledged: {body}");
    let docker = docker().await;
    wait_for("the scale to begin", CONVERGE, || async {
        (containers(&docker, &s[0].instance, Some("web")).await.len() > 3).then_some(())
    })
    .await;
    s[0].kill9();
    let leader = the_leader(&s, Some(0)).await;
    assert_eq!(leader, 1, "the survivor leads");
    let pod = s[1].wait_converged("web", CONVERGE).await;
    assert_eq!(pod["spec"]["replicas"], 6, "the acknowledged scale is kept");
    exactly(&s[1].instance, "web", 6, WHOAMI_V1).await;
    let (ok, failed, errors) = prober.finish().await;
    assert!(ok > 0, "the ingress answered");
    assert_eq!(failed, 0, "the ingress kept serving through the takeover: {errors:?}");
}

#[tokio::test]
async fn three_servers_a_leader_killed_during_a_rollout_is_replaced_and_the_rollout_lands() {
    let (mut s, _) = servers("harollout", 3).await;
    let first = the_leader(&s, None).await;
    assert_eq!(first, 0);
    let yaml = |image: &str| {
        format!(
            "name: api\nimage: {image}\nreplicas: 3\naccess: {{host: api.ha.local}}\nupdate: {{max_surge: 1, max_unavailable: 0}}\n"
        )
    };
    let (status, body) = s[2].put_yaml("api", &yaml(WHOAMI_V1)).await;
    assert_eq!(status, 201, "{body}");
    s[2].wait_converged("api", CONVERGE).await;
    let port = s[0].ingress_port().await;
    let prober = Prober::start(port, "api.ha.local");
    let (status, body) = s[1].put_yaml("api", &yaml(WHOAMI_V2)).await;
    assert_eq!(status, 200, "acknowledged: {body}");
    let docker = docker().await;
    wait_for("the rollout to begin", CONVERGE, || async {
        let all = containers(&docker, &s[0].instance, Some("api")).await;
        all.iter().any(|(_, _, image)| image == WHOAMI_V2).then_some(())
    })
    .await;
    s[0].kill9();
    let leader = the_leader(&s, Some(0)).await;
    let pod = s[leader].wait_converged("api", CONVERGE).await;
    assert_eq!(pod["spec"]["image"], WHOAMI_V2);
    exactly(&s[leader].instance, "api", 3, WHOAMI_V2).await;
    // The standby left shows the same.
    let other = if leader == 1 { 2 } else { 1 };
    s[other].wait_converged("api", CONVERGE).await;
    let (ok, failed, errors) = prober.finish().await;
    assert!(ok > 0, "the ingress answered");
    assert_eq!(failed, 0, "the ingress kept serving through the takeover: {errors:?}");
}

#[tokio::test]
async fn concurrent_writes_through_two_servers_keep_every_acknowledged_one() {
    let (s, _) = servers("hawrites", 2).await;
    // 40 pods of no replicas (no containers: this is about the store), half
    // through each server, all at once.
    let writes = (0..40).map(|i| {
        let server = &s[i % 2];
        async move {
            let name = format!("p{i}");
            let (status, body) = server
                .put_yaml(
                    &name,
                    &format!("name: {name}\nimage: dubernetes/whoami:v1\nreplicas: 0\n"),
                )
                .await;
            (name, status, body)
        }
    });
    let results = futures::future::join_all(writes).await;
    let acknowledged: Vec<&String> = results
        .iter()
        .filter(|(_, status, _)| *status == 201)
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(acknowledged.len(), 40, "{results:?}");
    // Conditional scales of one pod through both servers at once: each
    // acknowledged one is kept, the losers get 409 and change nothing.
    let bumps = (0..2).map(|k| {
        let server = &s[k];
        async move {
            let mut done = 0u32;
            while done < 10 {
                let (_, pod) = server.get_json("/v1/pods/p0").await;
                let generation = pod["generation"].as_i64().expect("generation");
                let replicas = pod["spec"]["env"]["N"]
                    .as_str()
                    .map_or(0, |n| n.parse::<u32>().unwrap_or(0))
                    + 1;
                let response = server
                    .http
                    .put(format!("{}/v1/pods/p0", server.url))
                    .header("content-type", "application/yaml")
                    .header("if-match", format!("\"{generation}\""))
                    .body(format!(
                        "name: p0\nimage: dubernetes/whoami:v1\nreplicas: 0\nenv: {{N: \"{replicas}\"}}\n"
                    ))
                    .send()
                    .await
                    .expect("PUT");
                match response.status().as_u16() {
                    200 => done += 1,
                    409 => {}
                    other => panic!("unexpected {other}"),
                }
            }
        }
    });
    futures::future::join_all(bumps).await;
    for server in &s {
        let state = server.desired_state().await;
        let names: Vec<&str> = state
            .as_array()
            .expect("pods")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for name in &acknowledged {
            assert!(names.contains(&name.as_str()), "{name} lost on {}", server.url);
        }
        let (_, p0) = server.get_json("/v1/pods/p0").await;
        assert_eq!(p0["spec"]["env"]["N"], "20", "every acknowledged increment kept");
    }
}

#[tokio::test]
async fn the_database_going_away_leaves_containers_alone_and_the_api_answers_503_until_it_is_back() {
    // A cluster of its own: this test stops it.
    let cluster = PgCluster::start();
    let url = cluster.new_database().await;
    let instance = instance_name("hadb");
    let server = TestServer::start_shared("hadb", &instance, &url, &[]).await;
    wait_for("the server to lead", TAKEOVER, || async {
        (server.leads().await == Some(true)).then_some(())
    })
    .await;
    let (status, body) = server
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\nreplicas: 2\naccess: {host: web.db.local}\n",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    server.wait_converged("web", CONVERGE).await;
    let docker = docker().await;
    let before = containers(&docker, &instance, Some("web")).await;
    assert_eq!(before.len(), 2);
    let port = server.ingress_port().await;
    let prober = Prober::start(port, "web.db.local");

    cluster.stop();
    let (status, body) = wait_for("503 while the store is away", TAKEOVER, || async {
        let (status, body) = server.get_json("/v1/pods").await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    wait_for("the server to stop leading", TAKEOVER, || async {
        (server.leads().await == Some(false)).then_some(())
    })
    .await;
    // Nothing was touched while the store was away.
    assert_eq!(containers(&docker, &instance, Some("web")).await, before);

    cluster.resume();
    wait_for("the server to lead again", TAKEOVER, || async {
        (server.leads().await == Some(true)).then_some(())
    })
    .await;
    assert_eq!(
        containers(&docker, &instance, Some("web")).await,
        before,
        "the new term adopted what runs"
    );
    let (status, body) = server
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\nreplicas: 3\naccess: {host: web.db.local}\n",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.wait_converged("web", CONVERGE).await;
    exactly(&instance, "web", 3, WHOAMI_V1).await;
    let (ok, failed, errors) = prober.finish().await;
    assert!(ok > 0, "the ingress answered");
    assert_eq!(
        failed, 0,
        "the ingress kept serving while the store was away: {errors:?}"
    );
}

/// How many of the engine's networks are named exactly `name`.
async fn networks_named(docker: &bollard::Docker, name: &str) -> usize {
    let filters = std::collections::HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let options = bollard::query_parameters::ListNetworksOptionsBuilder::new()
        .filters(&filters)
        .build();
    docker
        .list_networks(Some(options))
        .await
        .expect("list networks")
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .count()
}

/// Three servers of one new instance started at the same moment on one
/// store (issue 28 item 5): before, each could make the instance network,
/// Docker 20.10 allows two of one name, and every start then failed as
/// "ambiguous" forever. Now exactly one network exists and the pod runs,
/// round after round.
#[tokio::test]
async fn three_servers_started_at_once_make_one_network_and_run_the_pod() {
    const ROUNDS: usize = 10;
    let docker = docker().await;
    for round in 0..ROUNDS {
        let url = PgCluster::shared().new_database().await;
        let instance = instance_name("haonce");
        let network = format!("dub-{instance}");
        let servers =
            futures::future::join_all((0..3).map(|_| TestServer::start_shared("haonce", &instance, &url, &[]))).await;
        let leader = the_leader(&servers, None).await;
        assert_eq!(
            networks_named(&docker, &network).await,
            1,
            "round {round}: three servers started at once made more than one network {network}"
        );
        let (status, body) = servers[(leader + 1) % 3]
            .put_yaml("web", "name: web\nimage: dubernetes/whoami:v1\nreplicas: 3\n")
            .await;
        assert_eq!(status, 201, "round {round}: {body}");
        let pod = servers[leader].wait_converged("web", CONVERGE).await;
        assert_eq!(pod["status"]["ready_replicas"], 3, "round {round}: {pod}");
        assert_eq!(networks_named(&docker, &network).await, 1, "round {round}");
    }
}

/// A duplicate of the instance network left behind (by an older version,
/// or by hand with the instance's label) is removed at start instead of
/// making every container start fail; the pod runs.
#[tokio::test]
async fn a_duplicate_instance_network_left_behind_is_repaired_at_start() {
    let docker = docker().await;
    let url = PgCluster::shared().new_database().await;
    let instance = instance_name("hadup");
    let network = format!("dub-{instance}");
    for _ in 0..2 {
        docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: network.clone(),
                driver: Some("bridge".into()),
                labels: Some(std::collections::HashMap::from([(
                    "io.dubernetes.instance".to_string(),
                    instance.clone(),
                )])),
                ..Default::default()
            })
            .await
            .expect("create a duplicate network");
    }
    assert_eq!(
        networks_named(&docker, &network).await,
        2,
        "Docker 20.10 allows two networks of one name"
    );
    let server = TestServer::start_shared("hadup", &instance, &url, &[]).await;
    assert_eq!(
        networks_named(&docker, &network).await,
        1,
        "the duplicate is removed at start"
    );
    let (status, body) = server
        .put_yaml("web", "name: web\nimage: dubernetes/whoami:v1\nreplicas: 2\n")
        .await;
    assert_eq!(status, 201, "{body}");
    let pod = server.wait_converged("web", CONVERGE).await;
    assert_eq!(pod["status"]["ready_replicas"], 2, "{pod}");
}

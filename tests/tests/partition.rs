//! The control plane under a network partition (issue 28 item 6): three
//! servers of one instance on one real PostgreSQL, each in a network
//! namespace of its own (`scripts/partition.sh`), all on the host's Docker
//! engine. The leader's link is cut during a rollout (its veth down: no
//! process killed, no session closed, nothing tells either end). It stops
//! acting before another server leads, no replica is duplicated at any
//! poll, no acknowledged write is lost, and once its link is back it stands
//! by without acting. Prints the takeover time (docs/benchmarks.md).
//!
//! Named `multinode_*`: `scripts/test.sh` runs it alone, in a bounded step of
//! its own, with a ledger that removes the namespaces after a killed run.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use dubernetes_core::leadership::CONFIRM_TIMEOUT as LEADER_CONFIRM_TIMEOUT;
use dubernetes_core::leadership::FENCE_AFTER as LEADER_FENCE_AFTER;
use dubernetes_core::leadership::HEARTBEAT as LEADER_HEARTBEAT;
use dubernetes_core::leadership::SESSION_TIMEOUT as LEADER_SESSION_TIMEOUT;
use dubernetes_tests::partition::Partition;
use dubernetes_tests::{PgCluster, TestServer, WHOAMI_V1, WHOAMI_V2, containers, docker, instance_name, wait_for};
use futures::StreamExt as _;

const CONVERGE: Duration = Duration::from_secs(90);
const TAKEOVER: Duration = Duration::from_secs(30);
const REPLICAS: usize = 3;
const SURGE: usize = 1;

/// Server-wide TCP keepalives that find a silent client dead after ~2 s.
const AGGRESSIVE_KEEPALIVES: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "1"),
    ("tcp_keepalives_interval", "1"),
    ("tcp_keepalives_count", "1"),
    ("tcp_user_timeout", "1000"),
];

fn yaml(image: &str) -> String {
    format!("name: web\nimage: {image}\nreplicas: {REPLICAS}\nupdate: {{max_surge: {SURGE}, max_unavailable: 0}}\n")
}

/// Nanoseconds since the epoch, now (the clock of the logs and of the engine's events).
fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn seconds(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

/// The time (epoch nanoseconds) of the first line of `log` containing `what`.
fn logged_at(log: &str, what: &str) -> Option<i64> {
    let line = log.lines().find(|l| l.contains(what))?;
    // Without colours the line starts with its RFC 3339 time; strip any anyway.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let stamp = plain.split_whitespace().next()?;
    let at = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

/// The instance's container events (time, action, container), as the engine reports them.
type Events = Arc<Mutex<Vec<(i64, String, String)>>>;

fn record_events(instance: &str) -> (Events, tokio::task::JoinHandle<()>) {
    let events: Events = Arc::default();
    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("label", vec![format!("io.dubernetes.instance={instance}")]),
    ]);
    let recorded = Arc::clone(&events);
    let task = tokio::spawn(async move {
        let docker = docker().await;
        let mut stream = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        while let Some(Ok(event)) = stream.next().await {
            let id = event.actor.and_then(|a| a.id).unwrap_or_default();
            let entry = (event.time_nano.unwrap_or(0), event.action.unwrap_or_default(), id);
            recorded.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
        }
    });
    (events, task)
}

/// What the duplicate poller saw: the most containers of the pod running
/// at one poll (old replicas being drained included), the most of the new
/// revision, every (revision, slot) filled twice at one poll, and how many polls.
#[derive(Debug, Default, Clone)]
struct Seen {
    running: usize,
    new: usize,
    doubled: Vec<String>,
    polls: usize,
}

/// Lists the pod's containers every 100 ms until stopped. A replica fills
/// a slot of its revision (label `io.dubernetes.slot`; a replacement takes
/// the slot of the one it replaces): two leaders acting at once would fill
/// one twice, or make more of the new revision than the pod has replicas.
fn poll_duplicates(instance: &str, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<Seen> {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            "io.dubernetes.pod=web".to_string(),
            "io.dubernetes.role=replica".to_string(),
        ],
    )]);
    tokio::spawn(async move {
        let docker = docker().await;
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let mut seen = Seen::default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let all = docker
                .list_containers(Some(options.clone()))
                .await
                .expect("list containers");
            let live: Vec<_> = all
                .iter()
                .filter(|c| {
                    !matches!(
                        c.state.as_ref().map(|s| s.to_string()).as_deref(),
                        Some("exited" | "dead")
                    )
                })
                .collect();
            let running = live
                .iter()
                .filter(|c| c.state.as_ref().is_some_and(|s| s.to_string() == "running"))
                .count();
            let new = all.iter().filter(|c| c.image.as_deref() == Some(WHOAMI_V2)).count();
            let mut slots = BTreeSet::new();
            for c in &live {
                let labels = c.labels.clone().unwrap_or_default();
                let key = format!(
                    "{}/{}",
                    labels.get("io.dubernetes.revision").map_or("?", String::as_str),
                    labels.get("io.dubernetes.slot").map_or("?", String::as_str)
                );
                if !slots.insert(key.clone()) {
                    seen.doubled.push(key);
                }
            }
            seen.running = seen.running.max(running);
            seen.new = seen.new.max(new);
            seen.polls += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}

/// Writes a pod of no replicas through each server in turn, every 150 ms,
/// until stopped; returns the names the API acknowledged (2xx).
fn write_continuously(
    servers: &[TestServer],
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let targets: Vec<(String, String)> = servers.iter().map(|s| (s.url.clone(), s.token.clone())).collect();
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .expect("client");
        let mut acknowledged = Vec::new();
        let mut k = 0usize;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (url, token) = &targets[k % targets.len()];
            let name = format!("w{k}");
            let answer = client
                .put(format!("{url}/v1/pods/{name}"))
                .bearer_auth(token)
                .header("content-type", "application/yaml")
                .body(format!("name: {name}\nimage: {WHOAMI_V1}\nreplicas: 0\n"))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                acknowledged.push(name);
            }
            k += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        acknowledged
    })
}

/// Whether server `i` leads, asked from inside its own namespace (it
/// answers there while its link is cut); None when it does not answer.
fn leads_from_inside(net: &Partition, server: &TestServer, i: usize) -> Option<bool> {
    let (status, body) = net.get_from(i, &format!("{}/healthz", server.url))?;
    let body: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| body["leader"].as_bool()).flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multinode_a_partitioned_leader_is_fenced_with_no_duplicate_container() {
    let net = Partition::up();
    // A database that gives up on a silent client fast (its TCP keepalives
    // declare the peer dead after about 2 s): the lock connection's own
    // settings must keep it from freeing the lock before the fence.
    let cluster = PgCluster::start_listening(Some(net.host()), &AGGRESSIVE_KEEPALIVES);
    let url = cluster.via(&cluster.new_database().await, &net.host().to_string());
    let instance = instance_name("part");
    let mut s = Vec::new();
    for i in 0..3 {
        let server = TestServer::start_shared_in(
            "part",
            &instance,
            &url,
            &net.netns(i),
            net.address(i).into(),
            net.host().into(),
        )
        .await;
        if i == 0 {
            wait_for("the first server to lead", TAKEOVER, || async {
                (server.leads().await == Some(true)).then_some(())
            })
            .await;
        }
        s.push(server);
    }
    let (status, body) = s[1].put_yaml("web", &yaml(WHOAMI_V1)).await;
    assert_eq!(status, 201, "{body}");
    s[1].wait_converged("web", CONVERGE).await;

    let (events, recorder) = record_events(&instance);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = poll_duplicates(&instance, Arc::clone(&stop));
    let writer = write_continuously(&s, Arc::clone(&stop));

    // A rollout through a standby; the leader's link is cut once it began.
    let (status, body) = s[2].put_yaml("web", &yaml(WHOAMI_V2)).await;
    assert_eq!(status, 200, "acknowledged: {body}");
    let docker = docker().await;
    wait_for("the rollout to begin", CONVERGE, || async {
        let all = containers(&docker, &instance, Some("web")).await;
        all.iter().any(|(_, _, image)| image == WHOAMI_V2).then_some(())
    })
    .await;
    let cut_at = now_nanos();
    let cut = Instant::now();
    net.cut(0);

    // The cut server says it stopped leading (asked from inside its namespace).
    wait_for("the cut leader to stop leading", TAKEOVER, || async {
        (leads_from_inside(&net, &s[0], 0) == Some(false)).then_some(())
    })
    .await;
    let stopped_seen = cut.elapsed();
    let new = wait_for("another server to lead", TAKEOVER, || async {
        for i in [1, 2] {
            if s[i].leads().await == Some(true) {
                return Some(i);
            }
        }
        None
    })
    .await;
    let leads_seen = cut.elapsed();

    // The order, from the servers' own logs: the old term ended before the new one began.
    let fenced_at =
        logged_at(&s[0].log(), "this server lost its leader lock").expect("the cut leader logged its fence");
    let leads_at =
        logged_at(&s[new].log(), "this server leads the instance now").expect("the new leader logged its term");
    let bound = LEADER_FENCE_AFTER + LEADER_CONFIRM_TIMEOUT + LEADER_HEARTBEAT;
    assert!(
        fenced_at < leads_at,
        "the cut leader stopped acting {:.2} s after the cut, after server {new} began to lead ({:.2} s)",
        seconds(fenced_at - cut_at),
        seconds(leads_at - cut_at)
    );
    assert!(
        fenced_at - cut_at <= i64::try_from((bound + Duration::from_secs(2)).as_nanos()).unwrap_or(i64::MAX),
        "the cut leader took {:.2} s to stop acting (bound {bound:?})",
        seconds(fenced_at - cut_at)
    );

    // Another server leads once the database freed the silent session's
    // lock (SESSION_TIMEOUT after its last heartbeat), at its next try.
    let takeover_bound = LEADER_SESSION_TIMEOUT + Duration::from_secs(4);
    assert!(
        leads_at - cut_at <= i64::try_from(takeover_bound.as_nanos()).unwrap_or(i64::MAX),
        "server {new} led {:.2} s after the cut (bound {takeover_bound:?})",
        seconds(leads_at - cut_at)
    );

    // The new leader finishes the rollout: the three new replicas, nothing else.
    let pod = s[new].wait_converged("web", CONVERGE).await;
    assert_eq!(pod["spec"]["image"], WHOAMI_V2, "{pod}");
    wait_for("exactly the new replicas", CONVERGE, || async {
        let all = containers(&docker, &instance, Some("web")).await;
        (all.len() == REPLICAS && all.iter().all(|(_, st, image)| st == "running" && image == WHOAMI_V2)).then_some(())
    })
    .await;

    // The engine was quiet between the fence (with a slack for a call the
    // fence abandoned that the engine finished) and the new term.
    let slack = 2_000_000_000;
    let recorded = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Actions of a server: replicas made, started, removed, the ingress's
    // config delivered or checked (a stop's own `kill` after the grace is
    // the engine's, and left out).
    let acting = |(_, action, _): &&(i64, String, String)| {
        ["create", "start", "destroy", "extract-to-dir", "exec_create"]
            .iter()
            .any(|a| action == a || action.starts_with(&format!("{a}:")))
    };
    let between: Vec<_> = recorded
        .iter()
        .filter(acting)
        .filter(|(at, _, _)| *at > fenced_at + slack && *at < leads_at)
        .collect();
    assert!(
        between.is_empty(),
        "the engine was changed between the terms: {between:?}"
    );
    let first_action = recorded
        .iter()
        .filter(acting)
        .map(|(at, _, _)| *at)
        .find(|at| *at >= leads_at)
        .expect("the new leader acted on the engine");
    // The rollout goes on once the new term confirmed the surge replica ready.
    let first_replica = recorded
        .iter()
        .find(|(at, action, _)| *at >= leads_at && action == "create")
        .map_or(f64::NAN, |(at, _, _)| seconds(at - cut_at));

    // The link is back: the old leader stands by and does not act.
    let settled: BTreeSet<String> = containers(&docker, &instance, Some("web"))
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    net.heal(0);
    wait_for("the healed server to answer", TAKEOVER, || async { s[0].leads().await }).await;
    let watch = Instant::now();
    while watch.elapsed() < LEADER_HEARTBEAT * 8 {
        assert_eq!(s[0].leads().await, Some(false), "the healed server stands by");
        assert_eq!(s[new].leads().await, Some(true), "the new leader still leads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now: BTreeSet<String> = containers(&docker, &instance, Some("web"))
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(now, settled, "nothing changed when the old leader came back");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = poller.await.expect("poller");
    let acknowledged = writer.await.expect("writer");
    recorder.abort();
    assert!(worst.polls > 20, "the poller ran: {worst:?}");
    assert!(
        worst.new <= REPLICAS,
        "more new replicas than the pod has at a poll: {worst:?}"
    );
    assert!(
        worst.doubled.is_empty(),
        "a replica slot filled twice at a poll: {worst:?}"
    );
    assert!(acknowledged.len() > 10, "writes were acknowledged: {acknowledged:?}");
    for server in &s {
        let state = server.desired_state().await;
        let names: BTreeSet<&str> = state
            .as_array()
            .expect("pods")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|n| !names.contains(n.as_str())).collect();
        assert!(
            lost.is_empty(),
            "acknowledged writes missing on {}: {lost:?}",
            server.url
        );
    }
    println!(
        "partition: leader cut at 0 s; it stopped acting at {:.2} s (its log; seen from its namespace at {:.2} s); \
         server {new} led at {:.2} s (its log; seen at {:.2} s), first engine action of its term at {:.2} s, its first replica made at {first_replica:.2} s; \
         worst poll {worst:?}; {} acknowledged writes, none lost",
        seconds(fenced_at - cut_at),
        stopped_seen.as_secs_f64(),
        seconds(leads_at - cut_at),
        leads_seen.as_secs_f64(),
        seconds(first_action - cut_at),
        acknowledged.len()
    );
}

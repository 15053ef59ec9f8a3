//! TCP services (issue 25, item 5), on the real engine, on both backends: a
//! pod's `expose` publishes its TCP port on a host address, through a
//! listener container of its own; a real TCP client connects there and
//! talks to a **ready** replica only, with no nginx reload when replicas
//! change readiness; `replicas: 0` refuses (the connection closes at once);
//! bad input is refused with the field named, and nothing is written. A
//! change of one pod's `expose` touches neither the HTTP ingress nor another
//! pod's listener (their connections stay up); a listener whose port is
//! taken is a `ListenerFailed` event and status, and comes up once the port
//! is free; IPv6 listen addresses are published.
//!
//! The pod is busybox (`dubernetes/busybox:local`): `nc -ll -e` runs, per
//! connection, a script that writes the replica's host name (its container
//! id's first 12 characters) and then echoes what it reads. Its readiness
//! is busybox `httpd` serving `/ready` on another port: the test removes the
//! file in one replica (the engine's exec) to make that replica unready
//! while it keeps running.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use dubernetes_tests::{Backend, TestServer, docker, exec_in_container, free_port, free_ports, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const T: Duration = Duration::from_secs(90);
const BUSYBOX: &str = "dubernetes/busybox:local";
/// The replicas' echo port, and their readiness port.
const ECHO_PORT: u16 = 7000;
const READY_PORT: u16 = 8080;

const SCRIPT: &str = "mkdir -p /tmp/www && echo ok > /tmp/www/ready && httpd -p 8080 -h /tmp/www && \
     printf '#!/bin/sh\\necho \"$HOSTNAME\"\\nexec cat\\n' > /tmp/echo && chmod +x /tmp/echo && \
     exec nc -ll -p 7000 -e /tmp/echo";

/// The echo pod (as JSON, which is YAML), exposing its echo port on `listen`.
fn echo(replicas: u32, listen: &str) -> String {
    echo_pod("echo", replicas, &[listen], None)
}

/// An echo pod named `name`, exposing its echo port on each of `listens`;
/// with `host`, its readiness server (busybox httpd, `/ready` answers `ok`)
/// is its HTTP route too.
fn echo_pod(name: &str, replicas: u32, listens: &[&str], host: Option<&str>) -> String {
    let expose: Vec<serde_json::Value> = listens
        .iter()
        .map(|l| serde_json::json!({"port": ECHO_PORT, "listen": l}))
        .collect();
    let mut spec = serde_json::json!({
        "name": name,
        "image": BUSYBOX,
        "replicas": replicas,
        "port": ECHO_PORT,
        "command": ["/bin/sh", "-c", SCRIPT],
        "health": {
            "path": "/ready", "port": READY_PORT, "interval": "200ms",
            "timeout": "500ms", "unhealthy_after": 1
        },
        "stop_grace_period": "1s",
        "expose": expose,
    });
    if let Some(host) = host {
        spec["port"] = READY_PORT.into();
        spec["access"] = serde_json::json!({"host": host});
    }
    spec.to_string()
}

/// One conversation through the published port: the replica's greeting
/// (its host name) once it echoed a line back; Err when the connection is
/// refused or closed before a greeting (no ready replica).
async fn talk(port: u16) -> Result<String, String> {
    talk_at(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// [`talk`] to any address (an IPv6 one).
async fn talk_at(addr: SocketAddr) -> Result<String, String> {
    let io = async {
        let mut conn = Conversation::open(addr).await?;
        conn.ping().await?;
        Ok(conn.greeting)
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// One TCP connection through a listener, kept open: pings echo back on it
/// as long as the listener and the replica behind it stay up.
struct Conversation {
    reader: BufReader<tokio::net::TcpStream>,
    /// The replica's host name.
    greeting: String,
}

impl Conversation {
    async fn open(addr: SocketAddr) -> Result<Conversation, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut greeting = String::new();
        if reader
            .read_line(&mut greeting)
            .await
            .map_err(|e| format!("read: {e}"))?
            == 0
        {
            return Err("closed without a byte".to_string());
        }
        Ok(Conversation {
            reader,
            greeting: greeting.trim().to_string(),
        })
    }

    /// One line out and back, within 10 s.
    async fn ping(&mut self) -> Result<(), String> {
        let io = async {
            let ping = format!("ping {}\n", rand_token());
            self.reader
                .get_mut()
                .write_all(ping.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut back = String::new();
            self.reader
                .read_line(&mut back)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if back != ping {
                return Err(format!("sent {ping:?}, got {back:?}"));
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }
}

fn rand_token() -> String {
    dubernetes_tests::random_token()
}

/// The greetings of `n` conversations (all must succeed).
async fn greetings(port: u16, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for i in 0..n {
        match talk(port).await {
            Ok(g) => {
                seen.insert(g);
            }
            Err(e) => panic!("conversation {i} through port {port} failed: {e}"),
        }
    }
    seen
}

/// Running replica containers of the pod (task containers on Swarm carry the labels too).
async fn running(docker: &Docker, instance: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            "io.dubernetes.pod=echo".to_string(),
            "io.dubernetes.role=replica".to_string(),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new().filters(&filters).build();
    let list = docker.list_containers(Some(options)).await.expect("list containers");
    let mut ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    ids.sort();
    ids
}

async fn reloads(server: &TestServer) -> u64 {
    let (status, body) = server.get_json("/v1/ingress").await;
    assert_eq!(status, 200, "{body}");
    body["reloads"].as_u64().expect("reloads")
}

async fn ready_replicas(server: &TestServer) -> u64 {
    let (_, pod) = server.get_json("/v1/pods/echo").await;
    pod["status"]["ready_replicas"].as_u64().unwrap_or(0)
}

/// A TCP client through `expose`, ready replicas only, no reload on
/// readiness changes, refused at zero replicas, a moved listener.
async fn a_tcp_client_reaches_ready_replicas_only(backend: Backend) {
    let docker = docker().await;
    let server = TestServer::start_on(backend, "tcp-expose").await;
    let instance = server.instance.clone();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (status, body) = server.put_yaml("echo", &echo(2, &listen)).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("echo", T).await;

    // Both replicas answer through the published port (chosen per connection).
    let ids = running(&docker, &instance).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    wait_for("a conversation through the exposed port", T, || async {
        talk(port).await.ok()
    })
    .await;
    let seen = wait_for("both replicas to answer", T, || async {
        let seen = greetings(port, 12).await;
        (seen.len() == 2).then_some(seen)
    })
    .await;
    for greeting in &seen {
        assert!(
            ids.iter().any(|id| id.starts_with(greeting.as_str())),
            "{greeting:?} is not one of {ids:?}"
        );
    }

    // One replica unready (it keeps running): connections go to the other
    // only, without an nginx reload; ready again, both serve again.
    let before = reloads(&server).await;
    let (unready, other) = (&ids[0], &ids[1]);
    let (code, out) = exec_in_container(&docker, unready, &["rm", "/tmp/www/ready"]).await;
    assert_eq!(code, 0, "{out}");
    wait_for("the replica to be unready", T, || async {
        (ready_replicas(&server).await == 1).then_some(())
    })
    .await;
    // The ingress follows within a sync: wait until 20 in a row reach the ready one only.
    wait_for("connections to reach the ready replica only", T, || async {
        let seen = greetings(port, 20).await;
        (seen.len() == 1 && other.starts_with(seen.iter().next()?.as_str())).then_some(())
    })
    .await;
    for _ in 0..3 {
        let seen = greetings(port, 20).await;
        assert!(
            seen.len() == 1 && other.starts_with(seen.iter().next().expect("one").as_str()),
            "a connection reached the unready replica {unready}: {seen:?}"
        );
    }
    let (code, out) = exec_in_container(&docker, unready, &["sh", "-c", "echo ok > /tmp/www/ready"]).await;
    assert_eq!(code, 0, "{out}");
    wait_for("both replicas to answer again", T, || async {
        (greetings(port, 12).await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(reloads(&server).await, before, "readiness changes reloaded nginx");
    assert_eq!(running(&docker, &instance).await, ids, "the replicas were not replaced");

    // Scaled to zero: the listener stays, and closes every connection at once.
    let (status, body) = server.put_yaml("echo", &echo(0, &listen)).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the replicas to be gone", T, || async {
        running(&docker, &instance).await.is_empty().then_some(())
    })
    .await;
    for _ in 0..5 {
        let answer = talk(port).await;
        assert!(answer.is_err(), "a connection was served at replicas: 0: {answer:?}");
    }
    // And back.
    let (status, body) = server.put_yaml("echo", &echo(1, &listen)).await;
    assert_eq!(status, 200, "{body}");
    server.wait_converged("echo", T).await;
    wait_for("the replica to answer after the scale up", T, || async {
        talk(port).await.ok()
    })
    .await;

    // The listener moved to another port: a new listener container
    // publishes it; the old port no longer answers.
    let moved = free_port();
    let (status, body) = server.put_yaml("echo", &echo(1, &format!("127.0.0.1:{moved}"))).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the moved listener to answer", T, || async { talk(moved).await.ok() }).await;
    assert!(talk(port).await.is_err(), "the old listen port still answers");
    eprintln!("{backend}: tcp expose ok");
}

/// Bad `expose` input is refused with the field named; nothing is written.
async fn bad_expose_is_refused(backend: Backend) {
    let server = TestServer::start_on(backend, "tcp-bad").await;
    let port = free_port();
    let (status, body) = server.put_yaml("echo", &echo(0, &format!("127.0.0.1:{port}"))).await;
    assert!(status == 200 || status == 201, "{status}: {body}");

    let spec = |name: &str, expose: serde_json::Value| {
        serde_json::json!({"name": name, "image": BUSYBOX, "replicas": 0, "expose": expose}).to_string()
    };
    let cases = [
        (
            serde_json::json!([{"port": 0, "listen": "127.0.0.1:20001"}]),
            422,
            "expose[0].port",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "127.0.0.1"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "127.0.0.1:0"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "db.example.com:5432"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 5432, "listen": "127.0.0.1:80"}]),
            422,
            "expose[0].listen",
        ),
        (
            serde_json::json!([{"port": 1, "listen": "20002"}, {"port": 2, "listen": "0.0.0.0:20002"}]),
            422,
            "expose[1].listen",
        ),
        // Another pod's listen port (whatever the IP): 409 naming it.
        (
            serde_json::json!([{"port": 5432, "listen": format!("0.0.0.0:{port}")}]),
            409,
            "expose[0].listen",
        ),
    ];
    for (expose, want, field) in cases {
        let (status, body) = server.put_yaml("other", &spec("other", expose.clone())).await;
        assert_eq!(status, want, "{expose}: {body}");
        assert_eq!(body["field"], field, "{expose}: {body}");
        if want == 409 {
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("\"echo\""), "the owner is named: {body}");
        }
    }
    // The ingress's own HTTP port on the host.
    let http = server.ingress_port().await;
    let (status, body) = server
        .put_yaml(
            "other",
            &spec(
                "other",
                serde_json::json!([{"port": 1, "listen": format!("127.0.0.1:{http}")}]),
            ),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["field"], "expose[0].listen", "{body}");
    // Nothing was written.
    let (status, _) = server.get_json("/v1/pods/other").await;
    assert_eq!(status, 404);
    // A port alone is 127.0.0.1; the same pod may keep its own port.
    let (status, body) = server.put_yaml("echo", &echo(0, &port.to_string())).await;
    assert_eq!(status, 200, "{body}");
}

/// The id of the container named `name` (None: there is none).
async fn container_id(docker: &Docker, name: &str) -> Option<String> {
    docker
        .inspect_container(name, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| c.id)
}

/// The ids of the instance's TCP listener containers, by the address they publish.
async fn listeners(docker: &Docker, instance: &str) -> HashMap<String, String> {
    let filters = HashMap::from([(
        "label",
        vec![
            format!("io.dubernetes.instance={instance}"),
            "io.dubernetes.role=listener".to_string(),
        ],
    )]);
    let options = ListContainersOptionsBuilder::new().filters(&filters).build();
    let list = docker.list_containers(Some(options)).await.expect("list containers");
    list.into_iter()
        .filter_map(|c| Some((c.labels?.get("io.dubernetes.listen")?.clone(), c.id?)))
        .collect()
}

/// HTTP requests sent one after another on kept-alive connections until
/// stopped: how many succeeded, and every failure.
struct HttpClient {
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpClient {
    fn start(port: u16, host: &str) -> HttpClient {
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(dubernetes_tests::CLIENT_IDLE)
            .build()
            .expect("client");
        let (host, url) = (host.to_string(), format!("http://127.0.0.1:{port}/ready"));
        let task = tokio::spawn({
            let (ok, failures, stop) = (Arc::clone(&ok), Arc::clone(&failures), Arc::clone(&stop));
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let answer = match client.get(&url).header("host", &host).send().await {
                        Ok(r) if r.status() == 200 => r.text().await.map_err(|e| e.to_string()),
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    match answer {
                        Ok(body) if body.trim() == "ok" => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(body) => failures.lock().expect("lock").push(format!("body {body:?}")),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        HttpClient {
            ok,
            failures,
            stop,
            task,
        }
    }

    /// Stops it; returns (successes, failures).
    async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the HTTP client task");
        let failures = self.failures.lock().expect("lock").clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

/// One pod's `expose` changes (a listener added, moved to IPv6, a second
/// one, all removed) while another pod is busy over HTTP (kept-alive
/// requests to its host) and over TCP (a connection open through its own
/// listener): the HTTP ingress container and the other pod's listener
/// container stay the same, no HTTP request fails, the open TCP connection
/// still echoes, nginx never reloads; each change takes effect on its own
/// listener.
async fn an_expose_change_touches_only_its_own_listener(backend: Backend) {
    let docker = docker().await;
    let server = TestServer::start_on(backend, "tcp-only-own").await;
    let instance = server.instance.clone();
    let a_port = free_port();
    let a_listen = format!("127.0.0.1:{a_port}");
    let (status, body) = server
        .put_yaml("a", &echo_pod("a", 1, &[&a_listen], Some("a.tcp.test")))
        .await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("a", T).await;
    let http_port = server.ingress_port().await;
    wait_for("a to be routed", T, || async {
        let answer = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{http_port}/ready"))
            .header("host", "a.tcp.test")
            .send()
            .await
            .ok()?;
        (answer.status() == 200 && answer.text().await.ok()?.trim() == "ok").then_some(())
    })
    .await;
    let mut conn = wait_for("a TCP connection to a's listener", T, || async {
        Conversation::open(SocketAddr::from(([127, 0, 0, 1], a_port)))
            .await
            .ok()
    })
    .await;
    conn.ping().await.expect("a's connection echoes");

    let ingress_name = format!("dub-{instance}-ingress");
    let ingress = container_id(&docker, &ingress_name).await.expect("the HTTP ingress");
    let a_listener = listeners(&docker, &instance).await[&a_listen].clone();
    let reloads_before = reloads(&server).await;
    let http = HttpClient::start(http_port, "a.tcp.test");
    wait_for("the HTTP client's first answers", T, || async {
        (http.ok.load(Ordering::Relaxed) >= 5).then_some(())
    })
    .await;

    // Pod b: a listener added, moved (to IPv6 loopback), a second one
    // added, all removed. Each change: timed until it serves (or is gone).
    let [b1, b2, b3] = free_ports::<3>();
    let steps: [(&str, Vec<String>); 4] = [
        ("added", vec![format!("127.0.0.1:{b1}")]),
        ("moved to IPv6", vec![format!("[::1]:{b2}")]),
        ("a second one", vec![format!("[::1]:{b2}"), format!("127.0.0.1:{b3}")]),
        ("removed", vec![]),
    ];
    for (what, listens) in &steps {
        let refs: Vec<&str> = listens.iter().map(String::as_str).collect();
        let started = Instant::now();
        let (status, body) = server.put_yaml("b", &echo_pod("b", 1, &refs, None)).await;
        assert!(status == 200 || status == 201, "{what}: {status}: {body}");
        for l in listens {
            let addr: SocketAddr = l.parse().expect("address");
            wait_for(&format!("b's listener on {l} ({what})"), T, || async {
                talk_at(addr).await.ok()
            })
            .await;
        }
        wait_for(&format!("b's listener containers ({what})"), T, || async {
            let mut now: Vec<String> = listeners(&docker, &instance).await.into_keys().collect();
            now.sort();
            let mut want: Vec<String> = listens.iter().cloned().chain([a_listen.clone()]).collect();
            want.sort();
            (now == want).then_some(())
        })
        .await;
        eprintln!("{backend}: b's expose {what}: serving in {:?}", started.elapsed());
        // Nothing else moved.
        assert_eq!(
            container_id(&docker, &ingress_name).await.as_deref(),
            Some(ingress.as_str()),
            "{what}: the HTTP ingress container was replaced"
        );
        assert_eq!(
            listeners(&docker, &instance).await.get(&a_listen),
            Some(&a_listener),
            "{what}: a's listener container was replaced"
        );
        conn.ping()
            .await
            .unwrap_or_else(|e| panic!("{what}: a's open TCP connection broke: {e}"));
    }
    for old in [b1, b2, b3] {
        assert!(talk(old).await.is_err(), "b's old port {old} still answers");
    }
    let (ok, failures) = http.stop().await;
    assert!(
        failures.is_empty(),
        "HTTP requests to a failed during b's changes: {failures:?}"
    );
    assert!(ok > 20, "only {ok} HTTP requests were made");
    assert_eq!(
        reloads(&server).await,
        reloads_before,
        "b's expose changes reloaded nginx"
    );
    conn.ping().await.expect("a's connection still echoes");
    eprintln!("{backend}: {ok} HTTP requests to a during b's changes, none failed");
}

/// A listen port another program holds on the host: the listener cannot
/// start; its pod gets a `ListenerFailed` Warning event and status naming
/// the address, HTTP keeps working (the same ingress container), and the
/// listener is retried until it comes up once the port is free.
async fn a_taken_listen_port_is_reported_and_retried(backend: Backend) {
    let docker = docker().await;
    let server = TestServer::start_on(backend, "tcp-taken").await;
    let (status, body) = server
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\naccess: {host: web.tcp.test}\n",
        )
        .await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged("web", T).await;
    wait_for("web to be routed", T, || async {
        matches!(server.via_ingress("web.tcp.test").await, Ok((200, _))).then_some(())
    })
    .await;
    let ingress_name = format!("dub-{}-ingress", server.instance);
    let ingress = container_id(&docker, &ingress_name).await.expect("the HTTP ingress");

    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{taken}");
    let (status, body) = server.put_yaml("echo", &echo(1, &listen)).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    let event = server.wait_event("echo", "ListenerFailed", Some("Warning")).await;
    let message = event["message"].as_str().unwrap_or_default();
    assert!(message.contains(&listen), "the address is named: {event}");
    assert!(message.contains("could not start"), "{event}");
    let pod = wait_for("the pod's status to say ListenerFailed", T, || async {
        let (_, pod) = server.get_json("/v1/pods/echo").await;
        (pod["status"]["reason"] == "ListenerFailed").then_some(pod)
    })
    .await;
    let status_message = pod["status"]["message"].as_str().unwrap_or_default();
    assert!(status_message.contains(&listen), "{pod}");
    // The ingress's view lists the listener, not serving, with why.
    let (_, ingress_view) = server.get_json("/v1/ingress").await;
    let entry = ingress_view["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["listen"] == listen.as_str()).cloned())
        .unwrap_or_else(|| panic!("/v1/ingress lists the listener: {ingress_view}"));
    assert_eq!(entry["pod"], "echo", "{entry}");
    assert_eq!(entry["port"], ECHO_PORT, "{entry}");
    assert_eq!(entry["serving"], false, "{entry}");
    assert!(entry["error"].as_str().is_some_and(|e| !e.is_empty()), "{entry}");
    assert_eq!(pod["status"]["phase"], "Failing", "{pod}");
    // HTTP is untouched.
    for _ in 0..5 {
        assert!(matches!(server.via_ingress("web.tcp.test").await, Ok((200, _))));
    }
    // Retried with back-off, reported once: wait for a second try in the log.
    wait_for("a second try", T, || async {
        (server.log().matches("a TCP listener could not start").count() >= 2).then_some(())
    })
    .await;
    let failed_events = server
        .events("echo")
        .await
        .into_iter()
        .filter(|e| e["reason"] == "ListenerFailed")
        .count();
    assert_eq!(failed_events, 1, "one event per failure, not per try");

    // The port is freed: the next try starts the listener.
    drop(holder);
    let freed = Instant::now();
    wait_for("the listener to answer once the port is free", T, || async {
        talk(taken).await.ok()
    })
    .await;
    eprintln!(
        "{backend}: the listener came up {:?} after the port was freed",
        freed.elapsed()
    );
    server.wait_event("echo", "ListenerStarted", Some("Normal")).await;
    wait_for("/v1/ingress to list the listener as serving", T, || async {
        let (_, view) = server.get_json("/v1/ingress").await;
        view["listeners"]
            .as_array()?
            .iter()
            .any(|l| l["listen"] == listen.as_str() && l["serving"] == true && l["error"].is_null())
            .then_some(())
    })
    .await;
    wait_for("the status to clear", T, || async {
        let (_, pod) = server.get_json("/v1/pods/echo").await;
        (pod["status"]["reason"].is_null() && pod["status"]["phase"] == "Running").then_some(())
    })
    .await;
    assert_eq!(
        container_id(&docker, &ingress_name).await.as_deref(),
        Some(ingress.as_str()),
        "the HTTP ingress container was replaced"
    );
    assert!(matches!(server.via_ingress("web.tcp.test").await, Ok((200, _))));

    // A listener that keeps exiting is replaced at once the first time, then
    // with back-off (not in a busy loop), and its pod says so.
    let listener_name = format!("dub-{}-tcp-{taken}", server.instance);
    let mut killed: Vec<String> = Vec::new();
    for _ in 0..3 {
        // The one the ingress says serves (started and checked), not one
        // it is still starting: that would be a failed start, not an exit.
        let id = wait_for("a new listener serving", T, || async {
            let (_, view) = server.get_json("/v1/ingress").await;
            let id = view["listeners"]
                .as_array()?
                .iter()
                .find(|l| l["listen"] == listen.as_str() && l["serving"] == true)?["container"]
                .as_str()?
                .to_string();
            (!killed.contains(&id)).then_some(id)
        })
        .await;
        docker
            .kill_container(&id, None::<bollard::query_parameters::KillContainerOptions>)
            .await
            .expect("kill the listener");
        killed.push(id);
    }
    let event = wait_for("a ListenerFailed event saying it keeps exiting", T, || async {
        server.events("echo").await.into_iter().find(|e| {
            e["reason"] == "ListenerFailed" && e["message"].as_str().is_some_and(|m| m.contains("keeps exiting"))
        })
    })
    .await;
    assert!(
        event["message"].as_str().unwrap_or_default().contains(&listen),
        "{event}"
    );
    assert!(
        server.log().contains("a TCP listener keeps exiting"),
        "the back-off is in the log"
    );
    wait_for("the listener to answer after the kills", T, || async {
        talk(taken).await.ok()
    })
    .await;
    wait_for("a second ListenerStarted event", T, || async {
        let started = server
            .events("echo")
            .await
            .into_iter()
            .filter(|e| e["reason"] == "ListenerStarted")
            .count();
        (started >= 2).then_some(())
    })
    .await;

    // A listener no pod wants leaves no endpoints directory behind.
    let dir = server.data_path.join("ingress-tcp").join(taken.to_string());
    assert!(dir.is_dir(), "{} is the listener's endpoints directory", dir.display());
    let out = server.dubectl(&["delete", "pod", "echo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("the listener and its directory to go", T, || async {
        (container_id(&docker, &listener_name).await.is_none() && !dir.exists()).then_some(())
    })
    .await;
}

dubernetes_tests::on_both_backends!(
    a_tcp_client_reaches_ready_replicas_only,
    bad_expose_is_refused,
    an_expose_change_touches_only_its_own_listener,
    a_taken_listen_port_is_reported_and_retried
);

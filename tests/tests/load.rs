//! A bounded load test on loopback: 50 concurrent clients mixing apply, get,
//! scale and delete for 30 s (`DUBERNETES_LOAD_SECONDS` to change). No answer
//! may be a 5xx, and the final state must match the last acknowledged writes.
//!
//! Each client owns two pods (apply with a new value, get, delete, re-create:
//! the last acknowledged write of each is known exactly), and all clients
//! scale five shared pods between 0 and 1 replicas with conditional writes
//! (`If-Match`, retried on 409): for those, the stored replicas must be what
//! the write that produced the final generation said.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dubernetes_tests::TestServer;
use tokio::sync::Mutex;

const CLIENTS: usize = 50;
const HOT: usize = 5;

fn spec(name: &str, replicas: u32, value: u64) -> serde_json::Value {
    serde_json::json!({"name": name, "image": "dubernetes/whoami:v1", "replicas": replicas, "env": {"V": value.to_string()}})
}

#[derive(Default)]
struct Stats {
    requests: u64,
    by_status: HashMap<u16, u64>,
    errors: Vec<String>,
}

/// What the store should hold: owned pods' last acknowledged value (None: deleted),
/// and for hot pods, generation -> replicas of the acknowledged write that made it.
/// Records an acknowledged write into [`Expected`].
type Record = Box<dyn FnOnce(&mut Expected) + Send>;

#[derive(Default)]
struct Expected {
    owned: HashMap<String, Option<u64>>,
    hot: HashMap<String, HashMap<i64, u64>>,
}

#[tokio::test]
async fn fifty_clients_mixed_writes_no_5xx_consistent_end_state() {
    let seconds: u64 = std::env::var("DUBERNETES_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let server = Arc::new(TestServer::start("load").await);
    let expected = Arc::new(Mutex::new(Expected::default()));
    for h in 0..HOT {
        let name = format!("hot-{h}");
        let response = server
            .http
            .put(format!("{}/v1/pods/{name}", server.url))
            .json(&spec(&name, 0, 0))
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 201);
        expected.lock().await.hot.entry(name).or_default().insert(1, 0);
    }
    let stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (server, stats, expected) = (server.clone(), stats.clone(), expected.clone());
            tokio::spawn(async move {
                let mut seed = (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut next = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let roll = next() % 100;
                    let own = format!("c{c}-{}", next() % 2);
                    let (status, body, record): (u16, serde_json::Value, Option<Record>) = if roll < 35 {
                        let r = server.http.get(format!("{}/v1/pods/{own}", server.url)).send().await;
                        let (s, b) = read(r).await;
                        (s, b, None)
                    } else if roll < 45 {
                        let r = server.http.get(format!("{}/v1/pods", server.url)).send().await;
                        let (s, b) = read(r).await;
                        (s, Some(b).filter(|_| s != 200).unwrap_or_default(), None)
                    } else if roll < 70 {
                        let r = server
                            .http
                            .put(format!("{}/v1/pods/{own}", server.url))
                            .json(&spec(&own, 0, n))
                            .send()
                            .await;
                        let (s, b) = read(r).await;
                        let name = own.clone();
                        (
                            s,
                            b,
                            Some(Box::new(move |e: &mut Expected| {
                                e.owned.insert(name, Some(n));
                            })),
                        )
                    } else if roll < 82 {
                        let r = server.http.delete(format!("{}/v1/pods/{own}", server.url)).send().await;
                        let (s, b) = read(r).await;
                        let name = own.clone();
                        let s = if s == 404 { 200 } else { s };
                        (
                            s,
                            b,
                            Some(Box::new(move |e: &mut Expected| {
                                e.owned.insert(name, None);
                            })),
                        )
                    } else {
                        // Scale a shared pod: read, then write conditionally on what was read.
                        let hot = format!("hot-{}", next() % HOT as u64);
                        let r = server.http.get(format!("{}/v1/pods/{hot}", server.url)).send().await;
                        let (s, pod) = read(r).await;
                        if s != 200 {
                            (s, pod, None)
                        } else {
                            let generation = pod["generation"].as_i64().unwrap_or(0);
                            let replicas = next() % 2;
                            let mut desired = pod["spec"].clone();
                            desired["replicas"] = replicas.into();
                            let r = server
                                .http
                                .put(format!("{}/v1/pods/{hot}", server.url))
                                .header("if-match", format!("\"{generation}\""))
                                .json(&desired)
                                .send()
                                .await;
                            let (s, b) = read(r).await;
                            let new_generation = b["pod"]["generation"].as_i64();
                            let s = if s == 409 { 200 } else { s };
                            let record: Option<Record> = new_generation.map(|g| {
                                Box::new(move |e: &mut Expected| {
                                    e.hot.entry(hot).or_default().insert(g, replicas);
                                }) as Record
                            });
                            (s, b, record)
                        }
                    };
                    {
                        let mut stats = stats.lock().await;
                        stats.requests += 1;
                        *stats.by_status.entry(status).or_default() += 1;
                        if !(200..300).contains(&status) && status != 404 {
                            stats.errors.push(format!("{status}: {body}"));
                        }
                    }
                    if (200..300).contains(&status)
                        && let Some(record) = record
                    {
                        record(&mut *expected.lock().await);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    let elapsed = started.elapsed();
    let stats = stats.lock().await;
    let rate = stats.requests as f64 / elapsed.as_secs_f64();
    eprintln!(
        "load: {} requests in {:.1}s = {rate:.0} req/s from {CLIENTS} clients; statuses {:?}",
        stats.requests,
        elapsed.as_secs_f64(),
        stats.by_status
    );
    let server_errors: u64 = stats.by_status.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum();
    assert_eq!(
        server_errors,
        0,
        "5xx answers: {:?}",
        &stats.errors[..stats.errors.len().min(5)]
    );
    assert!(
        stats.errors.is_empty(),
        "unexpected answers: {:?}",
        &stats.errors[..stats.errors.len().min(5)]
    );
    assert!(stats.requests > 0);

    // The end state is the last acknowledged writes.
    let expected = expected.lock().await;
    for (name, want) in &expected.owned {
        let (status, pod) = server.get_json(&format!("/v1/pods/{name}")).await;
        let got = (status == 200).then(|| pod["spec"]["env"]["V"].as_str().and_then(|v| v.parse::<u64>().ok()));
        assert_eq!(got.flatten(), *want, "{name}");
    }
    for (name, by_generation) in &expected.hot {
        let (_, pod) = server.get_json(&format!("/v1/pods/{name}")).await;
        let generation = pod["generation"].as_i64().expect("generation");
        let replicas = pod["spec"]["replicas"].as_u64().expect("replicas");
        assert_eq!(
            by_generation.get(&generation).copied(),
            Some(replicas),
            "{name}: generation {generation} has {replicas} replicas, not what its write said"
        );
    }
    assert!(!server.log().contains("database is locked"));
}

async fn read(response: reqwest::Result<reqwest::Response>) -> (u16, serde_json::Value) {
    match response {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or_default())
        }
        Err(e) => (599, serde_json::Value::String(format!("transport error: {e}"))),
    }
}

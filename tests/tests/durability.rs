//! Nothing acknowledged is lost: the store survives `kill -9` in the middle of
//! writes, a corrupted database is a clear start-up error (never replaced),
//! and an online backup restores.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use dubernetes_tests::{TestServer, binary, stderr};
use tokio::sync::Mutex;

fn spec(name: &str, value: u64) -> serde_json::Value {
    serde_json::json!({"name": name, "image": "dubernetes/whoami:v1", "replicas": 0, "env": {"V": value.to_string()}})
}

/// Per pod: the last acknowledged value (`Some(None)`: deleted) and the write
/// in flight when the server died, if any (it may or may not have landed).
#[derive(Clone, Copy, Default, Debug)]
struct Slot {
    acked: Option<Option<u64>>,
    in_flight: Option<Option<u64>>,
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut server = TestServer::start("kill9").await;
    let url = server.url.clone();
    let http = server.http.clone();
    let slots: Arc<Mutex<Vec<Slot>>> = Arc::new(Mutex::new(vec![Slot::default(); 8]));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, http, slots) = (url.clone(), http.clone(), slots.clone());
            tokio::spawn(async move {
                for n in 1u64.. {
                    let slot = w * 2 + (n as usize % 2);
                    let name = format!("p{slot}");
                    let value = (n % 7 != 0).then_some(n);
                    slots.lock().await[slot].in_flight = Some(value);
                    let request = match value {
                        None => http.delete(format!("{url}/v1/pods/{name}")),
                        Some(v) => http.put(format!("{url}/v1/pods/{name}")).json(&spec(&name, v)),
                    };
                    // A failed send means the server is gone: the write stays "in flight".
                    let Ok(response) = request.send().await else { break };
                    let status = response.status().as_u16();
                    assert!(status < 500, "{name}: {status}");
                    if (200..300).contains(&status) || (status == 404 && value.is_none()) {
                        let mut slots = slots.lock().await;
                        slots[slot].acked = Some(value);
                        slots[slot].in_flight = None;
                    }
                }
            })
        })
        .collect();
    // Let some writes land, then pull the plug while others are in flight.
    dubernetes_tests::wait_for("some acknowledged writes", Duration::from_secs(30), || async {
        let slots = slots.lock().await;
        (slots.iter().filter(|s| matches!(s.acked, Some(Some(_)))).count() >= 6).then_some(())
    })
    .await;
    let pid = server.pid().expect("server runs").to_string();
    let kill = Command::new("kill").args(["-9", &pid]).status().expect("kill");
    assert!(kill.success());
    for writer in writers {
        writer.await.expect("writer");
    }
    server.kill9();
    server.start_again().await;

    let slots = slots.lock().await.clone();
    for (i, slot) in slots.iter().enumerate() {
        let (status, pod) = server.get_json(&format!("/v1/pods/p{i}")).await;
        assert!(status == 200 || status == 404, "{status}");
        let got = (status == 200).then(|| {
            pod["spec"]["env"]["V"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("value")
        });
        let acked = slot.acked.unwrap_or(None);
        assert!(
            got == acked || slot.in_flight == Some(got),
            "p{i}: found {got:?}, but the last acknowledged write was {acked:?} (in flight: {:?})",
            slot.in_flight
        );
    }
    assert!(!server.log().contains("database is locked"));
}

#[test]
fn a_corrupt_database_is_a_clear_start_error_and_is_left_alone() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let db = data_dir.path().join("dubernetes.db");
    // A valid SQLite header followed by garbage: opens, then fails the integrity check.
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(&db, &bytes).expect("write");
    for content in [bytes.clone(), b"not a database at all, just text".repeat(200)] {
        std::fs::write(&db, &content).expect("write");
        let out = Command::new(binary("dubernetes-server"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--token",
                "a-token-for-this-test-only",
                "--instance",
                "t-corrupt",
            ])
            .arg("--data-dir")
            .arg(data_dir.path())
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("unreadable or corrupted") && err.contains("backup"),
            "{err}"
        );
        assert_eq!(std::fs::read(&db).expect("read"), content, "the file was modified");
    }
}

#[tokio::test]
async fn online_backup_restores() {
    let server = TestServer::start("backup").await;
    for i in 0..5 {
        let response = server
            .http
            .put(format!("{}/v1/pods/p{i}", server.url))
            .json(&spec(&format!("p{i}"), i))
            .send()
            .await
            .expect("put");
        assert_eq!(response.status(), 201);
    }
    // Back up while the server runs and another client writes.
    let writer = {
        let (url, http) = (server.url.clone(), server.http.clone());
        tokio::spawn(async move {
            for n in 0..30u64 {
                let _ = http
                    .put(format!("{url}/v1/pods/busy"))
                    .json(&spec("busy", n))
                    .send()
                    .await;
            }
        })
    };
    let backup_dir = tempfile::tempdir().expect("tempdir");
    let file = backup_dir.path().join("copy.db");
    let out = Command::new(binary("dubernetes-server"))
        .arg("--data-dir")
        .arg(server.data_dir.path())
        .arg("backup")
        .arg(&file)
        .output()
        .expect("backup");
    assert!(out.status.success(), "{}", stderr(&out));
    writer.await.expect("writer");
    // A second backup to the same file is refused, not overwritten.
    let again = Command::new(binary("dubernetes-server"))
        .arg("--data-dir")
        .arg(server.data_dir.path())
        .arg("backup")
        .arg(&file)
        .output()
        .expect("backup");
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));

    // Restore: a new data dir with the copy as its database. The copy is the
    // store of another instance's server (its own store id): the ingress this
    // instance's first start made belongs to the store that is replaced, so
    // it goes first (else the restored store rightly refuses to start).
    let mut restored = TestServer::start("restored").await;
    restored.stop();
    dubernetes_tests::purge_instance(&dubernetes_tests::docker().await, &restored.instance).await;
    std::fs::copy(&file, restored.data_dir.path().join("dubernetes.db")).expect("restore");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(restored.data_dir.path().join(format!("dubernetes.db{suffix}")));
    }
    restored.start_again().await;
    let (_, pods) = restored.get_json("/v1/pods").await;
    let names: Vec<&str> = pods
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| n.starts_with('p'))
        .collect();
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
}

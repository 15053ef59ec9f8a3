//! Many writers at once end in a consistent state: every write is a
//! transaction, stale read-modify-writes get 409 `stale_generation`, and no
//! "database is locked" (or any 5xx) reaches a client.

use std::sync::Arc;

use dubernetes_tests::{TestServer, stderr, stdout};

fn spec(name: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "image": "dubernetes/whoami:v1", "replicas": 0, "env": {"V": value}})
}

#[tokio::test]
async fn generations_etags_and_conditional_writes() {
    let server = TestServer::start("occ").await;
    let url = format!("{}/v1/pods/web", server.url);
    let put = |body: serde_json::Value, if_match: Option<&str>| {
        let mut request = server.http.put(&url).json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    assert_eq!(put(spec("web", "1"), None).await.expect("put").status(), 201);
    let get = server.http.get(&url).send().await.expect("get");
    assert_eq!(get.headers().get("etag").map(|v| v.as_bytes()), Some(&b"\"1\""[..]));

    // Stale: 409 with the field, nothing written.
    let stale = put(spec("web", "2"), Some("\"0\"")).await.expect("put");
    assert_eq!(stale.status(), 409);
    let body: serde_json::Value = stale.json().await.expect("json");
    assert_eq!(
        (body["code"].as_str(), body["field"].as_str()),
        (Some("stale_generation"), Some("generation"))
    );
    let (_, pod) = server.get_json("/v1/pods/web").await;
    assert_eq!(
        (pod["generation"].as_i64(), pod["spec"]["env"]["V"].as_str()),
        (Some(1), Some("1"))
    );

    // Current: written. The query parameter works the same.
    assert_eq!(put(spec("web", "2"), Some("\"1\"")).await.expect("put").status(), 200);
    let response = server
        .http
        .put(format!("{url}?generation=1"))
        .json(&spec("web", "3"))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 409);
    let bad = put(spec("web", "3"), Some("yesterday")).await.expect("put");
    assert_eq!(bad.status(), 400);
    let bad: serde_json::Value = bad.json().await.expect("json");
    assert_eq!(bad["field"].as_str(), Some("If-Match"));

    // Conditional delete.
    let delete = server
        .http
        .delete(&url)
        .header("if-match", "\"1\"")
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.status(), 409);
    // A conditional write to a pod that does not exist is a 404.
    let missing = server
        .http
        .put(format!("{}/v1/pods/nope", server.url))
        .header("if-match", "\"1\"")
        .json(&spec("nope", "1"))
        .send()
        .await
        .expect("put");
    assert_eq!(missing.status(), 404);

    // dubectl scale sends the generation it read, and works.
    let out = server.dubectl(&["scale", "pod", "web", "--replicas", "0"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[tokio::test]
async fn concurrent_writers_never_see_a_5xx_and_lose_nothing() {
    let server = Arc::new(TestServer::start("concurrent").await);
    const WRITERS: usize = 16;
    const WRITES: usize = 15;
    // Every writer changes the same pod, and its own pod, over and over.
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut configured = 0u64;
                for i in 0..WRITES {
                    for name in ["shared".to_string(), format!("own-{w}")] {
                        let response = server
                            .http
                            .put(format!("{}/v1/pods/{name}", server.url))
                            .json(&spec(&name, &format!("{w}-{i}")))
                            .send()
                            .await
                            .expect("put");
                        let status = response.status().as_u16();
                        let body: serde_json::Value = response.json().await.unwrap_or_default();
                        assert!(status == 200 || status == 201, "{name}: {status} {body}");
                        if name == "shared" && body["outcome"] != "unchanged" {
                            configured += 1;
                        }
                    }
                }
                configured
            })
        })
        .collect();
    let mut changes = 0;
    for task in tasks {
        changes += task.await.expect("writer");
    }
    // Each acknowledged change of `shared` is exactly one generation: none lost.
    let (_, shared) = server.get_json("/v1/pods/shared").await;
    assert_eq!(shared["generation"].as_u64(), Some(changes), "{shared}");
    for w in 0..WRITERS {
        let (_, own) = server.get_json(&format!("/v1/pods/own-{w}")).await;
        assert_eq!(own["spec"]["env"]["V"], format!("{w}-{}", WRITES - 1));
        assert_eq!(own["generation"].as_u64(), Some(WRITES as u64));
    }

    // Read-modify-write races: of N writers that read the same generation,
    // exactly one wins; the others get 409 and change nothing.
    let (_, before) = server.get_json("/v1/pods/shared").await;
    let generation = before["generation"].as_i64().expect("generation");
    let racers: Vec<_> = (0..8)
        .map(|r| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .http
                    .put(format!("{}/v1/pods/shared", server.url))
                    .header("if-match", format!("\"{generation}\""))
                    .json(&spec("shared", &format!("race-{r}")))
                    .send()
                    .await
                    .expect("put")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.expect("racer"));
    }
    statuses.sort();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    let (_, after) = server.get_json("/v1/pods/shared").await;
    assert_eq!(after["generation"].as_i64(), Some(generation + 1));
    assert!(!server.log().contains("database is locked"));
}

//! Bad input bounces with a 4xx that names the field, and changes nothing.

use dubernetes_tests::{TestServer, stderr, stdout};

#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let server = TestServer::start("badinput").await;
    let (status, _) = server
        .put_yaml(
            "ok",
            "name: ok\nimage: dubernetes/whoami:v1\nreplicas: 0\naccess: {host: ok.local}\n",
        )
        .await;
    assert_eq!(status, 201);
    let before = server.desired_state().await;

    let cases: &[(&str, &str, &str, u16, &str)] = &[
        (
            "ok",
            "application/yaml",
            "name: ok\nimage: x\nreplica: 3\n",
            400,
            "unknown field `replica`",
        ),
        (
            "ok",
            "application/yaml",
            "name: ok\nimage: x\naccess: {host: \"a.com; include /etc/passwd\"}\n",
            422,
            "access.host",
        ),
        (
            "ok",
            "application/yaml",
            "name: ok\nimage: x\naccess: {host: \"a.com\\n}\"}\n",
            422,
            "access.host",
        ),
        (
            "ok",
            "application/yaml",
            "name: ok\nimage: \"UPPER CASE\"\n",
            422,
            "image",
        ),
        (
            "ok",
            "application/yaml",
            "name: ok\nimage: x\nreplicas: 100000\n",
            422,
            "replicas",
        ),
        (
            "ok",
            "application/yaml",
            "name: ok\nimage: x\nreplicas: -1\n",
            400,
            "replicas",
        ),
        ("ok", "application/yaml", "name: other\nimage: x\n", 400, "name"),
        ("ok", "application/yaml", "", 400, "empty"),
        ("ok", "text/plain", "name: ok\nimage: x\n", 415, "application/json"),
        (
            "ok",
            "application/json",
            "{\"name\": \"ok\", \"image\": \"x\", \"extra\": 1}",
            400,
            "unknown field `extra`",
        ),
        ("ok", "application/json", "{not json", 400, "invalid JSON"),
    ];
    for (name, content_type, body, want_status, want_text) in cases {
        let response = server
            .http
            .put(format!("{}/v1/pods/{name}", server.url))
            .header("content-type", *content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("PUT");
        let status = response.status().as_u16();
        let json: serde_json::Value = response.json().await.expect("JSON error body");
        assert_eq!(status, *want_status, "{body:?}: {json}");
        let message = json["message"].as_str().unwrap_or_default();
        let fields = json["fields"].to_string();
        assert!(json["code"].is_string(), "{json}");
        assert!(
            message.contains(want_text) || fields.contains(want_text),
            "{body:?}: {json}"
        );
    }
    // Path traversal in a name never matches a route or a pod.
    let (status, _) = server.get_json("/v1/pods/..%2F..%2Fetc").await;
    assert_eq!(status, 404);

    // A second pod may not take a host another pod has.
    let (status, body) = server
        .put_yaml("thief", "name: thief\nimage: x\naccess: {host: ok.local}\n")
        .await;
    assert_eq!(status, 409, "{body}");

    let after = server.desired_state().await;
    assert_eq!(before, after, "a rejected request changed state");
}

#[tokio::test]
async fn dubectl_reports_errors_with_the_servers_message() {
    let server = TestServer::start("cli-errors").await;
    let file = server.data_dir.path().join("typo.yaml");
    std::fs::write(&file, "name: a\nimage: b\nreplica: 3\n").expect("write");
    let out = server.dubectl(&["apply", "-f", file.to_str().expect("utf8")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown field `replica`") && err.contains("line 3"),
        "{err}"
    );

    let out = server.dubectl(&["delete", "pod", "missing"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pod \"missing\" not found"), "{}", stderr(&out));

    let out = std::process::Command::new(dubernetes_tests::binary("dubectl"))
        .args(["--server", "http://127.0.0.1:9", "get", "pods"])
        .output()
        .expect("dubectl");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("http://127.0.0.1:9") && stderr(&out).contains("dubernetes-server"),
        "{}",
        stderr(&out)
    );

    let out = server.dubectl(&["version"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("Server Version"), "{}", stdout(&out));
}

//! Generic secrets and private registries, on the real engine: a replica's
//! env and files hold the value while no API answer, event, log line or
//! store file does; replacing a secret rolls the pod; the same on
//! PostgreSQL and on the swarm backend. A real registry (Debian's
//! `docker-registry`, htpasswd auth, on loopback) serves a pushed image
//! only with the pod's `image_pull_secret`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use dubernetes_core::Backend;
use dubernetes_tests::{
    PgCluster, TestServer, WHOAMI_V1, container_file, docker, ensure_swarm, free_port, instance_name, stderr, stdout,
    wait_for,
};
use futures::TryStreamExt as _;

const CONVERGE: Duration = Duration::from_secs(90);

/// Every API answer a client can read about pods, secrets and events.
async fn api_views(server: &TestServer, pod: &str) -> String {
    let mut all = String::new();
    for path in [
        "/v1/pods".to_string(),
        format!("/v1/pods/{pod}"),
        format!("/v1/pods/{pod}/revisions"),
        "/v1/secrets".to_string(),
        "/v1/events?limit=1000".to_string(),
        "/v1/openapi.json".to_string(),
    ] {
        let response = server
            .http
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .expect("GET");
        all.push_str(&response.text().await.expect("body"));
    }
    for args in [
        vec!["get", "pods", "-o", "yaml"],
        vec!["get", "pod", pod, "-o", "json"],
        vec!["describe", "pod", pod],
        vec!["get", "secrets", "-o", "yaml"],
        vec!["get", "secrets"],
    ] {
        let out = server.dubectl(&args);
        all.push_str(&stdout(&out));
        all.push_str(&stderr(&out));
    }
    all
}

/// The bytes of every file under `dir` (the store, its WAL, the log) but the key file.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n != dubernetes_core::files::SECRETS_KEY_FILE)
            {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn env_of(docker: &Docker, id: &str) -> Vec<String> {
    docker
        .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("inspect")
        .config
        .and_then(|c| c.env)
        .unwrap_or_default()
}

/// A text file of a container.
async fn file_of(docker: &Docker, id: &str, path: &str) -> String {
    String::from_utf8(container_file(docker, id, path).await).expect("a text file")
}

fn pod_yaml(name: &str) -> String {
    format!(
        "name: {name}\nimage: {WHOAMI_V1}\nenv:\n  PLAIN: visible\n  DB_PASSWORD: {{secret: db, key: password}}\n\
         secret_files:\n  - {{secret: db, path: /run/secrets/db}}\n"
    )
}

/// Creates the secret `db` (password from a literal, `cert` from a file), applies a
/// pod using it as env and files, and checks the replica holds both; returns its container.
async fn create_and_use(server: &TestServer, docker: &Docker, password: &str, file_value: &str) -> String {
    let file = server.data_dir.path().join("cert.txt");
    std::fs::write(&file, file_value).expect("write");
    let out = server.dubectl(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={password}"),
        &format!("--from-file=cert={}", file.display()),
    ]);
    assert!(out.status.success(), "create secret: {}", stderr(&out));
    assert!(stdout(&out).contains("secret/db created"), "{}", stdout(&out));
    std::fs::remove_file(&file).expect("rm");
    server.apply_file(&pod_yaml("app"));
    server.wait_converged("app", CONVERGE).await;
    let id = server.running_container("app", &[]).await;
    let env = env_of(docker, &id).await;
    assert!(env.contains(&format!("DB_PASSWORD={password}")), "{env:?}");
    assert!(env.contains(&"PLAIN=visible".to_string()), "{env:?}");
    assert_eq!(file_of(docker, &id, "/run/secrets/db/password").await, password);
    assert_eq!(file_of(docker, &id, "/run/secrets/db/cert").await, file_value);
    // A file's value is never in the container's env or config.
    let inspect = docker
        .inspect_container(&id, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("inspect");
    let inspected = serde_json::to_string(&inspect).expect("json");
    assert!(!inspected.contains(file_value), "a file's value is in docker inspect");
    id
}

#[tokio::test]
async fn generic_secrets_reach_env_and_files_and_nothing_else() {
    let docker = docker().await;
    let server = TestServer::start("secrets").await;
    let password = "pw-7Hq2-unique-value";
    let file_value = "file-Zr81-unique-value";
    let first = create_and_use(&server, &docker, password, file_value).await;

    // A pod naming a missing secret or key is refused, naming the field.
    for (uses, field) in [
        ("env: {X: {secret: db, key: nope}}", "env.X.key"),
        ("secret_files: [{secret: none, path: /s}]", "secret_files[0].secret"),
    ] {
        let (status, body) = server
            .put_yaml("bad", &format!("name: bad\nimage: {WHOAMI_V1}\n{uses}\n"))
            .await;
        assert_eq!((status, &body["field"]), (422, &serde_json::json!(field)), "{body}");
    }
    // A bad value is refused without being quoted.
    let out = server.dubectl(&[
        "create",
        "secret",
        "generic",
        "bad",
        "--from-literal=a/b=leaky-value-91",
    ]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("leaky-value-91"), "{}", stderr(&out));

    // Deleting a secret in use is refused.
    let out = server.dubectl(&["delete", "secret", "db"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("app"), "{}", stderr(&out));

    // Replacing it rolls the pod: a new revision whose replica holds the new value.
    let (_, before) = server.get_json("/v1/pods/app").await;
    let new_password = "pw-new-Kx4-unique-value";
    let out = server.dubectl(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={new_password}"),
        &format!("--from-literal=cert={file_value}"),
        "--replace",
    ]);
    assert!(out.status.success(), "replace: {}", stderr(&out));
    let rolled = wait_for("the pod to roll to a new revision", CONVERGE, || async {
        let (_, pod) = server.get_json("/v1/pods/app").await;
        let s = &pod["status"];
        (pod["generation"] != before["generation"]
            && s["revision_number"].as_i64() > before["status"]["revision_number"].as_i64()
            && s["observed_generation"] == pod["generation"]
            && s["ready_replicas"] == s["desired_replicas"]
            && s["updated_replicas"] == s["desired_replicas"]
            && s["current_replicas"] == s["desired_replicas"])
            .then_some(pod)
    })
    .await;
    let second = server.running_container("app", std::slice::from_ref(&first)).await;
    assert!(
        env_of(&docker, &second)
            .await
            .contains(&format!("DB_PASSWORD={new_password}"))
    );
    assert_eq!(
        file_of(&docker, &second, "/run/secrets/db/password").await,
        new_password
    );
    // An unchanged apply of the same file changes nothing (the versions are the server's).
    let out = server.dubectl(&[
        "apply",
        "-f",
        server.data_dir.path().join("pod.yaml").to_str().expect("path"),
    ]);
    assert!(stdout(&out).contains("unchanged"), "{}", stdout(&out));
    assert_eq!(
        server.get_json("/v1/pods/app").await.1["generation"],
        rolled["generation"]
    );

    // No value in any answer, the log, or any file of the data dir but the key.
    let views = api_views(&server, "app").await;
    assert!(views.contains("DB_PASSWORD") && views.contains("password"), "{views}");
    for value in [password, new_password, file_value] {
        assert!(!views.contains(value), "{value} is in an API answer");
        assert!(!server.log().contains(value), "{value} is in the server log");
    }
    let files = files_under(server.data_dir.path());
    assert!(
        files.iter().any(|(p, _)| p.to_string_lossy().ends_with("-wal")),
        "the WAL is checked"
    );
    for (path, bytes) in &files {
        // The bound secret files hold the values by design (the replica reads them).
        if path
            .to_string_lossy()
            .contains(dubernetes_core::files::SECRET_FILES_DIR)
        {
            continue;
        }
        for value in [password, new_password, file_value] {
            assert!(!contains(bytes, value), "{value} is in {}", path.display());
        }
    }

    // Deleting the pod frees the secret.
    let out = server.dubectl(&["delete", "pod", "app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.dubectl(&["delete", "secret", "db"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A binary file (a keystore: a NUL, bytes that are no UTF-8) goes into a
/// secret with `--from-file` and reaches the replica's file byte for byte;
/// only an env value must be text: a pod taking a binary key as env is
/// refused at apply, and so is a replace that would make a key a pod uses
/// as env binary, both naming the key and never quoting the value.
#[tokio::test]
async fn binary_values_reach_files_and_env_takes_text_only() {
    let docker = docker().await;
    let server = TestServer::start("secbin").await;
    let marker = "bin-Pq7-unique-marker";
    let mut keystore: Vec<u8> = vec![0x00, 0xff, 0xfe, 0xfd];
    keystore.extend_from_slice(marker.as_bytes());
    keystore.extend((0..=255u8).rev());
    assert!(std::str::from_utf8(&keystore).is_err());
    let file = server.data_dir.path().join("keystore.p12");
    std::fs::write(&file, &keystore).expect("write");
    let out = server.dubectl(&[
        "create",
        "secret",
        "generic",
        "bin",
        &format!("--from-file=keystore={}", file.display()),
        "--from-literal=password=pw-Bn3-unique-value",
    ]);
    assert!(out.status.success(), "create secret: {}", stderr(&out));
    assert!(stdout(&out).contains("keys keystore,password"), "{}", stdout(&out));
    std::fs::remove_file(&file).expect("rm");

    // Env from the binary key: refused at apply, naming the variable and the key.
    let env_from = |key: &str| {
        format!(
            "name: store\nimage: {WHOAMI_V1}\nenv:\n  STORE_PASSWORD: {{secret: bin, key: {key}}}\n\
             secret_files:\n  - {{secret: bin, path: /run/secrets/bin}}\n"
        )
    };
    let (status, body) = server.put_yaml("store", &env_from("keystore")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "env.STORE_PASSWORD", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("keystore") && message.contains("UTF-8"), "{body}");
    assert!(!body.to_string().contains(marker), "{body}");
    let (status, _) = server.get_json("/v1/pods/store").await;
    assert_eq!(status, 404, "a refused apply stores nothing");

    // Env from the text key and the binary file: the replica's file is the bytes.
    server.apply_file(&env_from("password"));
    server.wait_converged("store", CONVERGE).await;
    let id = server.running_container("store", &[]).await;
    assert_eq!(
        container_file(&docker, &id, "/run/secrets/bin/keystore").await,
        keystore,
        "the file holds the keystore byte for byte"
    );
    assert!(
        env_of(&docker, &id)
            .await
            .contains(&"STORE_PASSWORD=pw-Bn3-unique-value".to_string())
    );

    // A replace that makes the env's key binary is refused (the pod keeps running).
    let (_, before) = server.get_json("/v1/secrets/bin").await;
    let binary_password = server.data_dir.path().join("password.bin");
    std::fs::write(&binary_password, b"pw\xff\x00").expect("write");
    let out = server.dubectl(&[
        "create",
        "secret",
        "generic",
        "bin",
        &format!("--from-file=password={}", binary_password.display()),
        &format!("--from-file=keystore={}", binary_password.display()),
        "--replace",
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("binary_data.password") && err.contains("store") && err.contains("STORE_PASSWORD"),
        "{err}"
    );
    let (_, secret) = server.get_json("/v1/secrets/bin").await;
    assert_eq!(
        secret["version"], before["version"],
        "the refused replace stored nothing: {secret}"
    );

    // The raw API: base64 is checked, and a key is given once.
    for (body, field) in [
        (
            serde_json::json!({"name": "raw", "type": "generic", "binary_data": {"k": "not base64!"}}),
            "binary_data.k",
        ),
        (
            serde_json::json!({"name": "raw", "type": "generic", "data": {"k": "v"}, "binary_data": {"k": "dg=="}}),
            "binary_data.k",
        ),
    ] {
        let response = server
            .http
            .post(format!("{}/v1/secrets", server.url))
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 422);
        let answer: serde_json::Value = response.json().await.expect("json");
        assert_eq!(answer["field"], field, "{answer}");
    }

    // The bytes are in no answer, log line or store file.
    let views = api_views(&server, "store").await;
    assert!(views.contains("keystore"), "{views}");
    assert!(!views.contains(marker), "the keystore is in an API answer");
    assert!(!server.log().contains(marker), "the keystore is in the server log");
    for (path, bytes) in files_under(server.data_dir.path()) {
        if path
            .to_string_lossy()
            .contains(dubernetes_core::files::SECRET_FILES_DIR)
        {
            continue;
        }
        assert!(!contains(&bytes, marker), "the keystore is in {}", path.display());
    }
}

#[tokio::test]
async fn generic_secrets_on_postgres() {
    let docker = docker().await;
    let url = PgCluster::shared().new_database().await;
    let key_dir = tempfile::tempdir().expect("tempdir");
    let key = key_dir.path().join("secrets.key");
    let key = key.to_str().expect("path");
    let server = TestServer::start_shared("pgsec", &instance_name("pgsec"), &url, &["--secrets-key-file", key]).await;
    wait_for("the server to lead", Duration::from_secs(20), || async {
        (server.leads().await == Some(true)).then_some(())
    })
    .await;
    let password = "pg-pw-Jd9-unique-value";
    create_and_use(&server, &docker, password, "pg-file-Qw2-unique-value").await;
    // The database holds ciphertext only.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect");
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, sealed FROM data_secrets")
        .fetch_all(&pool)
        .await
        .expect("select");
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].1.contains(password));
    let everything: Vec<(String,)> = sqlx::query_as("SELECT spec FROM pods")
        .fetch_all(&pool)
        .await
        .expect("pods");
    assert!(everything.iter().all(|(s,)| !s.contains(password)));
    pool.close().await;
}

#[tokio::test]
async fn generic_secrets_on_swarm() {
    ensure_swarm();
    let docker = docker().await;
    let server = TestServer::start_on(Backend::Swarm, "secrets").await;
    let password = "sw-pw-Lm5-unique-value";
    create_and_use(&server, &docker, password, "sw-file-Vb3-unique-value").await;
    // The service spec carries the env value (as Swarm keeps env), never the file's.
    assert!(!server.log().contains(password));
}

/// Debian's `docker-registry` with htpasswd auth on a free loopback port,
/// killed when dropped (the test failing or not).
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    async fn start(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap_or_else(|e| panic!("htpasswd (apache2-utils; scripts/test.sh installs it): {e}"));
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  htpasswd:\n    realm: test\n    path: {root}/htpasswd\n",
            root = dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("docker-registry (Debian's package; scripts/test.sh installs it): {e}"));
        let registry = Registry { child, port, _dir: dir };
        let http = reqwest::Client::new();
        wait_for("the registry to answer", Duration::from_secs(20), || async {
            // 401 without credentials: up, and asking for them.
            http.get(format!("http://127.0.0.1:{port}/v2/"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 401)
                .map(|_| ())
        })
        .await;
        registry
    }
}

#[tokio::test]
async fn private_registry_pulls_with_the_pull_secret_only() {
    let docker = docker().await;
    let (user, password) = ("ci", "reg-pass-Tg6-unique-value");
    let registry = Registry::start(user, password).await;
    let server = TestServer::start("registry").await;
    let server_host = format!("127.0.0.1:{}", registry.port);
    let repo = format!("{server_host}/{}", server.instance);
    let image = format!("{repo}:v1");
    let credentials = DockerCredentials {
        username: Some(user.into()),
        password: Some(password.into()),
        serveraddress: Some(server_host.clone()),
        ..Default::default()
    };
    docker
        .tag_image(
            WHOAMI_V1,
            Some(
                bollard::query_parameters::TagImageOptionsBuilder::new()
                    .repo(&repo)
                    .tag("v1")
                    .build(),
            ),
        )
        .await
        .expect("tag");
    let pushed: Result<Vec<_>, _> = docker
        .push_image(
            &repo,
            Some(
                bollard::query_parameters::PushImageOptionsBuilder::new()
                    .tag("v1")
                    .build(),
            ),
            Some(credentials),
        )
        .try_collect()
        .await;
    pushed.expect("push to the registry");
    // Only the tag goes: the image stays as dubernetes/whoami:v1.
    docker
        .remove_image(&image, None::<bollard::query_parameters::RemoveImageOptions>, None)
        .await
        .expect("untag");
    let untag = Untag(image.clone());

    // Without credentials: the pull fails, says why, and --wait exits non-zero.
    let host = format!("{}.test", server.instance);
    let spec = |secret: bool| {
        format!(
            "name: private\nimage: {image}\naccess: {{host: {host}}}\n{}",
            if secret { "image_pull_secret: regcred\n" } else { "" }
        )
    };
    let file = server.data_dir.path().join("private.yaml");
    std::fs::write(&file, spec(false)).expect("spec");
    let out = server.dubectl(&[
        "apply",
        "-f",
        file.to_str().expect("path"),
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("ImagePullFailed") && stderr(&out).contains("unauthorized"),
        "{}",
        stderr(&out)
    );
    let (_, pod) = server.get_json("/v1/pods/private").await;
    assert_eq!(pod["status"]["reason"], "ImagePullFailed", "{pod}");
    server.wait_event("private", "ImagePullFailed", Some("Warning")).await;

    // With the pull secret: pulled, running, serving.
    let out = server.dubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={server_host}"),
        &format!("--docker-username={user}"),
        &format!("--docker-password={password}"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&file, spec(true)).expect("spec");
    let out = server.dubectl(&[
        "apply",
        "-f",
        file.to_str().expect("path"),
        "--wait",
        "--timeout",
        "90s",
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let (status, body) = wait_for("the pulled pod to serve", CONVERGE, || async {
        server.via_ingress(&host).await.ok().filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200, "{body}");

    // The password is in no answer, log line or store file.
    let views = api_views(&server, "private").await;
    assert!(views.contains("regcred"), "{views}");
    assert!(!views.contains(password), "the registry password is in an API answer");
    assert!(
        !server.log().contains(password),
        "the registry password is in the server log"
    );
    for (path, bytes) in files_under(server.data_dir.path()) {
        assert!(
            !contains(&bytes, password),
            "the registry password is in {}",
            path.display()
        );
    }

    // The swarm backend pulls with the same credentials (and gives them to
    // the service, as --with-registry-auth): `pull: always` makes it pull
    // although the engine now has the image.
    ensure_swarm();
    let swarm = TestServer::start_on(Backend::Swarm, "registry").await;
    let out = swarm.dubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={server_host}"),
        &format!("--docker-username={user}"),
        "--docker-password=wrong-password",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = format!("name: private\nimage: {image}\nimage_pull_secret: regcred\npull: always\n");
    let (status, body) = swarm.put_yaml("private", &yaml).await;
    assert!(status < 300, "{body}");
    wait_for("a refused pull on swarm", CONVERGE, || async {
        let (_, pod) = swarm.get_json("/v1/pods/private").await;
        (pod["status"]["reason"] == "ImagePullFailed"
            && pod["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("unauthorized")))
        .then_some(())
    })
    .await;
    let out = swarm.dubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={server_host}"),
        &format!("--docker-username={user}"),
        &format!("--docker-password={password}"),
        "--replace",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A registry secret's change rolls nothing: the next retry pulls with it.
    swarm.wait_converged("private", CONVERGE).await;
    assert!(
        !swarm.log().contains(password),
        "the registry password is in the swarm server's log"
    );
    drop(swarm);
    drop(untag);
    drop(registry);
}

/// Removes a pulled image tag when dropped.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        let image = self.0.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    if let Ok(docker) = Docker::connect_with_defaults() {
                        let _ = docker
                            .remove_image(
                                &image,
                                Some(
                                    bollard::query_parameters::RemoveImageOptionsBuilder::new()
                                        .force(true)
                                        .build(),
                                ),
                                None,
                            )
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

//! Never harm what already runs: a server that comes up on the wrong data
//! dir, a second server on the same data dir, or a second store for the same
//! instance refuses to start before it touches anything; taking containers
//! over is explicit and replaces none; an upgraded store adopts its own
//! unlabelled containers; the data dir lock survives no `kill -9`; the data
//! dir and its secrets are private. All on the real engine.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions,
};
use dubernetes_tests::{NGINX_LOCAL, TestServer, WHOAMI_V1, binary, docker, random_token, stderr, wait_for};

const T: Duration = Duration::from_secs(90);

fn pod(name: &str, replicas: u32) -> String {
    format!(
        "name: {name}\nimage: {WHOAMI_V1}\nreplicas: {replicas}\naccess:\n  host: {name}.local\nenv:\n  SECRET: s3cr3t\n"
    )
}

/// Every container of an instance, any role and state: id → (role, state).
async fn everything(docker: &Docker, instance: &str) -> BTreeMap<String, (String, String)> {
    let filters = HashMap::from([("label", vec![format!("io.dubernetes.instance={instance}")])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    docker
        .list_containers(Some(options))
        .await
        .expect("list containers")
        .into_iter()
        .map(|c| {
            let role = c
                .labels
                .as_ref()
                .and_then(|l| l.get("io.dubernetes.role").cloned())
                .unwrap_or_default();
            (
                c.id.unwrap_or_default(),
                (role, c.state.map(|s| s.to_string()).unwrap_or_default()),
            )
        })
        .collect()
}

/// The ids of a pod's replicas.
async fn replica_ids(docker: &Docker, instance: &str, pod: &str) -> Vec<String> {
    dubernetes_tests::containers(docker, instance, Some(pod))
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect()
}

/// Runs a server that must refuse to start; returns its output once it
/// exited, and how long that took. Fails the test if it keeps running.
fn refused_start(instance: &str, data_dir: &Path, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(binary("dubernetes-server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--token", &random_token()])
        .args(["--instance", instance])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--ingress-listen", "127.0.0.1:0", "--ingress-image", NGINX_LOCAL])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dubernetes-server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("the server did not refuse to start:\n{}", stderr(&out));
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "a synchronous poll of a child process, bounded by its deadline"
        )]
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "the server exited 0:\n{}", stderr(&out));
    (out, started.elapsed())
}

async fn version(server: &TestServer) -> serde_json::Value {
    let (status, v) = server.get_json("/v1/version").await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn apply_and_wait(server: &TestServer, name: &str, replicas: u32) {
    let (status, body) = server.put_yaml(name, &pod(name, replicas)).await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    server.wait_converged(name, T).await;
}

#[tokio::test]
async fn a_start_on_the_wrong_data_dir_is_refused_and_touches_nothing() {
    let docker = docker().await;
    let mut a = TestServer::start("wrongdir").await;
    apply_and_wait(&a, "web", 3).await;
    let store_id = version(&a).await["store_id"].as_str().expect("store id").to_string();
    let before = everything(&docker, &a.instance).await;
    assert_eq!(
        before.len(),
        5,
        "3 replicas, the ingress and the name responder: {before:?}"
    );
    a.stop();

    // A typo in --data-dir: a path that does not exist.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let typo = elsewhere.path().join("dubernetes-dta");
    let (out, _) = refused_start(&a.instance, &typo, &[]);
    let err = stderr(&out);
    for needle in [
        a.instance.as_str(),
        "5 container(s)",
        store_id.as_str(),
        &a.data_path.display().to_string(),
        "--data-dir",
        "--adopt-foreign",
        "Nothing was stopped, removed or created",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in:\n{err}");
    }
    assert!(!typo.exists(), "a refused start created its data dir");
    assert_eq!(
        everything(&docker, &a.instance).await,
        before,
        "a refused start changed containers"
    );

    // The right data dir: the same containers are adopted as they run.
    a.start_again().await;
    a.wait_converged("web", T).await;
    assert_eq!(
        everything(&docker, &a.instance).await,
        before,
        "the restart replaced containers"
    );
}

#[tokio::test]
async fn taking_over_with_adopt_foreign_keeps_every_container_and_then_manages_them() {
    let docker = docker().await;
    let mut a = TestServer::start("takeover").await;
    apply_and_wait(&a, "web", 3).await;
    let old_store = version(&a).await["store_id"].as_str().expect("id").to_string();
    let before = replica_ids(&docker, &a.instance, "web").await;
    a.stop();

    let b = TestServer::start_custom("takeover", Some(&a.instance), None, &["--adopt-foreign"], false).await;
    let v = version(&b).await;
    assert_ne!(v["store_id"].as_str(), Some(old_store.as_str()));
    assert_eq!(v["held_containers"], 3, "{v}");
    assert!(b.log().contains("adopted a container"), "{}", b.log());
    // Held: the pod is not in this store, so nothing may touch them. Applying
    // it makes them its replicas: the same revision, so none is replaced.
    apply_and_wait(&b, "web", 3).await;
    assert_eq!(
        replica_ids(&docker, &a.instance, "web").await,
        before,
        "adopted replicas were replaced"
    );
    assert_eq!(version(&b).await["held_containers"], 0);
    let (status, body) = b.via_ingress("web.local").await.expect("ingress");
    assert_eq!(status, 200, "{body}");

    // The new server manages them: scale up keeps the three and adds one.
    let out = b.dubectl(&["scale", "pod", "web", "--replicas", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    b.wait_converged("web", T).await;
    let after = replica_ids(&docker, &a.instance, "web").await;
    assert_eq!(after.len(), 4);
    assert!(before.iter().all(|id| after.contains(id)), "{before:?} vs {after:?}");

    // And delete removes exactly what it owns: all four.
    let out = b.dubectl(&["delete", "pod", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the pod's containers to go", T, || async {
        replica_ids(&docker, &a.instance, "web").await.is_empty().then_some(())
    })
    .await;
    drop(a);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_exits_at_once_naming_the_holder() {
    let docker = docker().await;
    let a = TestServer::start("locked").await;
    apply_and_wait(&a, "web", 2).await;
    let before = everything(&docker, &a.instance).await;
    let pid = a.pid().expect("pid").to_string();
    // Same instance, and another instance: the lock is the data dir's.
    for instance in [a.instance.clone(), format!("{}-b", a.instance)] {
        let (out, took) = refused_start(&instance, &a.data_path, &[]);
        let err = stderr(&out);
        assert!(
            err.contains("in use by another dubernetes-server") && err.contains(&pid),
            "{err}"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert!(everything(&docker, &format!("{}-b", a.instance)).await.is_empty());
    }
    // The first one is undisturbed: same containers, still in charge.
    assert_eq!(everything(&docker, &a.instance).await, before);
    assert_eq!(
        std::fs::read_to_string(a.data_path.join("lock")).expect("lock").trim(),
        pid
    );
    apply_and_wait(&a, "web", 3).await;
}

#[tokio::test]
async fn the_same_instance_on_a_second_store_is_refused_while_the_first_runs() {
    let docker = docker().await;
    let a = TestServer::start("twostores").await;
    apply_and_wait(&a, "web", 2).await;
    let store_id = version(&a).await["store_id"].as_str().expect("id").to_string();
    let before = everything(&docker, &a.instance).await;
    let other = tempfile::tempdir().expect("tempdir");
    let (out, _) = refused_start(&a.instance, other.path(), &[]);
    let err = stderr(&out);
    assert!(
        err.contains(&store_id) && err.contains(&a.data_path.display().to_string()),
        "{err}"
    );
    assert!(
        !other.path().join("dubernetes.db").exists(),
        "the refused store was created"
    );
    // Taking over from a server that still runs is refused too: two managers.
    let (out, _) = refused_start(&a.instance, other.path(), &["--adopt-foreign"]);
    let err = stderr(&out);
    let pid = a.pid().expect("pid").to_string();
    assert!(err.contains("still runs") && err.contains(&pid), "{err}");
    assert!(
        !other.path().join("dubernetes.db").exists(),
        "the refused takeover created a store"
    );
    assert_eq!(everything(&docker, &a.instance).await, before);
    apply_and_wait(&a, "web", 1).await;
}

#[tokio::test]
async fn kill_9_leaves_no_stale_lock() {
    let docker = docker().await;
    let mut a = TestServer::start("kill9lock").await;
    apply_and_wait(&a, "web", 2).await;
    let before = replica_ids(&docker, &a.instance, "web").await;
    let old_pid = a.pid().expect("pid");
    a.kill9();
    a.start_again().await;
    let new_pid = a.pid().expect("pid");
    assert_ne!(old_pid, new_pid);
    assert_eq!(
        std::fs::read_to_string(a.data_path.join("lock")).expect("lock").trim(),
        new_pid.to_string()
    );
    a.wait_converged("web", T).await;
    assert_eq!(replica_ids(&docker, &a.instance, "web").await, before);
}

#[tokio::test]
async fn the_data_dir_and_its_secrets_are_private() {
    let a = TestServer::start_custom("modes", None, Some("nested/data"), &[], true).await;
    apply_and_wait(&a, "web", 1).await;
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&a.data_path).expect("dir"), 0o700);
    assert_eq!(mode(a.data_path.parent().expect("parent")).expect("parent"), 0o700);
    for file in [
        "dubernetes.db",
        "dubernetes.db-wal",
        "dubernetes.db-shm",
        "token",
        "lock",
    ] {
        assert_eq!(mode(&a.data_path.join(file)).expect(file), 0o600, "{file}");
    }
    let names: Vec<String> = std::fs::read_dir(&a.data_path)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    // A backup holds every env value too.
    let copy = a.data_dir.path().join("copy.db");
    let out = Command::new(binary("dubernetes-server"))
        .arg("--data-dir")
        .arg(&a.data_path)
        .arg("backup")
        .arg(&copy)
        .output()
        .expect("backup");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&copy).expect("copy"), 0o600);
    // dubectl version shows where the store lives.
    let out = a.dubectl(&["version"]);
    let text = dubernetes_tests::stdout(&out);
    assert!(text.contains(&format!("Data Dir: {}", a.data_path.display())), "{text}");
}

#[tokio::test]
async fn an_upgraded_store_adopts_the_unlabelled_containers_of_its_pods_without_replacing_them() {
    let docker = docker().await;
    let mut a = TestServer::start("upgrade").await;
    apply_and_wait(&a, "web", 2).await;
    let new_version_store = version(&a).await["store_id"].as_str().expect("id").to_string();
    a.stop();

    // What an older version left: a store without an id ...
    let db = a.data_path.join("dubernetes.db");
    let pool = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
        .await
        .expect("open the store");
    for statement in [
        "DROP TABLE store_meta",
        "DROP TABLE adopted_containers",
        // Migration 4 (certificates) came later still.
        "DROP TABLE certificates",
        "DROP TABLE acme_accounts",
        // Migration 26 (generic and docker-registry secrets) too.
        "DROP TABLE data_secrets",
        "DELETE FROM _sqlx_migrations WHERE version >= 3",
    ] {
        sqlx::query(statement).execute(&pool).await.expect(statement);
    }
    pool.close().await;
    // ... and containers with the old label set (no store labels): copies of
    // this server's replicas, made the way the older version made them.
    let mut old = Vec::new();
    for (n, id) in replica_ids(&docker, &a.instance, "web").await.iter().enumerate() {
        let inspect = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .expect("inspect");
        let config = inspect.config.expect("config");
        let mut labels = config.labels.unwrap_or_default();
        labels.remove("io.dubernetes.store");
        labels.remove("io.dubernetes.data-dir");
        let network = format!("dub-{}", a.instance);
        let body = ContainerCreateBody {
            image: config.image,
            env: config.env,
            labels: Some(labels),
            exposed_ports: config.exposed_ports,
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            host_config: Some(HostConfig {
                network_mode: Some(network.clone()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network, EndpointSettings::default())])),
            }),
            ..Default::default()
        };
        let name = format!("dub-{}-web-old{n}", a.instance);
        let created = docker
            .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
            .await
            .expect("create");
        docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .expect("start");
        old.push(created.id);
    }
    // The new version's own containers go (the older version had made these
    // instead); the ingress is replaced by an unlabelled copy of itself.
    let ingress_name = format!("dub-{}-ingress", a.instance);
    let ingress = docker
        .inspect_container(&ingress_name, None::<InspectContainerOptions>)
        .await
        .expect("inspect the ingress");
    for (id, _) in everything(&docker, &a.instance).await {
        if !old.contains(&id) {
            docker
                .remove_container(&id, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
                .await
                .expect("remove");
        }
    }
    old.sort();
    let old_ingress = {
        let config = ingress.config.expect("config");
        let host = ingress.host_config.expect("host config");
        let mut labels = config.labels.unwrap_or_default();
        labels.remove("io.dubernetes.store");
        labels.remove("io.dubernetes.data-dir");
        let body = ContainerCreateBody {
            image: config.image,
            labels: Some(labels),
            exposed_ports: config.exposed_ports,
            host_config: Some(HostConfig {
                network_mode: host.network_mode,
                port_bindings: host.port_bindings,
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&ingress_name).build()),
                body,
            )
            .await
            .expect("create the ingress");
        docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .expect("start the ingress");
        created.id
    };

    a.start_again().await;
    let v = version(&a).await;
    assert_ne!(
        v["store_id"].as_str(),
        Some(new_version_store.as_str()),
        "the old store got a new id"
    );
    assert_eq!(v["held_containers"], 0);
    a.wait_converged("web", T).await;
    assert_eq!(
        replica_ids(&docker, &a.instance, "web").await,
        old,
        "the old replicas were replaced"
    );
    let (status, _) = a.via_ingress("web.local").await.expect("ingress");
    assert_eq!(status, 200);
    let ingress_now = docker
        .inspect_container(&ingress_name, None::<InspectContainerOptions>)
        .await
        .expect("inspect the ingress");
    assert_eq!(
        ingress_now.id.as_deref(),
        Some(old_ingress.as_str()),
        "the old ingress was replaced"
    );
    // Adopted means owned: delete removes them.
    let out = a.dubectl(&["delete", "pod", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the adopted replicas to go", T, || async {
        replica_ids(&docker, &a.instance, "web").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_data_dirs_are_clear_errors_that_change_nothing() {
    let docker = docker().await;
    let instance = dubernetes_tests::instance_name("baddir");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "keep me").expect("write");
    for path in [file.clone(), file.join("below")] {
        let (out, _) = refused_start(&instance, &path, &[]);
        assert!(stderr(&out).contains("is not a directory"), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");

    let unwritable = if std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        // root may write anywhere but into sysfs.
        Path::new("/sys/dubernetes-test").join(&instance)
    } else {
        let locked = dir.path().join("read-only");
        std::fs::create_dir(&locked).expect("mkdir");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).expect("chmod");
        locked.join("data")
    };
    let (out, _) = refused_start(&instance, &unwritable, &[]);
    assert!(
        stderr(&out).contains("cannot be created or written"),
        "{}",
        stderr(&out)
    );
    assert!(!unwritable.exists());
    // Nothing was made on the engine either.
    assert!(everything(&docker, &instance).await.is_empty());
    assert!(
        docker
            .inspect_network(
                &format!("dub-{instance}"),
                None::<bollard::query_parameters::InspectNetworkOptions>
            )
            .await
            .is_err(),
        "a refused start created the instance network"
    );
}

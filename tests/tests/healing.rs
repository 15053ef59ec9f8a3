//! Self-healing: crash-loop back-off, adoption and garbage collection, an
//! ingress that heals, and convergence after kill -9 of the server.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use dubernetes_tests::{Backend, TestServer, WHOAMI_V1, docker, wait_for, wait_until};

const T: Duration = Duration::from_secs(90);

async fn crash_loop_backs_off_without_delaying_other_pods(backend: Backend) {
    let server = TestServer::start_on(backend, "crashloop").await;
    let crashy = "name: crashy\nimage: dubernetes/whoami:v1\nenv: {WHOAMI_EXIT_CODE: \"3\"}\n\
                  restart: {initial_delay: 300ms, max_delay: 5s}\n";
    assert_eq!(server.put_yaml("crashy", crashy).await.0, 201);
    let healthy = "name: healthy\nimage: dubernetes/whoami:v1\nreplicas: 3\naccess: {host: healthy.local}\n";
    assert_eq!(server.put_yaml("healthy", healthy).await.0, 201);
    // The crashing pod does not hold up the other one.
    server.wait_converged("healthy", Duration::from_secs(30)).await;

    let pod = wait_for("CrashLoopBackOff with a few restarts", T, || async {
        let (_, pod) = server.get_json("/v1/pods/crashy").await;
        let s = &pod["status"];
        (s["reason"] == "CrashLoopBackOff" && s["restarts"].as_u64().unwrap_or(0) >= 3).then_some(pod)
    })
    .await;
    let s = &pod["status"];
    assert_eq!(s["last_exit_code"], 3);
    assert_eq!(s["phase"], "Failing");
    let message = s["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exit code 3") && message.contains("WHOAMI_EXIT_CODE=3"),
        "{message}"
    );

    // The delays grow: restart k waits initial * 2^(k-2), capped. Events are
    // written as the restarts happen: wait until two back-offs are recorded.
    let backoffs = wait_for("two back-off events", T, || async {
        let (_, events) = server.get_json("/v1/events?pod=crashy").await;
        let backoffs: Vec<String> = events
            .as_array()?
            .iter()
            .filter_map(|e| e["message"].as_str())
            .filter_map(|m| m.split("back-off ").nth(1).map(str::to_string))
            .collect();
        (backoffs.len() >= 2).then_some(backoffs)
    })
    .await;
    assert_eq!(backoffs[0], "300ms", "{backoffs:?}");
    assert_eq!(backoffs[1], "600ms", "{backoffs:?}");
}

async fn orphans_are_removed_and_foreign_containers_left_alone(backend: Backend) {
    let server = TestServer::start_on(backend, "gc").await;
    let docker = docker().await;
    let make = |name: &str, labels: HashMap<String, String>| {
        let docker = docker.clone();
        let name = name.to_string();
        async move {
            let body = ContainerCreateBody {
                image: Some(WHOAMI_V1.to_string()),
                labels: Some(labels),
                ..Default::default()
            };
            let id = docker
                .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
                .await
                .expect("create")
                .id;
            docker
                .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
                .await
                .expect("start");
            id
        }
    };
    let label = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let other_instance = format!("{}-other", server.instance);
    let foreign = make(
        &format!("{other_instance}-x"),
        label(&[
            ("io.dubernetes.instance", &other_instance),
            ("io.dubernetes.role", "replica"),
            ("io.dubernetes.pod", "ghost"),
        ]),
    )
    .await;
    let unlabelled = make(&format!("{}-unlabelled", server.instance), HashMap::new()).await;
    // An orphan is a container of this store (its label) whose pod is gone.
    let (_, version) = server.get_json("/v1/version").await;
    let store = version["store_id"].as_str().expect("store id").to_string();
    let orphan = make(
        &format!("{}-orphan", server.instance),
        label(&[
            ("io.dubernetes.instance", &server.instance),
            ("io.dubernetes.store", &store),
            ("io.dubernetes.role", "replica"),
            ("io.dubernetes.pod", "ghost"),
        ]),
    )
    .await;
    // The same instance, another store's: never ours to remove.
    let other_store = make(
        &format!("{}-other-store", server.instance),
        label(&[
            ("io.dubernetes.instance", &server.instance),
            ("io.dubernetes.store", "0123456789abcdef"),
            ("io.dubernetes.role", "replica"),
            ("io.dubernetes.pod", "ghost"),
        ]),
    )
    .await;
    let cleanup = || async {
        for id in [&foreign, &unlabelled, &orphan, &other_store] {
            let _ = docker
                .remove_container(id, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
                .await;
        }
    };
    let gone = tokio::time::timeout(T, async {
        loop {
            if docker
                .inspect_container(&orphan, None::<bollard::query_parameters::InspectContainerOptions>)
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // A pod applied afterwards still converges, and the foreign containers survived the whole time.
    server
        .put_yaml("real", "name: real\nimage: dubernetes/whoami:v1\nreplicas: 2\n")
        .await;
    server.wait_converged("real", T).await;
    let foreign_alive = docker
        .inspect_container(&foreign, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .is_ok();
    let unlabelled_alive = docker
        .inspect_container(&unlabelled, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .is_ok();
    let other_store_alive = docker
        .inspect_container(&other_store, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .is_ok();
    let (_, version) = server.get_json("/v1/version").await;
    cleanup().await;
    assert!(gone.is_ok(), "the orphan container was not removed");
    assert!(other_store_alive, "a container of another store was removed");
    assert!(version["foreign_containers"].as_u64() >= Some(1), "{version}");
    assert!(foreign_alive, "a container of another instance was removed");
    assert!(unlabelled_alive, "a container without labels was removed");
}

async fn the_ingress_heals_when_removed_or_stopped(backend: Backend) {
    let server = TestServer::start_on(backend, "ingress-heal").await;
    let docker = docker().await;
    server
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\nreplicas: 2\naccess: {host: web.local}\n",
        )
        .await;
    server.wait_converged("web", T).await;
    let ingress = format!("dub-{}-ingress", server.instance);
    let serving = || async { matches!(server.via_ingress("web.local").await, Ok((200, _))).then_some(()) };
    wait_for("the pod to be served", T, serving).await;

    docker
        .remove_container(&ingress, Some(RemoveContainerOptionsBuilder::new().force(true).build()))
        .await
        .expect("remove the ingress");
    wait_for("the pod to be served after the ingress was removed", T, serving).await;

    docker
        .stop_container(&ingress, None::<bollard::query_parameters::StopContainerOptions>)
        .await
        .expect("stop the ingress");
    wait_for("the pod to be served after the ingress was stopped", T, serving).await;
}

async fn kill_9_during_scaling_converges_without_duplicates_or_orphans(backend: Backend) {
    let mut server = TestServer::start_on(backend, "kill9").await;
    let yaml = |n: u32| format!("name: churn\nimage: dubernetes/whoami:v1\nreplicas: {n}\n");
    server.put_yaml("churn", &yaml(0)).await;
    for (round, target) in [20u32, 0, 20, 5].into_iter().enumerate() {
        let (status, _) = server.put_yaml("churn", &yaml(target)).await;
        assert_eq!(status, 200, "round {round}");
        // Kill the server in the middle of the work: once the engine shows some of it.
        let before = server.replicas(Some("churn")).await.len();
        wait_until(
            &format!("round {round} to be under way (replicas: {before} before)"),
            T,
            || async { server.replicas(Some("churn")).await.len() },
            |now| *now != before,
        )
        .await;
        server.kill9();
        server.start_again().await;
        let pod = server.wait_converged("churn", T).await;
        assert_eq!(pod["status"]["current_replicas"], target, "round {round}");
        let all = wait_for(
            &format!("exactly {target} containers after round {round}"),
            T,
            || async {
                let all = server.replicas(None).await;
                (all.len() == target as usize).then_some(all)
            },
        )
        .await;
        assert!(all.iter().all(|c| c.1 == "running"), "round {round}: {all:?}");
    }
}

async fn a_config_changed_behind_our_back_is_restored(backend: Backend) {
    let server = TestServer::start_with_on(backend, "ingress-config", &["--resync-seconds", "1"]).await;
    let docker = docker().await;
    server
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\naccess: {host: web.local}\n",
        )
        .await;
    server.wait_converged("web", T).await;
    let serving = || async { matches!(server.via_ingress("web.local").await, Ok((200, _))).then_some(()) };
    wait_for("the pod to be served", T, serving).await;

    // Someone replaces the config in the container and reloads nginx.
    let ingress = format!("dub-{}-ingress", server.instance);
    let conf = b"server { listen 80 default_server; return 418; }\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(conf.len() as u64);
    header.set_mode(0o644);
    let mut archive = tar::Builder::new(Vec::new());
    archive
        .append_data(&mut header, "default.conf", &conf[..])
        .expect("tar");
    let archive = archive.into_inner().expect("tar");
    docker
        .upload_to_container(
            &ingress,
            Some(
                bollard::query_parameters::UploadToContainerOptionsBuilder::new()
                    .path("/etc/nginx/conf.d")
                    .build(),
            ),
            bollard::body_full(archive.into()),
        )
        .await
        .expect("upload");
    let exec = docker
        .create_exec(
            &ingress,
            bollard::exec::CreateExecOptions {
                cmd: Some(vec!["nginx", "-s", "reload"]),
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    docker.start_exec(&exec.id, None).await.expect("reload");
    wait_for("the broken config to be live", T, || async {
        matches!(server.via_ingress("web.local").await, Ok((418, _))).then_some(())
    })
    .await;
    // The controller notices on its next resync and puts its config back.
    wait_for("the pod to be served again", T, serving).await;
}

/// The swarm backend reaches the replicas' readiness checks through its
/// probe agent (a SOCKS proxy container on the overlay). Killed, it is
/// recreated, and the replicas are checked, ready and served again. (It was
/// not: the repair ran inside the failing check's deadline, half a second
/// here, and was cut off after it had removed the old agent.)
#[tokio::test]
async fn the_swarm_probe_agent_heals_when_killed() {
    let server = TestServer::start_on(Backend::Swarm, "probe-heal").await;
    let docker = docker().await;
    server
        .put_yaml(
            "web",
            "name: web\nimage: dubernetes/whoami:v1\nreplicas: 2\naccess: {host: web.local}\n\
             health: {path: /healthz, interval: 200ms, timeout: 500ms, unhealthy_after: 1}\n",
        )
        .await;
    server.wait_converged("web", T).await;
    let serving = || async { matches!(server.via_ingress("web.local").await, Ok((200, _))).then_some(()) };
    wait_for("the pod to be served", T, serving).await;

    let agent = format!("dub-{}-probe", server.instance);
    let before = docker
        .inspect_container(&agent, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("the probe agent")
        .id
        .expect("its id");
    docker
        .kill_container(&before, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .expect("kill the probe agent");
    // The replicas are ready again (through a new agent), and the pod is served.
    wait_until(
        "both replicas ready again",
        T,
        || async { server.get_json("/v1/pods/web").await.1 },
        |pod| pod["status"]["ready_replicas"] == 2 && pod["status"]["message"].is_null(),
    )
    .await;
    let after = docker
        .inspect_container(&agent, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("the probe agent")
        .id;
    assert_ne!(after.as_deref(), Some(before.as_str()), "the agent was made anew");
    wait_for("the pod to be served again", T, serving).await;
    assert!(
        server.log().contains("the probe agent does not answer; recreating it"),
        "the repair is in the log"
    );
}

dubernetes_tests::on_both_backends!(
    crash_loop_backs_off_without_delaying_other_pods,
    orphans_are_removed_and_foreign_containers_left_alone,
    the_ingress_heals_when_removed_or_stopped,
    kill_9_during_scaling_converges_without_duplicates_or_orphans,
    a_config_changed_behind_our_back_is_restored,
);

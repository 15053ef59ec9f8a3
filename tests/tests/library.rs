//! dubernetes-core used as a library, through its test helper, next to
//! testcontainers: the way users write integration tests of their own apps.

use std::time::Duration;

use dubernetes_core::testing::TestCluster;
use dubernetes_core::{Error, PodSpec};
use dubernetes_tests::{NGINX_LOCAL, WHOAMI_V1, containers, docker};
use testcontainers::core::{ExecCommand, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

#[tokio::test]
async fn a_pod_behind_the_ingress_in_a_few_lines() {
    let docker = docker().await;
    let cluster = TestCluster::builder()
        .ingress_image(NGINX_LOCAL)
        .start()
        .await
        .expect("cluster");
    let pod = cluster
        .run(PodSpec::new("api", WHOAMI_V1).with_replicas(2))
        .await
        .expect("run");

    let http = reqwest::Client::new();
    let answer = http
        .get(pod.url())
        .header("host", pod.host())
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status().as_u16(), 200);
    assert!(answer.text().await.expect("body").contains("Hostname:"));
    let instance = cluster.orchestrator().instance().to_string();
    assert_eq!(containers(&docker, &instance, None).await.len(), 2);

    // Errors are an enum callers can match on.
    match cluster.orchestrator().get("nope").await {
        Err(Error::NotFound(name)) => assert_eq!(name, "nope"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    drop(cluster);
    // Dropping the cluster removed everything it made.
    let left = containers(&docker, &instance, None).await;
    assert!(left.is_empty(), "{left:?}");
    assert!(
        docker
            .inspect_network(
                &format!("dub-{instance}"),
                None::<bollard::query_parameters::InspectNetworkOptions>
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_local_images_work_under_testcontainers() {
    let _ = docker().await;
    // The demo app answers on its port.
    let whoami = GenericImage::new("dubernetes/whoami", "v1")
        .with_wait_for(WaitFor::message_on_stdout("listening on"))
        .start()
        .await
        .expect("start whoami");
    let port = whoami.get_host_port_ipv4(80).await.expect("port");
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("request");
    assert_eq!(answer.status().as_u16(), 200);

    // The nginx image has the official layout: `nginx -t` passes on its default config.
    let nginx = GenericImage::new("dubernetes/nginx", "local-4")
        .with_wait_for(WaitFor::Nothing)
        .with_startup_timeout(Duration::from_secs(30))
        .start()
        .await
        .expect("start nginx");
    let exec = nginx.exec(ExecCommand::new(["nginx", "-t"])).await.expect("exec");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = exec.exit_code().await.expect("exit code") {
            break code;
        }
        assert!(tokio::time::Instant::now() < deadline, "nginx -t did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, 0);
}

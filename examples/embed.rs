//! Embedding Dubernetes in your own program: start an instance, apply a pod,
//! wait until it is ready, send a request through the ingress, and shut down
//! leaving nothing behind.
//!
//! Run it with `cargo run -p dubernetes-core --example embed` (needs Docker
//! and the local images from scripts/build-images.sh; set EMBED_IMAGE and
//! EMBED_INGRESS_IMAGE to use others).

use std::time::Duration;

use dubernetes_core::{Dubernetes, IngressSettings, PodSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let image = std::env::var("EMBED_IMAGE").unwrap_or_else(|_| "dubernetes/whoami:v1".into());
    let ingress_image = std::env::var("EMBED_INGRESS_IMAGE").unwrap_or_else(|_| "dubernetes/nginx:local-4".into());
    let instance = format!("embed-{}", std::process::id());

    // An in-memory store and an ingress on a free loopback port.
    let orchestrator = Dubernetes::builder()
        .instance(&instance)
        .in_memory()
        .ingress(IngressSettings::new(ingress_image, "127.0.0.1:0".parse()?))
        .build()
        .await?;

    let result = run(&orchestrator, &image).await;
    // Always clean up, even when the run failed.
    orchestrator.purge().await?;
    let left = orchestrator.diagnostics().leftover_containers().await?;
    println!("containers of instance {instance} left after purge: {left}");
    result?;
    if left != 0 {
        return Err(format!("{left} container(s) left behind").into());
    }
    Ok(())
}

async fn run(orchestrator: &Dubernetes, image: &str) -> Result<(), Box<dyn std::error::Error>> {
    orchestrator
        .apply(PodSpec::new("hello", image).with_replicas(2).with_host("hello.local"))
        .await?;
    let pod = orchestrator.wait_ready("hello", Duration::from_secs(60)).await?;
    println!(
        "pod {} ready: {}/{} replicas",
        pod.name, pod.status.ready_replicas, pod.status.desired_replicas
    );

    let port = orchestrator.ingress_port().await.ok_or("the ingress has no port")?;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: hello.local\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer.lines().next().unwrap_or_default().to_string();
    println!("through the ingress on 127.0.0.1:{port}: {status}");
    if !status.contains(" 200 ") {
        return Err(format!("expected 200 from the ingress, got {status:?}").into());
    }
    if let Some(host) = answer.lines().find(|l| l.starts_with("Hostname:")) {
        println!("answered by {host}");
    }
    Ok(())
}

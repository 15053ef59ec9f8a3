//! Helpers for integration tests of programs that run on Dubernetes
//! (feature `testing`): start a throwaway instance, run a pod behind the
//! ingress in one call, get its URL, and have everything removed when the
//! cluster is dropped — the way testcontainers treats its containers.
//!
//! ```no_run
//! use dubernetes_core::PodSpec;
//! use dubernetes_core::testing::TestCluster;
//!
//! # async fn demo() -> Result<(), dubernetes_core::Error> {
//! let cluster = TestCluster::builder().ingress_image("dubernetes/nginx:local-4").start().await?;
//! let pod = cluster.run(PodSpec::new("api", "my-api:dev").with_replicas(3)).await?;
//! // Send requests to pod.url() with the header `Host: {pod.host()}`.
//! println!("{} (Host: {})", pod.url(), pod.host());
//! # Ok(())
//! # }
//! // Dropping `cluster` removes its containers and network.
//! ```
//!
//! The ingress image is `DUBERNETES_TEST_INGRESS_IMAGE` if set, else the
//! default official nginx image (pulled if missing).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{Dubernetes, IngressSettings, PodSpec, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A throwaway Dubernetes instance: in-memory store, ingress on a free
/// loopback port, removed (containers and network) on drop.
#[derive(Debug)]
pub struct TestCluster {
    orchestrator: Dubernetes,
    purged: bool,
}

/// A pod started by [`TestCluster::run`], ready and routed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestPod {
    /// The pod's name.
    pub name: String,
    host: String,
    port: u16,
}

impl TestPod {
    /// `http://127.0.0.1:PORT`: the ingress. Send the [`host`](Self::host) header with each request.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `Host` header that routes to this pod.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The ingress port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Options of a [`TestCluster`].
#[derive(Debug, Clone, Default)]
pub struct TestClusterBuilder {
    instance: Option<String>,
    ingress_image: Option<String>,
}

impl TestClusterBuilder {
    /// The instance name (a DNS label); default: unique per process and cluster.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The ingress image; default: `DUBERNETES_TEST_INGRESS_IMAGE`, else the official nginx image.
    pub fn ingress_image(mut self, image: impl Into<String>) -> Self {
        self.ingress_image = Some(image.into());
        self
    }

    /// Starts the instance.
    pub async fn start(self) -> Result<TestCluster> {
        let instance = self
            .instance
            .unwrap_or_else(|| format!("test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let image = self
            .ingress_image
            .or_else(|| std::env::var("DUBERNETES_TEST_INGRESS_IMAGE").ok())
            .unwrap_or_else(|| crate::defaults::DEFAULT_INGRESS_IMAGE.into());
        let orchestrator = Dubernetes::builder()
            .instance(instance)
            .in_memory()
            .ingress(IngressSettings::new(image, ([127, 0, 0, 1], 0).into()))
            .stop_grace_period(Duration::from_secs(2))
            .drain_period(Duration::ZERO)
            .build()
            .await?;
        Ok(TestCluster {
            orchestrator,
            purged: false,
        })
    }
}

impl TestCluster {
    /// Starts an instance with a unique name and the default ingress image.
    pub async fn start() -> Result<TestCluster> {
        Self::builder().start().await
    }

    /// Options: instance name, ingress image.
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder::default()
    }

    /// The orchestrator, for anything beyond [`run`](Self::run).
    pub fn orchestrator(&self) -> &Dubernetes {
        &self.orchestrator
    }

    /// The Docker network the pods join: connect other test containers (e.g.
    /// a database started with testcontainers) to it so pods can reach them.
    pub fn network(&self) -> String {
        format!("dub-{}", self.orchestrator.instance())
    }

    /// Applies `spec` (with host `<name>.test` unless it has one) and waits
    /// up to a minute until every replica is ready and routed.
    pub async fn run(&self, mut spec: PodSpec) -> Result<TestPod> {
        if spec.access.is_none() {
            spec = spec.clone().with_host(format!("{}.test", spec.name));
        }
        let host = spec.host().unwrap_or_default().to_string();
        let name = spec.name.clone();
        self.orchestrator.apply(spec).await?;
        self.orchestrator.wait_ready(&name, Duration::from_secs(60)).await?;
        let port = self
            .orchestrator
            .ingress_port()
            .await
            .ok_or_else(|| crate::Error::Ingress("the ingress has no published port".into()))?;
        Ok(TestPod { name, host, port })
    }

    /// Removes every container and the network now (also done on drop).
    pub async fn purge(mut self) -> Result<()> {
        self.purged = true;
        self.orchestrator.purge().await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.purged {
            return;
        }
        // Drop may run inside the runtime the controller lives on (a
        // #[tokio::test]), which is blocked until drop returns: stop the
        // controller and clean up through a new engine connection on a
        // thread with its own runtime.
        let purge = self.orchestrator.detach_for_purge();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build()
                && let Err(e) = rt.block_on(purge)
            {
                eprintln!("dubernetes TestCluster: clean-up failed: {e}");
            }
        })
        .join();
    }
}

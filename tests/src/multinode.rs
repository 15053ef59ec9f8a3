//! A 3-node Docker Swarm on this one machine (`scripts/multinode.sh`): three
//! real `dockerd`s, each in a network namespace of its own joined by a
//! bridge, a manager (`m`) and two workers (`w1`, `w2`). The test runs its
//! body, the `dubernetes-server` it starts and every connection it makes
//! inside the manager's namespace ([`MultiNode::run_on_manager`]), as on a
//! real manager host. Everything is removed when the [`MultiNode`] is
//! dropped, also when the test fails or panics.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bollard::Docker;

/// The nodes of a harness: the manager first.
pub const NODES: [&str; 3] = ["m", "w1", "w2"];

/// A 3-node swarm made by `scripts/multinode.sh up`; removed on drop.
pub struct MultiNode {
    /// The harness's number N (its subnet is 10.231.N.0/24).
    pub id: u32,
    /// The host's network namespace, to run the harness's own commands in
    /// from a thread that moved into a node's namespace.
    host_ns: File,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/multinode.sh")
}

impl MultiNode {
    /// Makes the harness and loads `images` (from the host's engine) into every node.
    /// Fails the test with the script's message when it cannot.
    pub fn up(images: &[&str]) -> MultiNode {
        let host_ns = File::open("/proc/thread-self/ns/net").expect("open this thread's network namespace");
        let out = Command::new(script())
            .arg("up")
            .args(images)
            .output()
            .expect("run scripts/multinode.sh");
        assert!(
            out.status.success(),
            "scripts/multinode.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("scripts/multinode.sh up printed no harness id ({e})"));
        MultiNode { id, host_ns }
    }

    /// Runs the harness script with `args` in the host's network namespace.
    fn script(&self, args: &[&str]) -> std::process::Output {
        let ns = format!("--net=/proc/{}/fd/{}", std::process::id(), self.host_ns.as_raw_fd());
        Command::new("nsenter")
            .arg(ns)
            .arg(script())
            .args(args)
            .output()
            .expect("run scripts/multinode.sh")
    }

    /// `DOCKER_HOST` of a node's engine.
    pub fn docker_host(&self, node: &str) -> String {
        format!("unix:///run/dmn{}/{node}.sock", self.id)
    }

    /// The address of a node on the harness's bridge.
    pub fn address(&self, node: &str) -> String {
        let host = NODES.iter().position(|n| *n == node).expect("a node of the harness") + 2;
        format!("10.231.{}.{host}", self.id)
    }

    /// A client of a node's engine.
    pub fn docker(&self, node: &str) -> Docker {
        Docker::connect_with_unix(
            &format!("/run/dmn{}/{node}.sock", self.id),
            60,
            bollard::API_DEFAULT_VERSION,
        )
        .expect("connect to a node's engine")
    }

    /// Runs the docker CLI against a node (setup and inspection only); its stdout.
    pub fn cli(&self, node: &str, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(["-H", &self.docker_host(node)])
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {} on node {node}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Cuts a node's link to the others and kills its engine (a lost machine).
    pub fn cut(&self, node: &str) {
        let id = self.id.to_string();
        let out = self.script(&["cut", &id, node]);
        assert!(
            out.status.success(),
            "cutting node {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Brings a cut node back: its link up, its engine started again on its
    /// old data root (its old containers and swarm state reappear).
    pub fn back(&self, node: &str) {
        let id = self.id.to_string();
        let out = self.script(&["back", &id, node]);
        assert!(
            out.status.success(),
            "bringing node {node} back: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `body` on a new thread inside the manager's network namespace,
    /// on a runtime of its own: its connections, and the processes it
    /// starts (the server, dubectl), are on the manager's host.
    pub fn run_on_manager<F, Fut>(&self, body: F)
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future<Output = ()>,
    {
        let ns = File::open(format!("/run/netns/dmn{}-m", self.id)).expect("open the manager's namespace");
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("enter the manager's network namespace");
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(body());
            });
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        let id = self.id.to_string();
        let out = self.script(&["down", &id]);
        if !out.status.success() {
            eprintln!(
                "scripts/multinode.sh down {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// How long a test may wait for the harness's engines (they share 2 cores with everything else).
pub const SLOW: Duration = Duration::from_secs(120);

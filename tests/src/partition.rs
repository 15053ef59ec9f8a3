//! Network namespaces for the partition test (`scripts/partition.sh`): a
//! bridge on the host at `10.232.N.1` and three namespaces `s0`, `s1`, `s2`
//! (`.2`, `.3`, `.4`), each server of the test in one of them. A server's
//! link can be cut ([`Partition::cut`]: its veth down, no process killed,
//! no session closed) and healed. Everything is removed when the
//! [`Partition`] is dropped, also when the test fails or panics.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The namespaces of a harness.
pub const SERVERS: usize = 3;

/// A harness made by `scripts/partition.sh up`; removed on drop.
#[derive(Debug)]
pub struct Partition {
    /// The harness's number N (its subnet is 10.232.N.0/24).
    pub id: u32,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/partition.sh")
}

fn run(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .output()
        .expect("run scripts/partition.sh")
}

impl Partition {
    /// Makes the harness; fails the test with the script's message when it cannot.
    pub fn up() -> Partition {
        let out = run(&["up"]);
        assert!(
            out.status.success(),
            "scripts/partition.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("scripts/partition.sh up printed no harness id ({e})"));
        Partition { id }
    }

    /// The host's address on the harness's bridge (where the servers reach PostgreSQL).
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 232, self.octet(), 1)
    }

    /// The address of server `i`'s namespace.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        assert!(i < SERVERS, "server {i} of {SERVERS}");
        Ipv4Addr::new(10, 232, self.octet(), 2 + i as u8)
    }

    /// The name of server `i`'s namespace (`/run/netns/NAME`).
    pub fn netns(&self, i: usize) -> String {
        assert!(i < SERVERS, "server {i} of {SERVERS}");
        format!("dpa{}-s{i}", self.id)
    }

    fn octet(&self) -> u8 {
        u8::try_from(self.id).expect("a harness id below 256")
    }

    fn change(&self, what: &str, i: usize) {
        let (id, server) = (self.id.to_string(), i.to_string());
        let out = run(&[what, &id, &server]);
        assert!(
            out.status.success(),
            "scripts/partition.sh {what} {id} {server}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts server `i`'s link (its veth down): its packets go nowhere, and
    /// nothing tells either end (no reset, no closed session).
    pub fn cut(&self, i: usize) {
        self.change("cut", i);
    }

    /// Brings server `i`'s link up again.
    pub fn heal(&self, i: usize) {
        self.change("heal", i);
    }

    /// GETs `url` from inside server `i`'s namespace (with curl, at most
    /// 2 s): the status and body, or None when nothing answered. The test
    /// sees a cut server this way, through the namespace's own loopback.
    pub fn get_from(&self, i: usize, url: &str) -> Option<(u16, String)> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns(i)))
            .args(["curl", "-s", "-m", "2", "-w", "\n%{http_code}", url])
            .output()
            .expect("run nsenter curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n')?;
        let code: u16 = code.trim().parse().ok()?;
        (out.status.success() && code != 0).then(|| (code, body.to_string()))
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let id = self.id.to_string();
        let out = run(&["down", &id]);
        if !out.status.success() {
            eprintln!(
                "scripts/partition.sh down {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

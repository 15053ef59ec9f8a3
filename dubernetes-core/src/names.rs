//! Pod names: from any replica of the instance, a pod's name (`db`)
//! resolves to the addresses of its **ready** replicas.
//!
//! How: every replica names one DNS server, the instance's *name responder*
//! (`dubernetes-names`, image [`DEFAULT_NAMES_IMAGE`]), a small container on
//! the instance network at a fixed address. The engine's embedded DNS
//! (127.0.0.11 in each container, Docker's and Swarm's alike) answers
//! container names itself and forwards every other name, single labels
//! included, to that server from inside the replica's network namespace. The
//! responder answers the pod names of this instance from a table the
//! controller writes into it ([`Names::sync`]) and forwards anything else
//! back to its own embedded DNS, so external names resolve as before.
//!
//! Why not network aliases: Docker's aliases are fixed when a container
//! joins a network (20.10 has no call to change them), so a replica could
//! not join its name when it becomes ready and leave it before it drains;
//! a disconnect and reconnect would cut its connections. Swarm's service
//! DNS does not fit either: the swarm backend runs one service per replica.
//!
//! The responder's address must stay findable across its restarts and
//! re-creations, as replicas are created with it: the instance network is
//! made with a subnet whose lower half is the range the engine hands out and
//! whose last usable address is the responder's
//! ([`crate::engine::Engine::names_address`]). A network without that
//! layout (made by hand, or by an older version) gets no names.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::{ContainerLimits, ContainerSpec};
use crate::error::{Error, Result};
use crate::labels::{LABEL_INSTANCE, LABEL_ROLE, ROLE_NAMES};
use crate::owned_engine::{ContainerState, Runtime};

/// The image of the name responder (built by `scripts/build-images.sh`).
pub const DEFAULT_NAMES_IMAGE: &str = "dubernetes/names:local";
/// Where the responder reads its table (see `dubernetes-names`).
const TABLE_DIR: &str = "/names";
const TABLE_FILE: &str = "table";
/// The port the responder serves DNS on (UDP and TCP).
const DNS_PORT: u16 = 53;

/// Ready addresses by pod name: every pod of the instance has an entry,
/// empty when none of its replicas is ready.
pub(crate) type NameTable = BTreeMap<String, Vec<IpAddr>>;

/// The table as the responder reads it: one line per pod, its IPv4
/// addresses after its name, and a final `end` (a half-written file has none).
pub(crate) fn render(table: &NameTable) -> String {
    let mut out = String::from("# dubernetes-names 1\n");
    for (name, addrs) in table {
        out.push_str(name);
        for ip in addrs.iter().filter(|ip| ip.is_ipv4()) {
            out.push(' ');
            out.push_str(&ip.to_string());
        }
        out.push('\n');
    }
    out.push_str("end\n");
    out
}

/// What was last written, and where.
#[derive(Debug, Default)]
struct Written {
    container: Option<String>,
    content: Option<String>,
}

/// The instance's name responder: its container, and the table it serves.
#[derive(Debug)]
pub(crate) struct Names {
    runtime: Runtime,
    instance: String,
    network: String,
    address: Option<IpAddr>,
    image: String,
    written: tokio::sync::Mutex<Written>,
    /// A table reached a running responder in this term.
    serving: AtomicBool,
}

impl Names {
    /// `address`: the responder's fixed address, None when the network has
    /// none (then nothing here touches the engine).
    pub(crate) fn new(runtime: Runtime, instance: &str, network: &str, address: Option<IpAddr>, image: &str) -> Names {
        Names {
            runtime,
            instance: instance.to_string(),
            network: network.to_string(),
            address,
            image: image.to_string(),
            written: tokio::sync::Mutex::new(Written::default()),
            serving: AtomicBool::new(false),
        }
    }

    /// The DNS server replicas name, if pods have names.
    pub(crate) fn address(&self) -> Option<IpAddr> {
        self.address
    }

    /// Whether a table reached a running responder in this term: then a
    /// failed update means replicas may still be found by name, and are not
    /// stopped until one succeeds.
    pub(crate) fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// Makes sure the responder runs (no engine call once a table was written to it).
    pub(crate) async fn ensure(&self) -> Result<()> {
        if self.address.is_none() {
            return Ok(());
        }
        let mut written = self.written.lock().await;
        if written.container.is_none() {
            written.container = Some(self.ensure_container().await?);
            written.content = None;
        }
        Ok(())
    }

    /// Makes the responder serve the table `compute` returns. Computed under
    /// the lock, so an older table never overwrites a newer one. `check`:
    /// look at the engine for the responder's container (re-create it when it
    /// is gone or stopped) even when the table did not change. Returns
    /// whether it wrote.
    pub(crate) async fn sync(&self, check: bool, compute: impl FnOnce() -> NameTable) -> Result<bool> {
        if self.address.is_none() {
            return Ok(false);
        }
        let mut written = self.written.lock().await;
        let content = render(&compute());
        let id = match (&written.container, check) {
            (Some(id), false) => id.clone(),
            _ => self.ensure_container().await?,
        };
        if written.container.as_deref() == Some(id.as_str()) && written.content.as_deref() == Some(content.as_str()) {
            return Ok(false);
        }
        match self
            .runtime
            .write_file(&id, TABLE_DIR, TABLE_FILE, content.as_bytes())
            .await
        {
            Ok(()) => {
                written.container = Some(id);
                written.content = Some(content);
                self.serving.store(true, Ordering::SeqCst);
                Ok(true)
            }
            Err(e) => {
                // The next sync looks at the engine again.
                written.container = None;
                written.content = None;
                Err(e)
            }
        }
    }

    /// The running responder's id: the one there, or a new one (started).
    async fn ensure_container(&self) -> Result<String> {
        let Some(address) = self.address else {
            return Err(Error::Internal("pods have no names on this network".into()));
        };
        let all = self.runtime.list(&self.instance, &self.network, None).await?;
        let mut stale = Vec::new();
        for c in all.iter().filter(|c| c.role == ROLE_NAMES) {
            let at_address = c.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) == Some(address);
            match c.state {
                ContainerState::Running if at_address => return Ok(c.id.clone()),
                // The engine restarts it (its restart policy): wait for that.
                ContainerState::Restarting => return Ok(c.id.clone()),
                _ => stale.push(c.id.clone()),
            }
        }
        for id in stale {
            self.runtime.remove(&id).await?;
        }
        self.runtime
            .ensure_image(&self.image, &crate::engine::Pull::if_missing())
            .await
            .map_err(|e| Error::Docker {
                context: format!("the name responder's image {}", self.image),
                source: format!("{e} (build it with scripts/build-images.sh, or set DUBERNETES_NAMES_IMAGE)").into(),
            })?;
        let mut limits = ContainerLimits::default();
        limits.log_max_bytes = 1024 * 1024;
        limits.log_max_files = 1;
        let spec = ContainerSpec {
            name: format!("{}-names", self.network),
            image: self.image.clone(),
            port: DNS_PORT,
            labels: HashMap::from([
                (LABEL_INSTANCE.to_string(), self.instance.clone()),
                (LABEL_ROLE.to_string(), ROLE_NAMES.to_string()),
            ]),
            network: self.network.clone(),
            limits,
            ip: Some(address),
            restart: true,
            plain: true,
            ..Default::default()
        };
        let id = self.runtime.create(&spec).await?;
        self.runtime.start(&id).await?;
        tracing::info!(network = %self.network, %address, "started the name responder");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_pod_and_ends_with_end() {
        let table = NameTable::from([
            (
                "db".to_string(),
                vec!["10.0.0.2".parse().expect("ip"), "10.0.0.3".parse().expect("ip")],
            ),
            ("worker".to_string(), vec![]),
        ]);
        assert_eq!(
            render(&table),
            "# dubernetes-names 1\ndb 10.0.0.2 10.0.0.3\nworker\nend\n"
        );
        assert_eq!(render(&NameTable::new()), "# dubernetes-names 1\nend\n");
    }
}

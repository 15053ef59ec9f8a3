//! The instance's network on Docker: made with a range kept for the name
//! responder's address, duplicates settled, overlaps with other networks named.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest, NetworkInspect};

use super::{CALL_TIMEOUT, LABEL_INSTANCE, bounded, ok_unless};
use crate::error::{Error, Result};

/// An IPv4 subnet in CIDR form: its first address and prefix length.
fn v4_subnet(cidr: &str) -> Option<(u32, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    // Room for a gateway, replicas and the responder in each half.
    if !(8..=28).contains(&len) {
        return None;
    }
    let mask = u32::MAX << (32 - len);
    Some((u32::from(addr) & mask, len))
}

/// For a subnet the engine chose: the range it may hand out (the lower
/// half) and the name responder's fixed address (the last usable one, in
/// the upper half, so no other container ever gets it).
pub(in crate::engine) fn names_layout(subnet: &str) -> Option<(String, std::net::Ipv4Addr)> {
    let (base, len) = v4_subnet(subnet)?;
    let size = 1u32 << (32 - len);
    let range = format!("{}/{}", std::net::Ipv4Addr::from(base), len + 1);
    Some((range, std::net::Ipv4Addr::from(base + size - 2)))
}

/// The name responder's address on an inspected network: set only when its
/// IPv4 config has the subnet and range [`names_layout`] makes.
pub(in crate::engine) fn names_address_of(network: &NetworkInspect) -> Option<std::net::IpAddr> {
    network.ipam.as_ref()?.config.as_ref()?.iter().find_map(|c| {
        let subnet = c.subnet.as_deref()?;
        let (range, addr) = names_layout(subnet)?;
        (c.ip_range.as_deref() == Some(range.as_str())).then_some(std::net::IpAddr::V4(addr))
    })
}

/// Creates a network whose subnet reserves the name responder's address
/// (see [`names_layout`]). The engine has no call to pick a subnet and
/// reserve an address in it, so: a throwaway network of the same driver
/// shows which free subnet the engine picks (it avoids other networks and,
/// for bridges, the host's routes), is removed, and the real network is made
/// with that subnet and its lower half as the range handed out. A parallel
/// creation may take the subnet in between: the engine refuses the overlap
/// and this tries again. 409 (the name is taken: another server of the
/// instance won) is success.
pub(in crate::engine) async fn create_network_with_names(docker: &Docker, request: NetworkCreateRequest) -> Result<()> {
    const ATTEMPTS: u32 = 5;
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        // Short (Swarm refuses names over 63 characters) and unique.
        let random = crate::ids::new_id();
        let probe_name = format!("dub-subnet-{}", random.get(..16).unwrap_or(&random));
        let probe = NetworkCreateRequest {
            name: probe_name.clone(),
            ..request.clone()
        };
        let created = bounded("creating network", CALL_TIMEOUT, docker.create_network(probe)).await?;
        let probe_id = if created.id.is_empty() { probe_name } else { created.id };
        let subnets = allocated_subnets(docker, &probe_id).await;
        ok_unless(
            bounded("removing network", CALL_TIMEOUT, docker.remove_network(&probe_id)).await,
            &[404],
        )?;
        let subnet = subnets?.into_iter().find(|s| names_layout(s).is_some());
        let mut real = request.clone();
        if let Some(subnet) = subnet.as_deref()
            && let Some((range, _)) = names_layout(subnet)
        {
            real.ipam = Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ip_range: Some(range),
                    ..Default::default()
                }]),
                options: None,
            });
        } else {
            tracing::warn!(network = %request.name, "the engine picked no IPv4 subnet with room for the name responder; pods get no names");
        }
        match bounded("creating network", CALL_TIMEOUT, docker.create_network(real)).await {
            // Swarm accepts an overlay whose subnet another network has
            // (then a fixed address cannot be attached on both): one made
            // in between, or left behind, is a reason to try another.
            Ok(created) if subnet.is_some() && !created.id.is_empty() => {
                let Some(other) = overlapping_network(docker, &created.id, subnet.as_deref().unwrap_or("")).await?
                else {
                    return Ok(());
                };
                tracing::debug!(network = %request.name, other, "the subnet is another network's; trying again");
                ok_unless(
                    bounded("removing network", CALL_TIMEOUT, docker.remove_network(&created.id)).await,
                    &[404],
                )?;
                last = Some(Error::Docker {
                    context: format!("creating network {}", request.name),
                    source: format!("its subnet is network {other}'s too").into(),
                });
            }
            Ok(_) => return Ok(()),
            Err(r) if r.status() == Some(409) => return Ok(()),
            // "Pool overlaps with other one on this address space": taken meanwhile.
            Err(r) if attempt + 1 < ATTEMPTS && r.status() == Some(403) => {
                tracing::debug!(network = %request.name, attempt, "the subnet was taken meanwhile; trying again");
                last = Some(Error::from(r));
            }
            Err(r) => return Err(r.into()),
        }
    }
    Err(last.unwrap_or_else(|| Error::DockerTimeout("creating network".into())))
}

/// The subnets the engine gave network `id`. A bridge has them when it is
/// made; Swarm's allocator gives an overlay its subnet a moment after the
/// create returns (longer on a loaded manager: seen as an overlay with no
/// subnet, whose pods then had no names), so an empty answer is asked
/// again, up to [`SUBNET_WAIT`].
async fn allocated_subnets(docker: &Docker, id: &str) -> Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + SUBNET_WAIT;
    loop {
        let inspect = bounded(
            "inspecting network",
            CALL_TIMEOUT,
            docker.inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>),
        )
        .await?;
        let subnets: Vec<String> = inspect
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .collect();
        if !subnets.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(subnets);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// How long [`allocated_subnets`] waits for an overlay's subnet.
const SUBNET_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Repairs a duplicate of the instance's network `name`. Docker 20.10 lets
/// two networks share a name (servers of one store starting at once made
/// two; an older version could too), and every container start then fails
/// with "network ... is ambiguous". The earliest made (then the lowest id)
/// is kept, as every server judges alike, and the later ones carrying this
/// instance's label are removed; a network of the name that is not the
/// instance's is never touched. One that cannot be removed (a container
/// still uses it) is an error naming it and the fix.
pub(in crate::engine) async fn settle_duplicates(docker: &Docker, name: &str, instance: &str) -> Result<()> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let options = bollard::query_parameters::ListNetworksOptionsBuilder::new()
        .filters(&filters)
        .build();
    let listed = bounded("listing networks", CALL_TIMEOUT, docker.list_networks(Some(options))).await?;
    // The engine's name filter matches substrings.
    let mut same: Vec<_> = listed
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| {
            let ours = n
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_INSTANCE))
                .map(String::as_str)
                == Some(instance);
            Some((n.created, n.id?, ours))
        })
        .collect();
    if same.len() < 2 {
        return Ok(());
    }
    // The date is a string or a time, by bollard's features: either orders.
    same.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let kept = same[0].1.clone();
    for (_, id, ours) in same.into_iter().skip(1) {
        if !ours {
            tracing::warn!(
                network = name,
                id,
                kept,
                "another network has the instance network's name and is not this instance's: left alone"
            );
            continue;
        }
        tracing::warn!(
            network = name,
            id,
            kept,
            "removing a duplicate of the instance network (two networks of one name make every start fail)"
        );
        if let Err(e) = ok_unless(
            bounded("removing network", CALL_TIMEOUT, docker.remove_network(&id)).await,
            &[404],
        ) {
            return Err(Error::Docker {
                context: format!("network {name}"),
                source: format!(
                    "two networks have this name (kept {kept}); the duplicate {id} could not be removed ({e}): \
                     disconnect its containers and run `docker network rm {id}`"
                )
                .into(),
            });
        }
    }
    Ok(())
}

/// The name of a network other than `ours` whose IPv4 subnet overlaps `subnet`.
async fn overlapping_network(docker: &Docker, ours: &str, subnet: &str) -> Result<Option<String>> {
    let Some((base, len)) = v4_subnet(subnet) else {
        return Ok(None);
    };
    let networks = bounded(
        "listing networks",
        CALL_TIMEOUT,
        docker.list_networks(None::<bollard::query_parameters::ListNetworksOptions>),
    )
    .await?;
    let overlaps = |cidr: &str| {
        let Some((addr, other_len)) = cidr
            .split_once('/')
            .and_then(|(a, l)| Some((a.parse::<std::net::Ipv4Addr>().ok()?, l.parse::<u8>().ok()?)))
        else {
            return false;
        };
        // Two CIDR blocks overlap when the shorter prefix contains the other's base.
        let shorter = len.min(other_len).min(32);
        let mask = if shorter == 0 { 0 } else { u32::MAX << (32 - shorter) };
        (u32::from(addr) & mask) == (base & mask)
    };
    Ok(networks.into_iter().find_map(|n| {
        if n.id.as_deref() == Some(ours) {
            return None;
        }
        let hit = n
            .ipam
            .as_ref()?
            .config
            .as_ref()?
            .iter()
            .any(|c| c.subnet.as_deref().is_some_and(overlaps));
        hit.then(|| n.name.unwrap_or_default())
    }))
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_responder_takes_the_last_address_outside_the_range_handed_out() {
        assert_eq!(
            names_layout("172.20.0.0/16"),
            Some(("172.20.0.0/17".to_string(), "172.20.255.254".parse().expect("ip")))
        );
        assert_eq!(
            names_layout("10.0.5.0/24"),
            Some(("10.0.5.0/25".to_string(), "10.0.5.254".parse().expect("ip")))
        );
        // Too small for a gateway, replicas and the responder; not IPv4.
        assert_eq!(names_layout("10.0.5.0/30"), None);
        assert_eq!(names_layout("fd00::/64"), None);
    }

    #[test]
    fn only_a_network_made_with_that_range_has_a_responder_address() {
        let network = |subnet: &str, range: Option<&str>| NetworkInspect {
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ip_range: range.map(str::to_string),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            names_address_of(&network("10.0.5.0/24", Some("10.0.5.0/25"))),
            Some("10.0.5.254".parse().expect("ip"))
        );
        // Made by an older version (no range), or with another range.
        assert_eq!(names_address_of(&network("10.0.5.0/24", None)), None);
        assert_eq!(names_address_of(&network("10.0.5.0/24", Some("10.0.5.128/25"))), None);
    }
}

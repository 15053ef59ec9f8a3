//! `expose`: TCP ports of a pod the ingress publishes on the host.

use serde::{Deserialize, Serialize};

/// Most entries of `expose` per pod.
pub const MAX_EXPOSE: usize = 16;

/// One entry of `expose`: the ingress accepts TCP connections on `listen`
/// (on the host) and passes each to a ready replica's `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Expose {
    /// The replicas' TCP port (1 to 65535).
    pub port: u16,
    /// Where the ingress listens on the host: `IPv4:PORT` (`127.0.0.1:15432`,
    /// `0.0.0.0:15432`), `[IPv6]:PORT` (`[::1]:15432`, `[::]:15432`), or a
    /// port alone (`"15432"`) for 127.0.0.1. The port (1 to 65535, not 80
    /// or 443) is unique in the instance.
    #[cfg_attr(feature = "openapi", schema(example = "127.0.0.1:15432"))]
    pub listen: String,
}

impl Expose {
    /// An entry publishing the replicas' `port` on `listen`.
    pub fn new(port: u16, listen: impl Into<String>) -> Self {
        Expose {
            port,
            listen: listen.into(),
        }
    }

    /// The host address of `listen` (a port alone means 127.0.0.1), or what is wrong with it.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, String> {
        parse_listen(&self.listen)
    }
}

/// `expose[].listen` as a host address: `IPv4:PORT`, `[IPv6]:PORT`, or a
/// port alone for 127.0.0.1. Decimal ports without leading zeros, 1 to
/// 65535, not 80 or 443.
pub fn parse_listen(listen: &str) -> Result<std::net::SocketAddr, String> {
    let bad = || {
        "must be IPv4:PORT (e.g. \"127.0.0.1:15432\", \"0.0.0.0:15432\"), [IPv6]:PORT (\"[::1]:15432\", \"[::]:15432\") or a port alone (\"15432\", on 127.0.0.1)"
            .to_string()
    };
    let (ip, port): (std::net::IpAddr, &str) = match listen.rsplit_once(':') {
        Some((ip, port)) => match ip.strip_prefix('[').and_then(|ip| ip.strip_suffix(']')) {
            // No zone (`%eth0`): the engine's port binding cannot carry one.
            // Nor an embedded IPv4 (`::ffff:1.2.3.4`): write that one as IPv4.
            Some(v6) if !v6.contains('.') => (v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?.into(), port),
            Some(_) => return Err(bad()),
            None => (ip.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?.into(), port),
        },
        None => (std::net::Ipv4Addr::LOCALHOST.into(), listen),
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number = match port.parse::<u16>() {
        Ok(0) => return Err("the port must be 1 to 65535 (clients need to know it)".into()),
        Ok(_) if port.starts_with('0') => return Err(format!("{port:?}: write the port without leading zeros")),
        Ok(n) => n,
        Err(_) => return Err(format!("{port:?}: the port must be 1 to 65535")),
    };
    if number == 80 || number == 443 {
        return Err(format!(
            "port {number} is the ingress container's own HTTP or HTTPS port; choose another"
        ));
    }
    Ok(std::net::SocketAddr::from((ip, number)))
}

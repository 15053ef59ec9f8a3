//! A service's `ports` and `expose`: the pod's `port`, the first published
//! HTTP port routed through the ingress, other TCP ports as `expose` entries.

use dubernetes_api::{Access, CheckKind, Expose, HealthCheck};
use serde_yaml_ng::Value;

use super::{Port, Service};
use crate::compose::values::{key_text, port_number, scalar};

/// Container ports that speak something other than HTTP, so that a published
/// one is a TCP port (not a route of the ingress): databases, queues, mail, SSH...
const TCP_PORTS: &[u16] = &[
    21, 22, 23, 25, 53, 110, 143, 389, 465, 587, 636, 993, 995, 1433, 1521, 1883, 2049, 2181, 3306, 4222, 5432, 5672,
    6379, 8883, 9042, 9092, 11211, 26257, 27017, 33060,
];

/// The port an image listens on, for services that name none (so that the
/// pod's readiness check, a TCP connect to `port`, can pass).
const IMAGE_PORTS: &[(&str, u16)] = &[
    ("postgres", 5432),
    ("postgis", 5432),
    ("mysql", 3306),
    ("mariadb", 3306),
    ("redis", 6379),
    ("valkey", 6379),
    ("mongo", 27017),
    ("memcached", 11211),
    ("rabbitmq", 5672),
];

/// `[IP:][HOST:]CONTAINER[/PROTOCOL]`, one port (no range): (IP, host port, container port, udp).
pub(in crate::compose) fn parse_short_port(text: &str) -> Option<(Option<String>, Option<String>, u16, bool)> {
    let (spec, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let udp = match protocol {
        "tcp" => false,
        "udp" => true,
        _ => return None,
    };
    // An IPv6 host IP is in brackets: [::1]:8080:80.
    let (ip, rest) = match spec.strip_prefix('[') {
        Some(r) => {
            let (ip, rest) = r.split_once("]:")?;
            (Some(ip.to_string()), rest)
        }
        None => (None, spec),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, published, target) = match (ip, parts.as_slice()) {
        (None, [target]) => (None, None, *target),
        (ip, [published, target]) => (ip, Some(*published), *target),
        (None, [ip, published, target]) => (Some(ip.to_string()), Some(*published), *target),
        _ => return None,
    };
    let target: u16 = target.parse().ok().filter(|p| *p > 0)?;
    let published = published.filter(|p| !p.is_empty());
    if published.is_some_and(|p| p.parse::<u16>().is_err()) {
        return None;
    }
    Some((ip, published.map(str::to_string), target, udp))
}

/// The port well-known images listen on (`postgres:16` → 5432).
fn image_port(image: &str) -> Option<u16> {
    let repo = image.split(['@']).next().unwrap_or(image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let name = last.split(':').next().unwrap_or(last);
    IMAGE_PORTS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

impl Service<'_> {
    pub(super) fn ports(&mut self, value: &Value) -> Vec<Port> {
        let Value::Sequence(items) = value else {
            self.lost("ports", "a list");
            return Vec::new();
        };
        let mut ports = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("ports[{i}]");
            let port = match item {
                Value::Mapping(m) => {
                    let target = m.get("target").and_then(port_number);
                    let Some(target) = target else {
                        self.lost(&path, "`target` is a port number");
                        continue;
                    };
                    for k in m.keys().map(key_text) {
                        if !matches!(
                            k.as_str(),
                            "target" | "published" | "protocol" | "host_ip" | "mode" | "name"
                        ) && !k.starts_with("x-")
                        {
                            self.lost(&format!("{path}.{k}"), "no equivalent for a port");
                        }
                    }
                    if m.get("mode").and_then(Value::as_str) == Some("host") {
                        self.lost(
                            &format!("{path}.mode"),
                            "replicas publish no host ports; the ingress does",
                        );
                    }
                    Port {
                        path,
                        target,
                        published: m.get("published").and_then(scalar),
                        host_ip: m.get("host_ip").and_then(Value::as_str).map(str::to_string),
                        udp: m.get("protocol").and_then(Value::as_str) == Some("udp"),
                    }
                }
                other => {
                    let Some(text) = scalar(other) else {
                        self.lost(&path, "a port is a string, a number or a mapping");
                        continue;
                    };
                    match parse_short_port(&text) {
                        Some((host_ip, published, target, udp)) => Port {
                            path,
                            target,
                            published,
                            host_ip,
                            udp,
                        },
                        None => {
                            self.lost(
                                &path,
                                &format!("{text:?}: a port range, or not [IP:][HOST:]CONTAINER[/PROTOCOL]: one port per entry maps"),
                            );
                            continue;
                        }
                    }
                }
            };
            ports.push(port);
        }
        ports
    }

    pub(super) fn expose(&mut self, value: &Value) -> Vec<u16> {
        let Value::Sequence(items) = value else {
            self.lost("expose", "a list of ports");
            return Vec::new();
        };
        let mut ports = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let text = scalar(item).unwrap_or_default();
            match text.trim_end_matches("/tcp").parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => self.lost(&format!("expose[{i}]"), "one TCP port per entry maps"),
            }
        }
        ports
    }

    /// Chooses the pod's `port` and routes the first published HTTP port
    /// through the ingress; other published TCP ports become `expose`
    /// entries, UDP ports are lost (with why).
    pub(super) fn ports_and_access(&mut self, ports: &[Port], exposed: &[u16]) {
        let is_tcp = |p: u16| TCP_PORTS.contains(&p);
        let http = ports.iter().find(|p| !p.udp && !is_tcp(p.target));
        let port = http
            .map(|p| p.target)
            .or_else(|| exposed.first().copied())
            .or_else(|| ports.iter().find(|p| !p.udp).map(|p| p.target))
            .or_else(|| image_port(&self.spec.image));
        match port {
            Some(port) => self.spec.port = port,
            None => {
                self.spec.health = Some(HealthCheck::new(CheckKind::None));
                self.notes
                    .push("no port: the pod is ready as soon as its container runs (health: {type: none})".to_string());
            }
        }
        if let Some(p) = port
            && ports.is_empty()
            && exposed.is_empty()
        {
            self.notes.push(format!(
                "port {p}: what the image {} listens on (no ports in the compose file)",
                self.spec.image
            ));
        }
        for e in exposed.iter().filter(|e| Some(**e) != port) {
            self.notes.push(format!(
                "expose: port {e} needs nothing: other pods reach {}:{e} on the instance network",
                self.spec.name
            ));
        }
        for p in ports {
            let routed = http.is_some_and(|h| std::ptr::eq(h, p));
            if p.udp {
                self.lost(&p.path, "UDP ports are not published: the ingress routes HTTP");
            } else if routed {
                let host = format!("{}.{}", self.spec.name, self.options.domain);
                let mut access = Access::default();
                access.host = Some(host.clone());
                self.spec.access = Some(access);
                let published = p.published.as_deref().unwrap_or("a random port");
                self.notes.push(format!(
                    "ports: container port {} (published on {published} by compose) is served by the ingress as http://{host}/",
                    p.target
                ));
                if let Some(ip) = p.host_ip.as_deref().filter(|ip| !matches!(*ip, "0.0.0.0" | "::" | "")) {
                    self.lost(
                        &p.path,
                        &format!(
                            "published on {ip} only; the ingress serves every host of every pod on its own listen address"
                        ),
                    );
                }
            } else {
                self.expose_port(p);
            }
        }
    }

    /// A published port that the ingress does not route as HTTP (a TCP port,
    /// a second port) becomes an `expose` entry: the ingress listens on the
    /// host port Compose published it on, on 127.0.0.1 (Compose publishes on
    /// every interface; we open nothing to other machines unless asked).
    fn expose_port(&mut self, p: &Port) {
        let reach = format!("other pods still reach {}:{}", self.spec.name, p.target);
        let ip = match p.host_ip.as_deref() {
            None | Some("" | "0.0.0.0" | "::") => None,
            Some(ip) => match ip.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.lost(
                        &p.path,
                        &format!("published on {ip}: `expose` listens on an IPv4 address only; {reach}"),
                    );
                    return;
                }
            },
        };
        let host_port = p.published.clone().unwrap_or_else(|| p.target.to_string());
        let listen = format!("{}:{host_port}", ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST));
        if let Err(e) = dubernetes_api::parse_listen(&listen) {
            self.lost(
                &p.path,
                &format!("cannot expose port {} on {listen}: {e}; {reach}", p.target),
            );
            return;
        }
        let published = match &p.published {
            Some(port) => format!("published on {port} by compose"),
            None => "published on a random port by compose".to_string(),
        };
        let widen = if ip.is_none() {
            format!(
                ", on every interface; here on 127.0.0.1 only: write listen: \"0.0.0.0:{host_port}\" to accept other machines"
            )
        } else {
            String::new()
        };
        self.notes.push(format!(
            "ports: container port {} ({published}{widen}) is exposed as TCP on {listen} through the ingress",
            p.target
        ));
        self.spec.expose.push(Expose::new(p.target, listen));
    }
}

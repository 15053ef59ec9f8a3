//! The fake engine's network: a TCP connect reaches a running replica that
//! listens on its port.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;

use super::{FakeEngine, lock, version_of};
use crate::engine::{ContainerState, Network};

#[async_trait]
impl Network for FakeEngine {
    async fn tcp_connect(&self, addr: SocketAddr, _timeout: Duration) -> std::io::Result<()> {
        let s = lock(&self.state);
        let serves = s.containers.values().any(|c| {
            c.state == ContainerState::Running
                && c.ip.map(IpAddr::V4) == Some(addr.ip())
                && c.spec.port == addr.port()
                && s.images.get(&c.spec.image).is_some_and(|a| a.serves)
        });
        if serves {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))
        }
    }

    async fn http_get(
        &self,
        addr: SocketAddr,
        path: &str,
        _host: &str,
        timeout: Duration,
    ) -> std::io::Result<(u16, String)> {
        if addr.ip().is_loopback() {
            let s = lock(&self.state);
            let version = s
                .containers
                .values()
                .find(|c| c.state == ContainerState::Running && c.published == Some(addr.port()))
                .and_then(|c| c.live_config.as_deref().and_then(version_of));
            return match version {
                Some(v) if path == "/.dubernetes/config-version" => Ok((200, v)),
                Some(_) => Ok((404, String::new())),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused",
                )),
            };
        }
        self.tcp_connect(addr, timeout).await.map(|()| (200, "ok".to_string()))
    }
}

//! TCP services, the pure part: pods' `expose` entries as [`Stream`]s, and
//! what a listener container is made of (its `nginx.conf`, rendered from
//! `templates/nginx-stream.conf`; the njs router; the hash that says when a
//! container no longer fits). The containers themselves are
//! [`super::listeners`]'.
//!
//! One listener is one container, publishing one host address: the engine
//! publishes ports only when it creates a container, so a listener fixed in
//! a container of its own is the only way a change of one `expose` entry
//! touches nothing else (not the HTTP ingress, not another pod's listener).
//! Which replicas serve a listener is data, as for HTTP: the endpoint files
//! `tcp_<listen port>.{a,b}` that `templates/ingress-stream.js` reads per
//! connection, rewritten without a reload when replicas come, go or turn
//! unready.
//!
//! Inside its container a listener listens on its host port's number
//! (unique in the instance: the store refuses a second pod on it).

use std::net::SocketAddr;

use askama::Template;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One TCP listener: a pod's `expose` entry and the ready replicas behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stream {
    pub pod: String,
    /// The replicas' port.
    pub port: u16,
    /// Where it is published on the host; the container listens on its port.
    pub listen: SocketAddr,
    /// `ip:port` of each ready replica, sorted.
    pub servers: Vec<String>,
    /// The endpoint files' name: `tcp_<listen port>`.
    pub key: String,
}

impl Stream {
    pub(crate) fn new(pod: &str, port: u16, listen: SocketAddr, mut servers: Vec<String>) -> Stream {
        servers.sort();
        servers.dedup();
        Stream {
            pod: pod.to_string(),
            port,
            listen,
            servers,
            key: endpoints_key(listen.port()),
        }
    }
}

/// The endpoint files' name of the listener on `port` (a name no pod can
/// have: pod names are DNS labels).
pub(crate) fn endpoints_key(port: u16) -> String {
    format!("tcp_{port}")
}

/// Changes when what a listener container is made of changes (its files,
/// its config): a container made for another layout is replaced.
const LAYOUT: &str = "listener-1";

/// What fixes a listener container: the image, the host address, the
/// network and the container limits. Not the pod or its port: those are in
/// the endpoint files, so a listen address that passes from one pod (or one
/// replica port) to another keeps its container.
pub(crate) fn listener_hash(
    image: &str,
    listen: SocketAddr,
    network: &str,
    limits: &crate::owned_engine::ContainerLimits,
) -> String {
    let digest = Sha256::digest(format!(
        "{image}|{listen}|{network}|{LAYOUT}|log={}x{}|pids={:?}|nnp={}",
        limits.log_max_bytes, limits.log_max_files, limits.pids, limits.no_new_privileges
    ));
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Most connections one listener's nginx worker holds (client and replica
/// sides count one each: about half as many clients).
pub(crate) const LISTENER_CONNECTIONS: u32 = 4096;

#[derive(Template)]
#[template(path = "nginx-stream.conf", escape = "none")]
struct StreamConf<'a> {
    instance: &'a str,
    listen: SocketAddr,
    port: u16,
    modules: &'a str,
    connections: u32,
}

/// Debian's dynamic stream module (libnginx-mod-stream; what
/// `dubernetes/nginx:local-4` ships). The official nginx images build it in:
/// loaded only when the file is there.
pub(crate) const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The stream njs module (libnginx-mod-stream-js, or the official images'
/// nginx-module-njs): a listener cannot route without it.
pub(crate) const STREAM_JS_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_js_module.so";

/// The files of a listener container on `listen`, relative to `/etc`: its
/// `nginx.conf` (the image's is replaced: a listener serves no HTTP) and
/// the njs router. `stream_module`: whether the image has the stream module
/// as a file to load.
pub(crate) fn files(instance: &str, listen: SocketAddr, stream_module: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let mut modules = String::new();
    if stream_module {
        modules.push_str(&format!("load_module {STREAM_MODULE};\n"));
    }
    modules.push_str(&format!("load_module {STREAM_JS_MODULE};"));
    let conf = StreamConf {
        instance,
        listen,
        port: listen.port(),
        modules: &modules,
        connections: LISTENER_CONNECTIONS,
    }
    .render()
    .map_err(|e| Error::Ingress(format!("rendering the TCP listener's config failed: {e}")))?;
    Ok(vec![
        ("nginx/nginx.conf".to_string(), conf.into_bytes()),
        (
            "dubernetes/ingress-stream.js".to_string(),
            include_str!("../../../templates/ingress-stream.js").as_bytes().to_vec(),
        ),
        (
            super::container::ENDPOINTS_JS.0.to_string(),
            super::container::ENDPOINTS_JS.1.as_bytes().to_vec(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Stream {
        Stream::new(
            "db",
            5432,
            "127.0.0.1:15432".parse().expect("addr"),
            vec!["10.0.0.3:5432".into(), "10.0.0.2:5432".into()],
        )
    }

    fn text(files: &[(String, Vec<u8>)], path: &str) -> String {
        String::from_utf8(files.iter().find(|(p, _)| p == path).expect("file").1.clone()).expect("utf-8")
    }

    #[test]
    fn a_listener_config_is_a_stream_block_with_its_port_only() {
        let files = files("i", db().listen, true).expect("files");
        let conf = text(&files, "nginx/nginx.conf");
        assert!(conf.contains("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nload_module /usr/lib/nginx/modules/ngx_stream_js_module.so;"), "{conf}");
        assert!(conf.contains("listen 15432;"), "{conf}");
        assert!(conf.contains("js_set $dub_stream_target dubstream.backend;"));
        assert!(conf.contains("worker_connections 4096;"), "{conf}");
        assert!(!conf.contains("http {"), "a listener serves no HTTP: {conf}");
        assert!(!conf.contains("10.0.0.2"), "replicas are not in the config: {conf}");
        assert!(text(&files, "dubernetes/ingress-stream.js").contains("import endpoints from 'ingress-endpoints.js'"));
        assert!(text(&files, "dubernetes/ingress-endpoints.js").contains("function servers(name)"));
        // A built-in stream module (the official images) is not loaded.
        let conf = text(&files_of(false), "nginx/nginx.conf");
        assert!(!conf.contains("ngx_stream_module.so"), "{conf}");
        assert!(conf.contains("ngx_stream_js_module.so"), "{conf}");
    }

    fn files_of(stream_module: bool) -> Vec<(String, Vec<u8>)> {
        files("i", db().listen, stream_module).expect("files")
    }

    #[test]
    fn ipv6_listeners_listen_on_their_port() {
        let listen: SocketAddr = "[::1]:15433".parse().expect("addr");
        let conf = text(&files("i", listen, true).expect("files"), "nginx/nginx.conf");
        assert!(conf.contains("listen 15433;"), "{conf}");
        assert!(conf.contains("TCP listener container on [::1]:15433"), "{conf}");
    }

    #[test]
    fn the_hash_is_the_container_not_the_pod_or_replicas() {
        let limits = crate::owned_engine::ContainerLimits::default();
        let hash = |listen: &str, image: &str| listener_hash(image, listen.parse().expect("addr"), "net", &limits);
        assert_eq!(hash("127.0.0.1:15432", "img"), hash("127.0.0.1:15432", "img"));
        assert_ne!(hash("127.0.0.1:15432", "img"), hash("0.0.0.0:15432", "img"));
        assert_ne!(hash("127.0.0.1:15432", "img"), hash("127.0.0.1:15433", "img"));
        assert_ne!(hash("127.0.0.1:15432", "img"), hash("127.0.0.1:15432", "other"));
        assert_eq!(db().key, "tcp_15432");
        assert_eq!(
            db().servers,
            vec!["10.0.0.2:5432".to_string(), "10.0.0.3:5432".to_string()]
        );
    }
}

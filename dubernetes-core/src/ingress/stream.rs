//! TCP services: pods' `expose` entries as listeners of the ingress's
//! `stream {}` block (`templates/nginx-stream.conf`), each published on the
//! host address the pod asked for.
//!
//! The listeners and their published ports are fixed for the life of the
//! ingress container: a change of the set (a pod adds, moves or drops an
//! entry) makes a new container, since the engine publishes ports only when
//! it creates one. Which replicas serve a listener is data, as for HTTP: the
//! endpoint files `tcp_<listen port>.{a,b}` (a name no pod can have: pod
//! names are DNS labels) that `templates/ingress-stream.js` reads per
//! connection, rewritten without a reload when replicas come, go or turn
//! unready.
//!
//! Inside the container a listener listens on its host port's number (unique
//! in the instance: the store refuses a second pod on it, the API refuses
//! 80 and 443, the container's own HTTP and HTTPS ports).

use std::net::SocketAddr;

use askama::Template;

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
            key: format!("tcp_{}", listen.port()),
        }
    }
}

/// What fixes an ingress container's listeners (not the replicas behind
/// them): part of its config hash, so a change makes a new container.
pub(crate) fn layout(streams: &[Stream]) -> String {
    let mut parts: Vec<String> = streams
        .iter()
        .map(|s| format!("{}:{}@{}", s.pod, s.port, s.listen))
        .collect();
    parts.sort();
    parts.join(",")
}

/// Container port and host address of each listener.
pub(crate) fn published(streams: &[Stream]) -> Vec<(u16, SocketAddr)> {
    streams.iter().map(|s| (s.listen.port(), s.listen)).collect()
}

#[derive(Template)]
#[template(path = "nginx-stream.conf", escape = "none")]
struct StreamConf<'a> {
    instance: &'a str,
    streams: &'a [Stream],
}

/// Debian's dynamic modules (libnginx-mod-stream, libnginx-mod-stream-js):
/// what `dubernetes/nginx:local-4` ships.
const STREAM_MODULES: &str = "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
load_module /usr/lib/nginx/modules/ngx_stream_js_module.so;\n";

/// Where the rendered listeners go, relative to `/etc`.
pub(crate) const STREAM_FILE: &str = "nginx/dubernetes-stream.conf";

/// The files of the TCP side, relative to `/etc`: the main config (given)
/// with the stream modules and a `stream {}` block when there are
/// listeners, the listeners, the njs router. Without listeners the main
/// config is unchanged (an image without the stream modules still works).
pub(crate) fn files(instance: &str, main_conf: &str, streams: &[Stream]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = vec![(
        "dubernetes/ingress-stream.js".to_string(),
        include_str!("../../../templates/ingress-stream.js").as_bytes().to_vec(),
    )];
    if streams.is_empty() {
        files.push(("nginx/nginx.conf".into(), main_conf.as_bytes().to_vec()));
        return Ok(files);
    }
    let mut sorted = streams.to_vec();
    sorted.sort_by_key(|s| s.listen.port());
    let conf = StreamConf {
        instance,
        streams: &sorted,
    }
    .render()
    .map_err(|e| Error::Ingress(format!("rendering the stream config failed: {e}")))?;
    let main = format!("{STREAM_MODULES}{main_conf}\nstream {{\n    include /etc/{STREAM_FILE};\n}}\n");
    files.push(("nginx/nginx.conf".into(), main.into_bytes()));
    files.push((STREAM_FILE.to_string(), conf.into_bytes()));
    Ok(files)
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

    #[test]
    fn no_listener_leaves_the_main_config_alone() {
        let files = files("i", "events {}\n", &[]).expect("files");
        let main = files.iter().find(|(p, _)| p == "nginx/nginx.conf").expect("main");
        assert_eq!(main.1, b"events {}\n");
        assert!(!files.iter().any(|(p, _)| p == STREAM_FILE));
    }

    #[test]
    fn listeners_render_with_modules_and_a_stream_block() {
        let files = files("i", "events {}\n", &[db()]).expect("files");
        let text = |path: &str| {
            String::from_utf8(files.iter().find(|(p, _)| p == path).expect("file").1.clone()).expect("utf-8")
        };
        let main = text("nginx/nginx.conf");
        assert!(main.starts_with("load_module /usr/lib/nginx/modules/ngx_stream_module.so;"));
        assert!(main.contains("stream {\n    include /etc/nginx/dubernetes-stream.conf;\n}"));
        let conf = text(STREAM_FILE);
        assert!(conf.contains("listen 15432;"), "{conf}");
        assert!(conf.contains("js_set $dub_stream_target dubstream.backend;"));
        assert!(!conf.contains("10.0.0.2"), "replicas are not in the config: {conf}");
    }

    #[test]
    fn layout_ignores_replicas_and_order() {
        let mut other = db();
        other.servers.clear();
        assert_eq!(layout(&[db()]), layout(&[other]));
        let a = Stream::new("a", 1, "127.0.0.1:2000".parse().expect("addr"), vec![]);
        assert_eq!(layout(&[db(), a.clone()]), layout(&[a, db()]));
        assert_eq!(db().key, "tcp_15432");
        assert_eq!(
            db().servers,
            vec!["10.0.0.2:5432".to_string(), "10.0.0.3:5432".to_string()]
        );
    }
}

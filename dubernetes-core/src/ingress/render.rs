//! Rendering the nginx config: routes in, askama's `templates/nginx.conf`
//! out, with the config's version and nginx's server-name hash sized to fit.

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One host routed to one pod's ready replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub pod: String,
    pub host: String,
    /// `ip:port` of each ready replica.
    pub servers: Vec<String>,
    /// Container ids behind `servers`.
    pub ids: Vec<String>,
    /// HTTPS for the host, when its certificate is in the ingress.
    pub tls: Option<RouteTls>,
}

/// The HTTPS side of a route: nginx serves the host on 443 with the
/// certificate in `dubernetes/tls/POD.pem`, and redirects HTTP to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteTls {
    /// A short hash of the certificate file: a new certificate changes the
    /// config text, so it is checked and reloaded like any other change.
    pub fingerprint: String,
    /// `:PORT` for redirects when HTTPS is not on 443 (empty on 443).
    pub port_suffix: String,
}

impl Route {
    /// A route; server addresses are built from parsed IPs only.
    #[cfg(test)]
    pub(crate) fn new(pod: &str, host: &str, mut servers: Vec<(IpAddr, u16)>) -> Route {
        Self::with_ids(pod, host, servers.drain(..).map(|s| (s, String::new())).collect())
    }

    /// A route whose servers are the given containers.
    pub(crate) fn with_ids(pod: &str, host: &str, mut servers: Vec<((IpAddr, u16), String)>) -> Route {
        servers.sort();
        servers.dedup_by(|a, b| a.0 == b.0);
        let ids = servers
            .iter()
            .map(|(_, id)| id.clone())
            .filter(|id| !id.is_empty())
            .collect();
        let servers: Vec<(IpAddr, u16)> = servers.into_iter().map(|(s, _)| s).collect();
        Route {
            ids,
            tls: None,
            pod: pod.to_string(),
            host: host.to_string(),
            servers: servers
                .into_iter()
                .map(|(ip, port)| SocketAddr::new(ip, port).to_string())
                .collect(),
        }
    }
}

/// nginx's server-name hash sizes for a set of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HashSizes {
    /// `server_names_hash_bucket_size`: bytes per bucket.
    pub bucket_size: usize,
    /// `server_names_hash_max_size`: most buckets nginx may use.
    pub max_size: usize,
}

/// Bytes one exact name of `len` characters takes in an nginx hash bucket on
/// a 64-bit build (`NGX_HASH_ELT_SIZE` in `ngx_hash.c`): a value pointer, a
/// 2-byte length and the name, aligned to a pointer.
fn hash_element_size(len: usize) -> usize {
    8 + (len + 2).div_ceil(8) * 8
}

/// Sizes nginx's server-name hash so every host name the API accepts fits
/// (RFC 1123: up to 253 characters). nginx refuses the whole config when one
/// name does not fit a bucket ("could not build server_names_hash"): a bucket
/// must hold its largest element plus the terminating null pointer. The
/// default bucket (64 bytes on x86_64, one cache line) holds names of at most
/// 46 characters; a 253-character name needs 512. Powers of two, as nginx's
/// documentation asks, and never below the default. `max_size` allows about
/// eight buckets per name (at least nginx's default 512), so nginx finds a
/// hash with few collisions quickly; the memory is a few bytes per bucket.
pub(crate) fn hash_sizes(routes: &[Route]) -> HashSizes {
    let longest = routes.iter().map(|r| r.host.len()).max().unwrap_or(0).max(1);
    let bucket_size = (hash_element_size(longest) + 8).next_power_of_two().max(64);
    // +1: the default server's `_`.
    let max_size = ((routes.len() + 1) * 8).next_power_of_two().max(512);
    HashSizes { bucket_size, max_size }
}

#[derive(Template)]
#[template(path = "nginx.conf", escape = "none")]
struct NginxConf<'a> {
    instance: &'a str,
    /// Whether any route serves HTTPS (then a 443 default server refuses unknown names).
    any_tls: bool,
    version: &'a str,
    routes: &'a [Route],
    hash: HashSizes,
}

/// A short hash of the routes' hosts (not their replicas, which are not in
/// the config): served by the config itself so the controller can tell when
/// a reload is live.
fn version_of(instance: &str, routes: &[Route]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(instance.as_bytes());
    for r in routes {
        hasher.update(format!("{}|{}\n", r.pod, r.host).as_bytes());
        if let Some(tls) = &r.tls {
            hasher.update(format!("tls|{}|{}\n", tls.fingerprint, tls.port_suffix).as_bytes());
        }
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Renders the nginx config for these routes; returns it with its version.
pub(crate) fn render(instance: &str, routes: &[Route]) -> Result<(String, String)> {
    let version = version_of(instance, routes);
    let text = NginxConf {
        instance,
        any_tls: routes.iter().any(|r| r.tls.is_some()),
        version: &version,
        routes,
        hash: hash_sizes(routes),
    }
    .render()
    .map_err(|e| Error::Ingress(format!("rendering nginx.conf: {e}")))?;
    Ok((text, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn renders_one_server_block_per_pod_and_no_replicas() {
        let routes = [
            Route::new("web", "web.local", vec![(ip("172.18.0.3"), 80), (ip("172.18.0.2"), 80)]),
            Route::new("api", "api.example.com", vec![(ip("172.18.0.4"), 8080)]),
        ];
        let (conf, version) = render("t", &routes).expect("render");
        assert!(
            conf.contains("server_name web.local;\n    default_type text/plain;\n    set $dub_pod web;"),
            "{conf}"
        );
        assert!(conf.contains("set $dub_pod api;"), "{conf}");
        assert_eq!(conf.matches("proxy_pass http://$dub_target;").count(), 4, "{conf}");
        // Replicas are not in the config: they change without a reload.
        assert!(!conf.contains("172.18.0"), "{conf}");
        assert!(!conf.contains("upstream "), "{conf}");
        let other = [
            Route::new("web", "web.local", vec![(ip("172.18.0.9"), 80)]),
            Route::new("api", "api.example.com", vec![]),
        ];
        assert_eq!(render("t", &other).expect("render"), (conf, version));
    }

    #[test]
    fn unknown_hosts_get_404() {
        let (conf, _) = render("t", &[]).expect("render");
        assert!(conf.contains("listen 80 default_server;"));
        assert!(conf.contains("return 404"));
        assert!(!conf.contains("$dub_pod"));
    }

    #[test]
    fn a_host_without_ready_replicas_gets_503() {
        let (conf, _) = render("t", &[Route::new("web", "web.local", vec![])]).expect("render");
        assert!(conf.contains("server_name web.local;"), "{conf}");
        assert!(
            conf.contains("return 503 \"pod web has no ready replica\\n\";"),
            "{conf}"
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        let a = [Route::new(
            "web",
            "web.local",
            vec![(ip("10.0.0.2"), 80), (ip("10.0.0.1"), 80)],
        )];
        let b = [Route::new(
            "web",
            "web.local",
            vec![(ip("10.0.0.1"), 80), (ip("10.0.0.2"), 80)],
        )];
        assert_eq!(render("t", &a).expect("render"), render("t", &b).expect("render"));
    }

    /// A valid host name of exactly `len` characters (labels of at most 63).
    fn host_of(len: usize, fill: char) -> String {
        let mut labels = Vec::new();
        let mut left = len;
        while left > 0 {
            let mut n = left.min(63);
            // Never leave a single character for a label after a dot.
            if left - n == 1 {
                n -= 1;
            }
            labels.push(fill.to_string().repeat(n));
            left = left.saturating_sub(n + 1);
        }
        labels.join(".")
    }

    #[test]
    fn the_hash_fits_every_rfc_1123_length() {
        for len in 1..=253 {
            let host = host_of(len, 'a');
            assert_eq!(host.len(), len);
            let sizes = hash_sizes(&[Route::new("p", &host, vec![])]);
            // nginx's own check (ngx_hash_init): element + terminating pointer fit a bucket.
            assert!(sizes.bucket_size >= hash_element_size(len) + 8, "{len}");
            assert!(sizes.bucket_size.is_power_of_two() && sizes.bucket_size >= 64);
            assert!(sizes.bucket_size <= 512, "{len}: {}", sizes.bucket_size);
        }
        // Measured with nginx 1.22 (`nginx -t`): 46 fits the default 64, 47 and the
        // 51-character preview host need 128, 200 needs 256, 253 needs 512.
        let bucket = |len| hash_sizes(&[Route::new("p", &host_of(len, 'a'), vec![])]).bucket_size;
        assert_eq!(bucket(46), 64);
        assert_eq!(bucket(47), 128);
        assert_eq!(bucket("feature-login-redesign.preview.staging.example.com".len()), 128);
        assert_eq!(bucket(200), 256);
        assert_eq!(bucket(253), 512);
        let many: Vec<Route> = (0..1000)
            .map(|i| Route::new("p", &format!("h{i}.local"), vec![]))
            .collect();
        assert!(hash_sizes(&many).max_size >= 8 * 1000);
        let (conf, _) = render("t", &many[..2]).expect("render");
        assert!(
            conf.contains("server_names_hash_bucket_size 64;\nserver_names_hash_max_size 512;"),
            "{conf}"
        );
    }

    #[test]
    fn tls_routes_get_a_443_server_and_a_redirect_that_keeps_the_acme_path() {
        let mut web = Route::new("web", "web.local", vec![(ip("10.0.0.2"), 80)]);
        web.tls = Some(RouteTls {
            fingerprint: "abc123".into(),
            port_suffix: ":8443".into(),
        });
        let plain = Route::new("api", "api.local", vec![(ip("10.0.0.3"), 80)]);
        let (conf, version) = render("t", &[web.clone(), plain.clone()]).expect("render");
        assert!(conf.contains("listen 443 ssl;\n    server_name web.local;"), "{conf}");
        assert!(
            conf.contains("ssl_certificate /etc/nginx/dubernetes/tls/web.pem;"),
            "{conf}"
        );
        assert!(conf.contains("ssl_protocols TLSv1.2 TLSv1.3;"), "{conf}");
        assert!(conf.contains("return 308 https://$host:8443$request_uri;"), "{conf}");
        assert!(conf.contains("ssl_reject_handshake on;"), "{conf}");
        assert_eq!(conf.matches("listen 443 ssl;").count(), 1, "only the TLS host: {conf}");
        assert_eq!(
            conf.matches("return 308").count(),
            1,
            "plain hosts are not redirected: {conf}"
        );
        assert!(conf.contains("location ^~ /.well-known/acme-challenge/"), "{conf}");
        // A new certificate is a new config.
        let mut renewed = web;
        renewed.tls = Some(RouteTls {
            fingerprint: "def456".into(),
            port_suffix: ":8443".into(),
        });
        let (conf2, version2) = render("t", &[renewed, plain.clone()]).expect("render");
        assert_ne!((conf.as_str(), version.as_str()), (conf2.as_str(), version2.as_str()));
        let (conf3, _) = render("t", &[plain]).expect("render");
        assert!(!conf3.contains("443"), "no HTTPS without TLS routes: {conf3}");
    }

    #[test]
    fn ipv6_replicas_are_bracketed() {
        let route = Route::new("web", "w.local", vec![(ip("fd00::2"), 80)]);
        assert_eq!(route.servers, ["[fd00::2]:80"]);
    }
}

//! Rendering the nginx config: routes in, askama's `templates/nginx.conf`
//! out, with the config's version and nginx's server-name hash sized to fit.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use askama::Template;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One pod's hosts (and path prefix) routed to its ready replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub pod: String,
    /// Exact names or `*.` wildcards (validated by the API), at least one.
    pub hosts: Vec<String>,
    /// The path prefix: `/`, or `/seg[/seg...]` without a trailing `/` (validated by the API).
    pub path: String,
    /// `client_max_body_size`, bytes.
    pub max_body: u64,
    /// `proxy_read_timeout` and `proxy_send_timeout`, seconds.
    pub timeout_secs: u64,
    /// `ip:port` of each ready replica.
    pub servers: Vec<String>,
    /// Container ids behind `servers`.
    pub ids: Vec<String>,
    /// HTTPS for the hosts, when its certificate is in the ingress.
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
            hosts: vec![host.to_string()],
            path: "/".into(),
            max_body: dubernetes_api::DEFAULT_MAX_BODY,
            timeout_secs: dubernetes_api::DEFAULT_INGRESS_TIMEOUT.as_secs(),
            servers: servers
                .into_iter()
                .map(|(ip, port)| SocketAddr::new(ip, port).to_string())
                .collect(),
        }
    }

    /// The same route for all of a pod's hosts, its path and limits.
    pub(crate) fn with_access(mut self, spec: &dubernetes_api::PodSpec) -> Route {
        let hosts = spec.hosts();
        if !hosts.is_empty() {
            self.hosts = hosts.into_iter().map(str::to_string).collect();
        }
        self.path = spec.route_path().to_string();
        self.max_body = spec.max_body_bytes();
        self.timeout_secs = spec.ingress_timeout().as_secs().max(1);
        self
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
    let hosts = routes.iter().flat_map(|r| &r.hosts);
    let longest = hosts.clone().map(String::len).max().unwrap_or(0).max(1);
    let bucket_size = (hash_element_size(longest) + 8).next_power_of_two().max(64);
    // +1: the default server's `_`.
    let max_size = ((hosts.count() + 1) * 8).next_power_of_two().max(512);
    HashSizes { bucket_size, max_size }
}

#[derive(Template)]
#[template(path = "nginx.conf", escape = "none")]
struct NginxConf<'a> {
    instance: &'a str,
    /// Whether any route serves HTTPS (then a 443 default server refuses unknown names).
    any_tls: bool,
    version: &'a str,
    blocks: Vec<Block<'a>>,
    hash: HashSizes,
}

/// One `server` block: a host on HTTP or HTTPS, with the locations of the
/// pods that share it.
struct Block<'a> {
    /// `server_name`'s argument: the exact name, or for `*.example.com` a
    /// regex matching one label, as a certificate's wildcard does (nginx's
    /// own `*.` would match several).
    server_name: String,
    /// The pod the block is marked with (the error-line mapping): the first location's.
    pod: &'a str,
    /// HTTPS, with the certificate of this pod (`dubernetes/tls/POD.pem`)
    /// and that certificate's fingerprint (a new certificate is a new config).
    https: Option<(&'a str, &'a str)>,
    /// HTTP of a host served over HTTPS: every path redirects (but ACME's).
    redirect: Option<&'a str>,
    locations: Vec<Location<'a>>,
    /// A pod serves `/` (else other paths get 404).
    has_root: bool,
}

/// One pod's path prefix within a server block.
struct Location<'a> {
    pod: &'a str,
    /// `location` arguments: `/` for the root, else `= /api` and `^~ /api/`
    /// (whole segments only; the longest prefix wins, as nginx picks it).
    matchers: Vec<String>,
    max_body: u64,
    timeout_secs: u64,
}

/// `server_name`'s argument for a validated host.
fn server_name(host: &str) -> String {
    match host.strip_prefix("*.") {
        Some(parent) => format!("~^[^.]+\\.{}$", parent.replace('.', "\\.")),
        None => host.to_string(),
    }
}

/// The server blocks of `routes`: one per host (and one more for its HTTPS),
/// each with the locations of the pods that route a path of that host.
fn blocks(routes: &[Route]) -> Vec<Block<'_>> {
    let mut by_host: BTreeMap<&str, Vec<&Route>> = BTreeMap::new();
    for r in routes {
        for h in &r.hosts {
            by_host.entry(h.as_str()).or_default().push(r);
        }
    }
    let mut blocks = Vec::new();
    for (host, mut pods) in by_host {
        // Longest path first (nginx picks the longest prefix whatever the
        // order; this keeps the text stable), then by pod.
        pods.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(a.path.cmp(&b.path))
                .then(a.pod.cmp(&b.pod))
        });
        let locations: Vec<Location<'_>> = pods
            .iter()
            .map(|r| Location {
                pod: &r.pod,
                matchers: if r.path == "/" {
                    vec!["/".into()]
                } else {
                    vec![format!("= {}", r.path), format!("^~ {}/", r.path)]
                },
                max_body: r.max_body,
                timeout_secs: r.timeout_secs,
            })
            .collect();
        let has_root = pods.iter().any(|r| r.path == "/");
        // The certificate of the host: of the pod with the shortest path that has one.
        let tls = pods
            .iter()
            .rev()
            .find_map(|r| r.tls.as_ref().map(|t| (r.pod.as_str(), t)));
        let first = pods.first().map_or("", |r| r.pod.as_str());
        let name = server_name(host);
        match tls {
            Some((cert_pod, t)) => {
                blocks.push(Block {
                    server_name: name.clone(),
                    pod: first,
                    https: None,
                    redirect: Some(&t.port_suffix),
                    locations: Vec::new(),
                    has_root: true,
                });
                blocks.push(Block {
                    server_name: name,
                    // A certificate nginx refuses is that pod's.
                    pod: cert_pod,
                    https: Some((cert_pod, &t.fingerprint)),
                    redirect: None,
                    locations,
                    has_root,
                });
            }
            None => blocks.push(Block {
                server_name: name,
                pod: first,
                https: None,
                redirect: None,
                locations,
                has_root,
            }),
        }
    }
    blocks
}

/// A short hash of the routes' hosts (not their replicas, which are not in
/// the config): served by the config itself so the controller can tell when
/// a reload is live.
fn version_of(instance: &str, routes: &[Route]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(instance.as_bytes());
    for r in routes {
        hasher.update(
            format!(
                "{}|{}|{}|{}|{}\n",
                r.pod,
                r.hosts.join(","),
                r.path,
                r.max_body,
                r.timeout_secs
            )
            .as_bytes(),
        );
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
        blocks: blocks(routes),
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
            conf.contains("server_name web.local;\n    default_type text/plain;"),
            "{conf}"
        );
        assert!(
            conf.contains("    # route web\n    location / {\n        set $dub_pod web;"),
            "{conf}"
        );
        assert!(conf.contains("set $dub_pod api;"), "{conf}");
        // Every route and its retry include what the image's router needs (Lua or njs).
        assert_eq!(conf.matches("include /etc/dubernetes/route.conf;").count(), 2, "{conf}");
        assert_eq!(conf.matches("include /etc/dubernetes/retry.conf;").count(), 2, "{conf}");
        // The defaults of access.max_body and access.timeout.
        assert_eq!(conf.matches("client_max_body_size 104857600;").count(), 4, "{conf}");
        assert_eq!(conf.matches("proxy_read_timeout 60s;").count(), 4, "{conf}");
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
        // The route's router answers 503 naming the pod (route.conf, retry.conf).
        assert!(conf.contains("set $dub_pod web;"), "{conf}");
        assert!(conf.contains("location @retry-web {"), "{conf}");
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
        assert!(
            conf.contains("listen 443 ssl http2;\n    server_name web.local;"),
            "{conf}"
        );
        assert!(
            conf.contains("ssl_certificate /etc/nginx/dubernetes/tls/web.pem;"),
            "{conf}"
        );
        assert!(conf.contains("ssl_protocols TLSv1.2 TLSv1.3;"), "{conf}");
        assert!(conf.contains("return 308 https://$host:8443$request_uri;"), "{conf}");
        assert!(conf.contains("ssl_reject_handshake on;"), "{conf}");
        assert_eq!(
            conf.matches("listen 443 ssl http2;").count(),
            1,
            "only the TLS host: {conf}"
        );
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

    fn pod(yaml_access: &str) -> dubernetes_api::PodSpec {
        let mut specs =
            dubernetes_api::parse_specs(&format!("name: p\nimage: i\naccess: {yaml_access}\n")).expect("valid spec");
        specs.remove(0)
    }

    #[test]
    fn hosts_wildcards_paths_and_limits() {
        let api = Route::new("api", "x", vec![]).with_access(&pod(
            "{hosts: [shop.example.com, \"*.example.com\"], path: /api, max_body: 1Mi, timeout: 1h}",
        ));
        let v2 = Route::new("v2", "x", vec![]).with_access(&pod("{host: shop.example.com, path: /api/v2}"));
        let web = Route::new("web", "shop.example.com", vec![]);
        let (conf, _) = render("t", &[api, v2, web]).expect("render");
        // One server block per host, every pod of the host in it.
        assert_eq!(conf.matches("server_name shop.example.com;").count(), 1, "{conf}");
        // A wildcard matches one label, as a certificate's does.
        assert!(conf.contains("server_name ~^[^.]+\\.example\\.com$;"), "{conf}");
        // Whole segments: the exact path and what is below it.
        assert!(conf.contains("location = /api {\n        set $dub_pod api;"), "{conf}");
        assert!(
            conf.contains("location ^~ /api/ {\n        set $dub_pod api;"),
            "{conf}"
        );
        assert!(
            conf.contains("location ^~ /api/v2/ {\n        set $dub_pod v2;"),
            "{conf}"
        );
        assert!(conf.contains("location / {\n        set $dub_pod web;"), "{conf}");
        assert!(
            !conf.contains("location /api {"),
            "no bare prefix (it would match /apix): {conf}"
        );
        assert!(conf.contains("client_max_body_size 1048576;"), "{conf}");
        assert!(conf.contains("proxy_read_timeout 3600s;"), "{conf}");
        // The wildcard host has no pod on `/`: other paths get 404 there.
        let wildcard = conf.split("server_name ~^").nth(1).expect("wildcard block");
        let wildcard = wildcard.split("\nserver {").next().expect("block");
        assert!(
            wildcard.contains("return 404 \"no pod serves this path\\n\";"),
            "{wildcard}"
        );
        let shop = conf.split("server_name shop.example.com;").nth(1).expect("shop block");
        let shop = shop.split("\nserver {").next().expect("block");
        assert!(!shop.contains("no pod serves this path"), "{shop}");
        assert_eq!(shop.matches("location @retry-").count(), 3, "{shop}");
    }

    #[test]
    fn ipv6_replicas_are_bracketed() {
        let route = Route::new("web", "w.local", vec![(ip("fd00::2"), 80)]);
        assert_eq!(route.servers, ["[fd00::2]:80"]);
    }
}

//! Let's Encrypt's test ACME server, Pebble (Debian's `pebble` package), on
//! loopback, with `pebble-challtestsrv` as its DNS: every name resolves to
//! 127.0.0.1 unless a test points one elsewhere. Pebble's HTTP-01 validation
//! really fetches `http://HOST:<http_port>/.well-known/acme-challenge/TOKEN`,
//! so `http_port` is the ingress's HTTP port. Both processes are killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::pki::TestCa;

/// A running Pebble and its DNS server.
pub struct Pebble {
    /// The ACME directory URL (`--acme-directory`).
    pub directory: String,
    /// The CA of Pebble's own HTTPS API (`--acme-ca-file`).
    pub api_ca_file: PathBuf,
    management: u16,
    dns_management: u16,
    client: reqwest::Client,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

fn which(binary: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(binary);
    assert!(
        path.exists(),
        "{} is missing; install Debian's `pebble` package (scripts/test.sh does: apt-get install pebble)",
        path.display()
    );
    path
}

impl Pebble {
    /// The directory URL Pebble will serve on `port` (known before it starts,
    /// so a server can be configured first).
    pub fn directory_for(port: u16) -> String {
        format!("https://127.0.0.1:{port}/dir")
    }

    /// Starts Pebble on `listen_port` (127.0.0.1), validating HTTP-01 at `http_port`.
    pub async fn start(listen_port: u16, http_port: u16) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("pebble API test CA");
        let leaf = ca.leaf(&["127.0.0.1", "localhost"]);
        let (cert, key, ca_file) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("ca.pem"),
        );
        std::fs::write(&cert, &leaf.chain_pem).expect("cert");
        std::fs::write(&key, &leaf.key_pem).expect("key");
        std::fs::write(&ca_file, &ca.cert_pem).expect("ca");
        let (dns, dns_management, management, tls_port) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen_port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let config_file = dir.path().join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).expect("config");
        let log = |name: &str| {
            let file = std::fs::File::create(dir.path().join(name)).expect("log");
            (Stdio::from(file.try_clone().expect("log")), Stdio::from(file))
        };
        let (out, err) = log("challtestsrv.log");
        let challtestsrv = Command::new(which("pebble-challtestsrv"))
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pebble-challtestsrv");
        let (out, err) = log("pebble.log");
        let pebble = Command::new(which("pebble"))
            .arg("-config")
            .arg(&config_file)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random sleeps before validation, no random nonce rejections.
            // PEBBLE_VA_ALWAYS_VALID is NOT set: challenges are really fetched.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start pebble");
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).expect("CA")])
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let mut pebble = Pebble {
            directory: Self::directory_for(listen_port),
            api_ca_file: ca_file,
            management,
            dns_management,
            client,
            children: vec![challtestsrv, pebble],
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let dir_ok = pebble
                .client
                .get(&pebble.directory)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let dns_ok = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{dns_management}/clear-a"))
                .body(r#"{"host":"ready.test."}"#)
                .send()
                .await
                .is_ok();
            if dir_ok && dns_ok {
                break;
            }
            // Its ports were free a moment ago only: a process that lost one
            // exits, and the test fails now, saying so.
            if pebble.children.iter_mut().any(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                panic!("Pebble or its DNS server exited (a port taken?):\n{}", pebble.logs());
            }
            assert!(Instant::now() < deadline, "Pebble did not come up:\n{}", pebble.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pebble
    }

    /// The root that signs the certificates Pebble issues (made fresh on each start).
    pub async fn issuance_root_pem(&self) -> String {
        let response = self
            .client
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .expect("GET /roots/0");
        assert!(response.status().is_success(), "{}", response.status());
        response.text().await.expect("root PEM")
    }

    /// Resolves `host` to `ip` (e.g. an address where nothing listens, so its challenge fails).
    pub async fn set_address(&self, host: &str, ip: &str) {
        self.dns(
            "add-a",
            serde_json::json!({"host": format!("{host}."), "addresses": [ip]}),
        )
        .await;
    }

    /// Resolves `host` to the default (127.0.0.1) again.
    pub async fn clear_address(&self, host: &str) {
        self.dns("clear-a", serde_json::json!({"host": format!("{host}.")}))
            .await;
    }

    async fn dns(&self, route: &str, body: serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/{route}", self.dns_management))
            .body(body.to_string())
            .send()
            .await
            .expect("challtestsrv management");
        assert!(response.status().is_success(), "{route}: {}", response.status());
    }

    /// Pebble's and the DNS server's output.
    pub fn logs(&self) -> String {
        ["challtestsrv.log", "pebble.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                format!(
                    "---- {f} ----\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

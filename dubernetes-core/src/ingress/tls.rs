//! HTTPS at the ingress: certificate files (with their keys, mode 0600)
//! written into the container, the routes that serve them, ACME challenges.

use super::*;

impl Ingress {
    /// The routes with HTTPS for the pods that have a certificate here
    /// (when the ingress publishes HTTPS at all).
    pub(super) fn with_tls(&self, routes: &[Route], certs: &BTreeMap<String, String>, state: &State) -> Vec<Route> {
        let Some(listen) = self.settings.tls_listen else {
            return routes.to_vec();
        };
        let port = state.tls_port.unwrap_or(listen.port());
        let port_suffix = if port == 443 { String::new() } else { format!(":{port}") };
        routes
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.tls = certs.get(&r.pod).map(|pem| RouteTls {
                    fingerprint: fingerprint(pem),
                    port_suffix: port_suffix.clone(),
                });
                r
            })
            .collect()
    }

    /// Writes the certificate files that changed (mode 0600: they hold keys)
    /// into the container, before the config that names them is checked.
    pub(super) async fn write_certs(
        &self,
        id: &str,
        certs: &BTreeMap<String, String>,
        state: &mut State,
    ) -> Result<()> {
        if self.settings.tls_listen.is_none() {
            return Ok(());
        }
        for (pod, pem) in certs {
            let print = fingerprint(pem);
            if state.written_certs.get(pod) == Some(&print) {
                continue;
            }
            self.runtime
                .write_private_file(id, NGINX_DIR, &format!("dubernetes/tls/{pod}.pem"), pem.as_bytes())
                .await?;
            state.written_certs.insert(pod.clone(), print);
        }
        // A pod that no longer serves HTTPS (deleted, tls removed, secret
        // replaced by none): its key does not stay behind in the container.
        let gone: Vec<String> = state
            .written_certs
            .keys()
            .filter(|pod| !certs.contains_key(*pod))
            .cloned()
            .collect();
        for pod in gone {
            self.runtime
                .write_private_file(id, NGINX_DIR, &format!("dubernetes/tls/{pod}.pem"), b"")
                .await?;
            state.written_certs.remove(&pod);
        }
        Ok(())
    }

    /// Serves `key_authorization` at `/.well-known/acme-challenge/TOKEN` on
    /// every host's HTTP listener: a file nginx reads per request, so no reload.
    /// The token comes from the ACME server: only base64url characters pass.
    pub(crate) async fn put_challenge(&self, token: &str, key_authorization: &str) -> Result<()> {
        if token.is_empty()
            || token.len() > 256
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::Ingress(format!(
                "the ACME server sent a challenge token that is not base64url ({} bytes); refused",
                token.len()
            )));
        }
        let id = self
            .state
            .lock()
            .await
            .container_id
            .clone()
            .ok_or_else(|| Error::Ingress("no ingress container to answer the ACME challenge".into()))?;
        self.runtime
            .write_file(
                &id,
                NGINX_DIR,
                &format!("dubernetes/acme/{token}"),
                key_authorization.as_bytes(),
            )
            .await
    }

    /// Whether the ingress publishes HTTPS at all.
    pub(crate) fn serves_tls(&self) -> bool {
        self.settings.tls_listen.is_some()
    }

    /// The host port of HTTPS, once the ingress runs with one.
    pub(crate) async fn tls_port(&self) -> Option<u16> {
        u16::try_from(self.published_tls.load(Ordering::Relaxed))
            .ok()
            .filter(|&p| p != 0)
    }

    /// Whether the live config serves this pod's host over HTTPS with exactly
    /// this certificate file ([`certificate_file`]). Never waits for a sync.
    pub(crate) fn serves_certificate(&self, pod: &str, file: &str) -> bool {
        lock(&self.live_tls)
            .get(pod)
            .is_some_and(|print| *print == fingerprint(file))
    }
}

/// The file nginx reads for a host's HTTPS: the chain, then the key.
pub(crate) fn certificate_file(cert_pem: &str, key_pem: &str) -> String {
    let mut pem = cert_pem.to_string();
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem.push_str(key_pem);
    pem
}

/// A short hash of a certificate file.
pub(super) fn fingerprint(pem: &str) -> String {
    Sha256::digest(pem.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

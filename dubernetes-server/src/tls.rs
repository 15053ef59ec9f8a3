//! TLS for the API (`--tls-cert` / `--tls-key`): a rustls server configuration
//! from PEM files.
//!
//! rustls with the `ring` provider (already in the tree through bollard), TLS
//! 1.2 and 1.3 only, rustls's default cipher suites (all AEAD with forward
//! secrecy: what Mozilla's "intermediate" profile allows).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the API's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("--tls-cert {path}: {problem} (expected a PEM file with the certificate first, then its chain)")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error("--tls-key {path}: {problem} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)")]
    Key {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the pair (e.g. the key does not belong to the certificate).
    #[error("--tls-cert / --tls-key: {0}")]
    Pair(String),
}

/// The crypto provider every TLS configuration of the server uses. Chosen
/// explicitly: the workspace enables more than one rustls provider, so the
/// process-wide default would be ambiguous.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration serving the chain in `cert` with the key in `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsConfigError> {
    let cert_err = |problem: String| TlsConfigError::Cert {
        path: cert.display().to_string(),
        problem,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsConfigError::Key {
        path: key.display().to_string(),
        problem: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsConfigError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsConfigError::Pair(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The warning a server logs when its API is plain HTTP beyond loopback.
pub fn cleartext_warning(listen: SocketAddr, tls: bool) -> Option<&'static str> {
    (!tls && !listen.ip().is_loopback()).then_some(
        "THE API IS PLAIN HTTP ON A NON-LOOPBACK ADDRESS: the bearer token and every pod spec cross the network \
         in clear text, readable and replayable by anyone on the path. Serve it over HTTPS with --tls-cert and \
         --tls-key, or listen on 127.0.0.1 and reach it through an SSH tunnel",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_beyond_loopback_warns() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let lan: SocketAddr = "192.0.2.7:8080".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let local6: SocketAddr = "[::1]:8080".parse().expect("addr");
        assert!(cleartext_warning(any, false).is_some_and(|w| w.contains("--tls-cert")));
        assert!(cleartext_warning(lan, false).is_some());
        assert!(cleartext_warning(any, true).is_none());
        assert!(cleartext_warning(local, false).is_none());
        assert!(cleartext_warning(local6, false).is_none());
    }

    #[test]
    fn unreadable_files_name_the_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not pem").expect("write");
        let err = server_config(&cert, &dir.path().join("missing.pem")).expect_err("no certificate");
        assert!(err.to_string().contains("--tls-cert"), "{err}");
    }
}

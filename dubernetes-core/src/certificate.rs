//! Reading certificates: what a PEM certificate covers and until when, and
//! whether a private key belongs to it.
//!
//! PEM with rustls-pki-types, the key check with rustls (the same check its
//! server does before it would serve the pair), the fields with x509-parser:
//! maintained crates, no hand-written ASN.1.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use dubernetes_api::name_covers;

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Its DNS subject alternative names.
    pub hosts: Vec<String>,
    /// Its issuer's distinguished name.
    pub issuer: String,
    /// Start of validity, unix seconds.
    pub not_before: i64,
    /// End of validity, unix seconds.
    pub not_after: i64,
}

impl CertificateInfo {
    /// Whether one of its names covers `host`.
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|name| name_covers(name, host))
    }
}

/// Why a certificate or key cannot be used; `field` names the input at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CertificateProblem {
    /// `cert` or `key`.
    pub field: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> CertificateProblem {
    CertificateProblem {
        field,
        message: message.into(),
    }
}

/// The DER certificates of a PEM chain (leaf first).
fn chain(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, CertificateProblem> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            problem(
                "cert",
                format!("is not PEM ({e}); pass the certificate file, e.g. fullchain.pem"),
            )
        })?;
    if chain.is_empty() {
        return Err(problem(
            "cert",
            "holds no PEM `-----BEGIN CERTIFICATE-----` block; pass the certificate file, e.g. fullchain.pem",
        ));
    }
    Ok(chain)
}

/// What the first certificate of a PEM chain says.
pub fn inspect(cert_pem: &str) -> Result<CertificateInfo, CertificateProblem> {
    let chain = chain(cert_pem)?;
    info(&chain[0])
}

fn info(der: &CertificateDer<'_>) -> Result<CertificateInfo, CertificateProblem> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| problem("cert", format!("is PEM but not an X.509 certificate ({e})")))?;
    let mut hosts = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                hosts.push(dns.to_ascii_lowercase());
            }
        }
    }
    let validity = cert.validity();
    Ok(CertificateInfo {
        hosts,
        issuer: cert.issuer().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// Checks a certificate chain and its key as a user uploads them: both PEM,
/// the key belongs to the leaf, the leaf names at least one DNS host and is
/// valid at `now` (unix seconds). Returns what the leaf says.
pub fn check_pair(cert_pem: &str, key_pem: &str, now: i64) -> Result<CertificateInfo, CertificateProblem> {
    let chain = chain(cert_pem)?;
    let info = info(&chain[0])?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        problem(
            "key",
            format!("holds no PEM private key ({e}); pass the key file (PKCS#8, PKCS#1 or SEC1), e.g. privkey.pem"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::sign::CertifiedKey::from_der(chain, key, &provider) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(problem(
                "key",
                "does not match the certificate (it is the key of another certificate); pass the key made with this certificate",
            ));
        }
        Err(e) => return Err(problem("key", format!("cannot be used ({e})"))),
    }
    if info.hosts.is_empty() {
        return Err(problem(
            "cert",
            "names no DNS host (no subject alternative name); browsers would refuse it",
        ));
    }
    if info.not_after <= now {
        return Err(problem(
            "cert",
            format!(
                "expired at {}; renew it and upload the new one",
                humantime::format_rfc3339_seconds(unix(info.not_after))
            ),
        ));
    }
    if info.not_before > now {
        return Err(problem(
            "cert",
            format!(
                "is not valid before {}",
                humantime::format_rfc3339_seconds(unix(info.not_before))
            ),
        ));
    }
    Ok(info)
}

/// A unix time in seconds as a `SystemTime` (clamped at the epoch).
pub(crate) fn unix(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

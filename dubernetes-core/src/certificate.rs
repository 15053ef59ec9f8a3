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

/// What went wrong in a PEM text, in words that quote none of its bytes: the
/// parser's own messages dump the offending line (a key pasted on one line
/// comes back whole) or the offending byte.
fn pem_problem(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a PEM block has no `-----END ...-----` line",
        Error::IllegalSectionStart { .. } => {
            "a `-----BEGIN ...-----` line is malformed (is the PEM text on one line, or with literal `\\n`? keep the file's line breaks)"
        }
        Error::Base64Decode(_) => "a PEM block's body is not valid base64",
        Error::SectionTooLarge => "a PEM block is too large",
        _ => "is not readable PEM",
    }
}

/// The DER certificates of a PEM chain (leaf first).
fn chain(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, CertificateProblem> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            problem(
                "cert",
                format!(
                    "is not PEM: {}; pass the certificate file, e.g. fullchain.pem",
                    pem_problem(&e)
                ),
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

/// What a certificate says; the parser's error is not quoted (its input
/// could be anything the user sent).
fn info(der: &CertificateDer<'_>) -> Result<CertificateInfo, CertificateProblem> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|_| problem("cert", "is PEM but not an X.509 certificate"))?;
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
    // Every certificate of the chain, not only the leaf: nginx refuses a
    // chain with a block it cannot read, and the host would go dark.
    for (i, der) in chain.iter().enumerate().skip(1) {
        if x509_parser::parse_x509_certificate(der.as_ref()).is_err() {
            return Err(problem(
                "cert",
                format!(
                    "certificate {} of the chain (counting the leaf as 1) is PEM but not an X.509 certificate; \
                     remove that block or pass the chain your CA issued",
                    i + 1
                ),
            ));
        }
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        let why = match &e {
            rustls_pki_types::pem::Error::NoItemsFound => "holds no PEM private key",
            other => pem_problem(other),
        };
        problem(
            "key",
            format!("{why}; pass the key file (PKCS#8, PKCS#1 or SEC1), e.g. privkey.pem"),
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
        // rustls's message is not quoted: none of the key's bytes may reach an answer.
        Err(_) => {
            return Err(problem(
                "key",
                "cannot be used with this certificate (an unsupported key type or a damaged key); pass the key made with it",
            ));
        }
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

/// Why a pod serving `host` may not use the TLS secret `name`, whose
/// certificate covers `cert`'s hosts until its end of validity (None: no such
/// secret); None when it may. An expired secret is refused only to a pod that
/// did not use it for this host before (`keeps_it` false): a change that keeps
/// it (a scale) goes through, and the status warns instead.
pub(crate) fn refuse_use(
    name: &str,
    host: &str,
    cert: Option<(&[String], i64)>,
    now: i64,
    keeps_it: bool,
) -> Option<String> {
    let Some((hosts, not_after)) = cert else {
        return Some(format!(
            "no TLS secret {name:?}; create it first with `dubectl create secret tls {name} --cert FILE --key FILE`"
        ));
    };
    if !hosts.iter().any(|n| name_covers(n, host)) {
        return Some(format!(
            "secret {name:?} covers {}, not the pod's host {host:?} (it must cover every host of the pod)",
            hosts.join(", ")
        ));
    }
    if not_after <= now && !keeps_it {
        return Some(format!(
            "secret {name:?} has expired; replace it with a current certificate"
        ));
    }
    None
}

/// Why a certificate covering `hosts` cannot be the secret of pods serving
/// `users` (pod, host); None when it covers them all.
pub(crate) fn refuse_replace(hosts: &[String], users: &[(String, String)]) -> Option<String> {
    let (pod, host) = users
        .iter()
        .find(|(_, host)| !hosts.iter().any(|n| name_covers(n, host)))?;
    Some(format!(
        "covers {} but pod {pod:?} serves {host:?} with this secret",
        hosts.join(", ")
    ))
}

/// How long before a certificate expires its pods are warned (status, a
/// Warning event, `get pods`).
pub const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

/// Where a certificate stands against its end of validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// More than [`EXPIRY_WARNING_SECS`] left.
    Valid,
    /// Less than [`EXPIRY_WARNING_SECS`] left.
    Expiring,
    /// Past its end of validity (nginx still serves it; clients refuse it).
    Expired,
}

/// Where a certificate valid until `not_after` stands at `now` (unix seconds).
pub fn expiry(not_after: i64, now: i64) -> Expiry {
    if not_after <= now {
        Expiry::Expired
    } else if not_after - now <= EXPIRY_WARNING_SECS {
        Expiry::Expiring
    } else {
        Expiry::Valid
    }
}

/// The warning for a pod whose TLS secret `secret` is valid until `not_after`,
/// if it expires soon or has expired.
pub fn expiry_warning(secret: &str, not_after: i64, now: i64) -> Option<String> {
    let at = humantime::format_rfc3339_seconds(unix(not_after));
    let replace = format!("`dubectl create secret tls {secret} --cert FILE --key FILE --replace`");
    match expiry(not_after, now) {
        Expiry::Valid => None,
        Expiry::Expiring => Some(format!(
            "the certificate of secret {secret:?} expires at {at} (in {}); replace it before: {replace}",
            humantime::format_duration(std::time::Duration::from_secs(
                u64::try_from((not_after - now) / 60 * 60).unwrap_or(0).max(60)
            ))
        )),
        Expiry::Expired => Some(format!(
            "the certificate of secret {secret:?} expired at {at}; it is still served but clients refuse it: {replace}"
        )),
    }
}

/// A unix time in seconds as a `SystemTime` (clamped at the epoch).
pub(crate) fn unix(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

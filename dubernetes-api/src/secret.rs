//! TLS secrets: certificates the user uploads (`dubectl create secret tls`)
//! for `access.tls: {secret: NAME}`. A secret's private key goes in once and
//! is never answered: the views here carry only what the certificate says.

use serde::{Deserialize, Serialize};

/// Largest certificate chain or key of a TLS secret, in bytes (a chain of a
/// few certificates is ~6 KiB). The server refuses more; dubectl reads no
/// more from a file.
pub const MAX_CERTIFICATE_PEM_BYTES: usize = 64 * 1024;

/// The body of `POST /v1/secrets`: a new TLS secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTlsSecret {
    /// The secret's name (a DNS label), what `access.tls.secret` refers to.
    pub name: String,
    /// The certificate, PEM, leaf first then its intermediates.
    pub cert: String,
    /// The leaf's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// Never prints the key.
impl std::fmt::Debug for NewTlsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTlsSecret")
            .field("name", &self.name)
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &format_args!("REDACTED"))
            .finish()
    }
}

/// A TLS secret as the API answers it: what its certificate says, no key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct TlsSecret {
    /// The secret's name.
    pub name: String,
    /// The host names (DNS subject alternative names; `*.example.com` for a wildcard) the certificate covers.
    pub hosts: Vec<String>,
    /// The certificate's issuer, as a distinguished name.
    pub issuer: String,
    /// Start of validity, unix seconds.
    pub not_before: i64,
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// When the secret was stored, unix milliseconds.
    pub created_at: i64,
    /// The pods whose `access.tls.secret` names it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

impl TlsSecret {
    /// A view of a secret.
    pub fn new(name: String, hosts: Vec<String>, issuer: String, not_before: i64, not_after: i64) -> Self {
        TlsSecret {
            name,
            hosts,
            issuer,
            not_before,
            not_after,
            created_at: 0,
            used_by: Vec::new(),
        }
    }
}

/// Checks a secret's name: a DNS label, as pod names.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    crate::spec::check_dns_label(name)
}

/// Whether a certificate name (`host`, or a wildcard `*.parent`) covers
/// `host`: a wildcard covers exactly one label, as in RFC 6125.
pub fn name_covers(name: &str, host: &str) -> bool {
    let (name, host) = (name.to_ascii_lowercase(), host.to_ascii_lowercase());
    match name.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == parent),
        None => name == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("app.example.com", "app.example.com"));
        assert!(name_covers("APP.example.com", "app.example.com"));
        assert!(name_covers("*.example.com", "app.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("other.example.com", "app.example.com"));
    }

    #[test]
    fn the_key_is_never_printed() {
        let secret = NewTlsSecret {
            name: "web".into(),
            cert: "CERT".into(),
            key: "-----BEGIN PRIVATE KEY-----SECRET".into(),
        };
        let text = format!("{secret:?}");
        assert!(!text.contains("SECRET") && text.contains("REDACTED"), "{text}");
    }
}

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

/// The kinds of secret besides TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SecretType {
    /// Keys and values for `env` (`{secret: NAME, key: KEY}`) and `secret_files`.
    Generic,
    /// Registry credentials for `image_pull_secret`.
    DockerRegistry,
}

impl SecretType {
    /// The word of the API and of `dubectl create secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Generic => "generic",
            SecretType::DockerRegistry => "docker-registry",
        }
    }
}

/// The body of `POST /v1/secrets` (and `PUT`) for a generic or a
/// docker-registry secret (a body without `type` is a TLS secret).
/// Values go in once and are never answered, logged or printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    /// The secret's name (a DNS label).
    pub name: String,
    /// `generic` or `docker-registry`.
    #[serde(rename = "type")]
    pub kind: SecretType,
    /// generic: the keys and their values (UTF-8 text).
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, String>,
    /// generic: keys whose values are bytes (a keystore, a binary file), as
    /// base64 (standard alphabet, padded), as Kubernetes' `binaryData`. A key
    /// is in `data` or here, not both; values are stored as bytes either way.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub binary_data: std::collections::BTreeMap<String, String>,
    /// docker-registry: the registry's host, e.g. `registry.example.com` or `127.0.0.1:5000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_server: Option<String>,
    /// docker-registry: the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_username: Option<String>,
    /// docker-registry: the password or token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_password: Option<String>,
}

/// Never prints a value (nor the registry password or user).
impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field(
                "keys",
                &self.data.keys().chain(self.binary_data.keys()).collect::<Vec<_>>(),
            )
            .field("docker_server", &self.docker_server)
            .field("values", &format_args!("REDACTED"))
            .finish()
    }
}

/// A generic or docker-registry secret as the API answers it: names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct DataSecret {
    /// The secret's name.
    pub name: String,
    /// `generic` or `docker-registry`.
    #[serde(rename = "type")]
    pub kind: SecretType,
    /// generic: its keys (the values are never answered).
    #[serde(default)]
    pub keys: Vec<String>,
    /// docker-registry: the registry host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_server: Option<String>,
    /// Increases on every replace (the pods using it roll to a new revision).
    pub version: i64,
    /// When the secret was stored, unix milliseconds.
    pub created_at: i64,
    /// When it was last replaced, unix milliseconds.
    pub updated_at: i64,
    /// The pods that use it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

impl DataSecret {
    /// A view of a secret.
    pub fn new(name: String, kind: SecretType, keys: Vec<String>, docker_server: Option<String>, version: i64) -> Self {
        DataSecret {
            name,
            kind,
            keys,
            docker_server,
            version,
            created_at: 0,
            updated_at: 0,
            used_by: Vec::new(),
        }
    }
}

/// The body of `POST /v1/secrets` and `PUT /v1/secrets/{name}`: with
/// `type`, a generic or docker-registry secret; without, a TLS secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum NewAnySecret {
    /// A generic or docker-registry secret.
    Data(NewSecret),
    /// A TLS secret.
    Tls(NewTlsSecret),
}

/// Any secret, as `GET /v1/secrets` lists them: a generic or
/// docker-registry one (with `type`), or a TLS one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum AnySecret {
    /// A generic or docker-registry secret.
    Data(DataSecret),
    /// A TLS secret.
    Tls(TlsSecret),
}

impl AnySecret {
    /// The secret's name.
    pub fn name(&self) -> &str {
        match self {
            AnySecret::Data(s) => &s.name,
            AnySecret::Tls(s) => &s.name,
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
    fn values_are_never_printed() {
        let secret = NewSecret {
            name: "db".into(),
            kind: SecretType::Generic,
            data: [("password".to_string(), "hunter2-value".to_string())].into(),
            binary_data: [("keystore".to_string(), "aHVudGVyMy1ieXRlcw==".to_string())].into(),
            docker_server: None,
            docker_username: Some("someuser".into()),
            docker_password: Some("registry-pass".into()),
        };
        let text = format!("{secret:?}");
        assert!(
            text.contains("password")
                && text.contains("keystore")
                && !text.contains("hunter2")
                && !text.contains("aHVudGVy")
                && !text.contains("registry-pass")
                && !text.contains("someuser"),
            "{text}"
        );
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

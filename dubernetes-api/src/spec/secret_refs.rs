//! What a pod takes from secrets: env values (`env: {K: {secret: NAME, key: KEY}}`),
//! files (`secret_files`), the registry credentials of its image
//! (`image_pull_secret`), and when its image is pulled (`pull`). The spec
//! names secrets only; their values stay in the server's encrypted store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One environment variable's value: a plain string, or a key of a generic
/// secret (`{secret: NAME, key: KEY}`), resolved when a replica is created.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EnvValue {
    /// The value itself (stored in the spec, shown by `get -o yaml`).
    Value(String),
    /// The value of `key` in the generic secret `secret`.
    Secret(SecretKeyRef),
}

/// A key of a generic secret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The secret's name (`dubectl create secret generic NAME ...`).
    pub secret: String,
    /// The key within it.
    pub key: String,
}

impl EnvValue {
    /// The plain value, None for a secret reference.
    pub fn as_value(&self) -> Option<&str> {
        match self {
            EnvValue::Value(v) => Some(v),
            EnvValue::Secret(_) => None,
        }
    }
}

impl From<String> for EnvValue {
    fn from(v: String) -> Self {
        EnvValue::Value(v)
    }
}

impl From<&str> for EnvValue {
    fn from(v: &str) -> Self {
        EnvValue::Value(v.to_string())
    }
}

impl PartialEq<&str> for EnvValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_value() == Some(*other)
    }
}

impl Serialize for EnvValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // A plain value stays a string: specs and revision hashes written
            // before secret references existed read and hash as they did.
            EnvValue::Value(v) => serializer.serialize_str(v),
            EnvValue::Secret(r) => r.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = EnvValue;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or `{secret: NAME, key: KEY}`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Value(v.to_string()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<EnvValue, E> {
                Ok(EnvValue::Value(v))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<EnvValue, A::Error> {
                SecretKeyRef::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(EnvValue::Secret)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for EnvValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("the value")),
            )
            .item(
                ObjectBuilder::new()
                    .property("secret", ObjectBuilder::new().schema_type(Type::String))
                    .property("key", ObjectBuilder::new().schema_type(Type::String))
                    .required("secret")
                    .required("key")
                    .description(Some("a key of a generic secret")),
            )
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for EnvValue {}

/// A generic secret mounted as files: one read-only file per key in the directory `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretFiles {
    /// The generic secret's name.
    pub secret: String,
    /// An absolute directory in the container, e.g. `/run/secrets/db`.
    pub path: String,
}

/// When a replica's image is pulled (`pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Before every replica is created (the default for `:latest` and untagged images).
    Always,
    /// Only when the engine does not have the image (the default otherwise).
    IfNotPresent,
    /// Never: the image must be on the engine already.
    Never,
}

/// Most `secret_files` entries per pod.
pub const MAX_SECRET_FILES: usize = 32;

/// The versions of the secrets a pod uses, by name: set by the server at
/// apply, so that replacing a secret makes a new revision.
pub type SecretVersions = BTreeMap<String, i64>;

/// Whether `image` names the tag `latest`, or no tag (which means `latest`); a digest pins it.
pub fn is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// The registry host of an image reference (`docker.io` when it names none),
/// as Docker reads it: the first component is a registry when it has a `.`
/// or a `:`, or is `localhost`.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first,
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_registries() {
        assert!(is_latest("nginx"));
        assert!(is_latest("nginx:latest"));
        assert!(is_latest("127.0.0.1:5000/app"));
        assert!(!is_latest("127.0.0.1:5000/app:v1"));
        assert!(!is_latest("app@sha256:abc"));
        assert_eq!(registry_of("127.0.0.1:5000/app:v1"), "127.0.0.1:5000");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("nginx:1"), "docker.io");
        assert_eq!(registry_of("ghcr.io/a/b"), "ghcr.io");
    }

    #[test]
    fn env_values_read_strings_and_references() {
        let v: BTreeMap<String, EnvValue> =
            serde_json::from_str(r#"{"A": "x", "B": {"secret": "db", "key": "pw"}}"#).expect("parses");
        assert_eq!(v["A"], EnvValue::Value("x".into()));
        assert_eq!(
            v["B"],
            EnvValue::Secret(SecretKeyRef {
                secret: "db".into(),
                key: "pw".into()
            })
        );
        assert_eq!(
            serde_json::to_string(&v).expect("encodes"),
            r#"{"A":"x","B":{"secret":"db","key":"pw"}}"#
        );
        assert!(serde_json::from_str::<EnvValue>(r#"{"secret": "db"}"#).is_err());
    }
}

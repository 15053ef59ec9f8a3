//! `access`: how a pod is reached through the ingress (hosts, path, TLS,
//! body and time limits).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// How a pod is reached through the ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Access {
    /// The host name the ingress routes to this pod (RFC 1123), or a
    /// wildcard `*.example.com` (one leading label). Merged with `hosts`:
    /// the pod serves `host` and every name of `hosts` (a name given twice
    /// is served once); at least one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// More host names (or `*.` wildcards) routed to this pod, beside `host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The path prefix of the hosts routed to this pod (default `/`, the
    /// whole host): whole segments, so `/api` routes `/api` and `/api/x` but
    /// not `/apix`. Several pods share a host with different paths; the
    /// longest prefix wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTPS for the hosts (none: plain HTTP only): `auto` (a certificate from
    /// the server's ACME directory) or `{secret: NAME}` (a certificate from
    /// `dubectl create secret tls NAME`, which must cover every host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Largest request body the ingress passes on, e.g. `10Mi` (default
    /// 100Mi; 1Ki to 1Ti); larger requests get 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<String>,
    /// How long the ingress waits on the replica between two reads or two
    /// writes (default 60s; 1s to 24h): a stream that sends something more
    /// often than this stays open for ever.
    #[serde(default, with = "duration::opt", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "60s"))]
    pub timeout: Option<Duration>,
}

/// `access.max_body` when unset: 100 MiB.
pub const DEFAULT_MAX_BODY: u64 = 100 * 1024 * 1024;

/// Largest `access.max_body`: 1 TiB.
pub const MAX_MAX_BODY: u64 = 1 << 40;

/// `access.timeout` when unset.
pub const DEFAULT_INGRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// Most names in `access.hosts` (beside `access.host`).
pub const MAX_HOSTS: usize = 100;

/// Where the certificate of a host comes from (`access.tls`): the word `auto`
/// or the map `{secret: NAME}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Obtained (and renewed) from the server's ACME directory by HTTP-01 through the ingress.
    Auto,
    /// The TLS secret of this name (`dubectl create secret tls NAME --cert FILE --key FILE`).
    Secret(String),
}

impl Serialize for Tls {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Tls::Auto => serializer.serialize_str("auto"),
            Tls::Secret(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("secret", name)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Tls;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`auto` or `{secret: NAME}`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Tls, E> {
                match v {
                    "auto" => Ok(Tls::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Tls, A::Error> {
                let mut secret = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "secret" {
                        return Err(serde::de::Error::unknown_field(&key, &["secret"]));
                    }
                    if secret.is_some() {
                        return Err(serde::de::Error::duplicate_field("secret"));
                    }
                    secret = Some(map.next_value::<String>()?);
                }
                secret
                    .map(Tls::Secret)
                    .ok_or_else(|| serde::de::Error::missing_field("secret"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Tls {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["auto"]))
                    .description(Some("a certificate from the server's ACME directory")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "secret",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))
                            .min_length(Some(1))
                            .max_length(Some(63)),
                    )
                    .required("secret")
                    .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
                    .description(Some("the TLS secret of this name")),
            )
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Tls {}

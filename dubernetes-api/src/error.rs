//! The error body every failed API call answers with, and its stable codes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::FieldError;

/// The stable, machine-readable codes of error bodies. Clients match on
/// these, never on messages; every one is documented in `docs/api.md` (a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The pod spec cannot be read or is invalid (`field`/`fields` say where).
    InvalidSpec,
    /// The request body is not what the route expects.
    InvalidBody,
    /// A write without a body.
    EmptyBody,
    /// The request body is larger than the limit.
    BodyTooLarge,
    /// A query parameter is unknown or malformed.
    InvalidQuery,
    /// A header (e.g. `If-Match`) is malformed.
    InvalidHeader,
    /// Any other malformed request.
    BadRequest,
    /// The name in the body differs from the one in the path.
    NameMismatch,
    /// The bearer token is missing or wrong.
    Unauthorized,
    /// The pod does not exist.
    NotFound,
    /// No such API route.
    NoSuchRoute,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request conflicts with the current state (e.g. the host is taken).
    Conflict,
    /// A conditional write (`If-Match`) found the pod at another generation.
    StaleGeneration,
    /// A watch asked for a version the change feed no longer holds (HTTP 410): list again.
    Expired,
    /// The content type is neither JSON nor YAML.
    UnsupportedMediaType,
    /// A limit of the instance was reached.
    LimitExceeded,
    /// Anything else; the message says what.
    Internal,
    /// The Docker engine could not be reached or refused a call.
    EngineUnavailable,
    /// The store could not complete the request.
    StoreUnavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// The request did not finish within the server's request deadline.
    RequestTimeout,
    /// A wait did not finish in time.
    Timeout,
    /// The server follows as many log streams as it allows at once (`--max-log-follows`): retry later.
    TooManyLogStreams,
    /// The request was refused for where it came from (a dashboard link opened from another site).
    Forbidden,
    /// As many dashboard links are live as the server keeps: retry in a minute.
    TooManySessions,
    /// A TLS certificate or key is unusable (not PEM, key does not match, expired, wrong host): `field` says which.
    InvalidCertificate,
    /// A generic or docker-registry secret, or a pod's reference to one, is unusable: `field` says which.
    InvalidSecret,
    /// The server cannot seal or open secret values (no `--secrets-key-file` for a PostgreSQL store, or another key).
    SecretsUnavailable,
    /// A one-off run's image could not be made present: not on the engine with
    /// `pull: never`, not in the registry, refused credentials (409), or the
    /// registry could not be reached (502).
    ImagePullFailed,
}

impl ErrorCode {
    /// Every code, for documentation checks.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidSpec,
        ErrorCode::InvalidBody,
        ErrorCode::EmptyBody,
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidHeader,
        ErrorCode::BadRequest,
        ErrorCode::NameMismatch,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::NoSuchRoute,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::StaleGeneration,
        ErrorCode::Expired,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::LimitExceeded,
        ErrorCode::Internal,
        ErrorCode::EngineUnavailable,
        ErrorCode::StoreUnavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::RequestTimeout,
        ErrorCode::Timeout,
        ErrorCode::TooManyLogStreams,
        ErrorCode::Forbidden,
        ErrorCode::TooManySessions,
        ErrorCode::InvalidCertificate,
        ErrorCode::InvalidSecret,
        ErrorCode::SecretsUnavailable,
        ErrorCode::ImagePullFailed,
    ];

    /// The code as it appears in JSON, e.g. `invalid_spec`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidSpec => "invalid_spec",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::EmptyBody => "empty_body",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NameMismatch => "name_mismatch",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NoSuchRoute => "no_such_route",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::StaleGeneration => "stale_generation",
            ErrorCode::Expired => "expired",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Internal => "internal",
            ErrorCode::EngineUnavailable => "engine_unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooManyLogStreams => "too_many_log_streams",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::InvalidCertificate => "invalid_certificate",
            ErrorCode::InvalidSecret => "invalid_secret",
            ErrorCode::SecretsUnavailable => "secrets_unavailable",
            ErrorCode::ImagePullFailed => "image_pull_failed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON error body: `{"code": "...", "message": "...", "field": "...", "fields": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable, machine-readable code.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
    /// The (first) input field at fault, e.g. `access.host`, `body` or `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every invalid field, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

impl ApiError {
    /// An error body without fields.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
            fields: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_words() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).expect("json"),
                serde_json::json!(code.as_str())
            );
        }
    }

    #[test]
    fn a_body_without_fields_omits_them() {
        let body = ApiError::new(ErrorCode::NotFound, "no pod \"x\"");
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            r#"{"code":"not_found","message":"no pod \"x\""}"#
        );
    }
}

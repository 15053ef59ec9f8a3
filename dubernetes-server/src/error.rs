//! Errors as the API answers them: [`ErrorCode`] (stable, machine-readable),
//! [`ApiError`] (the JSON body), and the mapping of the core's errors to HTTP
//! statuses. The mapping matches on variants and their fields, never on
//! message text: the core says which input is at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dubernetes_core::{Error, FieldError, SpecError};
use serde::{Deserialize, Serialize};

/// The stable, machine-readable codes of error bodies. Clients match on
/// these, never on messages; every one is documented in `docs/api.md` (a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
        }
    }
}

/// A JSON error body: `{"code": "...", "message": "...", "field": "...", "fields": [...]}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
    #[serde(skip)]
    status: u16,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
            fields: Vec::new(),
            status: status.as_u16(),
        }
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub(crate) fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.field = fields.first().map(|f| f.field.clone());
        self.fields = fields;
        self
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Invalid(v) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSpec, message).with_fields(v.problems)
            }
            Error::Spec(SpecError::Invalid { source, .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSpec, message)
                    .with_fields(source.problems)
            }
            Error::Spec(SpecError::TooLarge { .. } | SpecError::SpecTooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BodyTooLarge, message).with_field("body")
            }
            Error::Spec(ref spec) => {
                let field = spec.field().unwrap_or_else(|| "body".into());
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidSpec, message).with_field(field)
            }
            Error::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message).with_field("name"),
            Error::StaleGeneration { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::StaleGeneration, message).with_field("generation")
            }
            Error::HostTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_field("access.host")
            }
            Error::NoRevision { number, .. } => {
                let error = ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message);
                match number {
                    Some(_) => error.with_field("to_revision"),
                    None => error,
                }
            }
            Error::Limit { field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::LimitExceeded, message).with_field(field)
            }
            Error::Docker { .. } | Error::DockerTimeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::EngineUnavailable, message)
            }
            Error::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout, message),
            Error::TooManyStreams(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyLogStreams, message)
            }
            Error::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown, message),
            Error::Expired(_) => ApiError::new(StatusCode::GONE, ErrorCode::Expired, message),
            Error::Store(_) | Error::Migrate(_) | Error::Corrupt { .. } => {
                // Details (paths, SQL) go to the log, not to the client.
                tracing::error!(error = %message, "store error");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "the store could not complete the request; retry, and see the server log if it persists",
                )
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, axum::Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: Error) -> (u16, ErrorCode, Option<String>, String) {
        let api = ApiError::from(e);
        (api.status().as_u16(), api.code, api.field, api.message)
    }

    #[test]
    fn a_taken_host_is_a_conflict_on_access_host() {
        let (status, code, field, message) = answer(Error::HostTaken {
            host: "a.local".into(),
            owner: Some("web".into()),
        });
        assert_eq!(
            (status, code, field.as_deref()),
            (409, ErrorCode::Conflict, Some("access.host"))
        );
        assert_eq!(
            message,
            "access.host: \"a.local\" is already routed to pod \"web\"; pick another host or change that pod first"
        );
        let (_, _, field, message) = answer(Error::HostTaken {
            host: "a.local".into(),
            owner: None,
        });
        assert_eq!(field.as_deref(), Some("access.host"));
        assert_eq!(message, "access.host: \"a.local\" is already routed to another pod");
    }

    #[test]
    fn a_missing_revision_names_to_revision_only_when_one_was_asked_for() {
        let (status, code, field, message) = answer(Error::NoRevision {
            pod: "web".into(),
            number: Some(7),
        });
        assert_eq!(
            (status, code, field.as_deref()),
            (409, ErrorCode::Conflict, Some("to_revision"))
        );
        assert_eq!(
            message,
            "to_revision: pod web has no revision 7; `dubectl rollout history web` lists them"
        );
        let (status, _, field, message) = answer(Error::NoRevision {
            pod: "web".into(),
            number: None,
        });
        assert_eq!((status, field), (409, None));
        assert_eq!(message, "pod web has no earlier revision to roll back to");
    }

    #[test]
    fn a_limit_names_its_field_and_is_422() {
        let (status, code, field, message) = answer(Error::Limit {
            field: "follow".into(),
            message: "at most 2".into(),
        });
        assert_eq!(
            (status, code, field.as_deref()),
            (422, ErrorCode::LimitExceeded, Some("follow"))
        );
        assert_eq!(message, "follow: at most 2");
    }

    #[test]
    fn file_and_internal_errors_are_500_without_a_field() {
        for e in [
            Error::Internal("bug".into()),
            Error::AlreadyExists { path: "/x".into() },
            Error::Io {
                context: "creating /x".into(),
                source: std::io::Error::other("no"),
            },
        ] {
            let (status, code, field, _) = answer(e);
            assert_eq!((status, code, field), (500, ErrorCode::Internal, None));
        }
    }
}

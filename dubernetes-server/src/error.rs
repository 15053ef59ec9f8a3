//! Errors as the API answers them: [`ErrorCode`] (stable, machine-readable),
//! [`ApiError`] (the JSON body), and the mapping of the core's errors to HTTP
//! statuses. The mapping matches on variants and their fields, never on
//! message text: the core says which input is at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dubernetes_core::{Error, FieldError, SpecError};
use serde::{Deserialize, Serialize};

pub use dubernetes_core::ErrorCode;

/// An error answer: the JSON body every client reads
/// ([`dubernetes_core::ApiError`], `{"code", "message", "field", "fields"}`)
/// and the HTTP status it is sent with.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiError {
    body: dubernetes_core::ApiError,
    #[serde(skip)]
    status: u16,
}

/// The document describes the body; the status is the response's.
impl utoipa::PartialSchema for ApiError {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <dubernetes_core::ApiError as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for ApiError {
    fn name() -> std::borrow::Cow<'static, str> {
        <dubernetes_core::ApiError as utoipa::ToSchema>::name()
    }

    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <dubernetes_core::ApiError as utoipa::ToSchema>::schemas(schemas)
    }
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            body: dubernetes_core::ApiError::new(code, message),
            status: status.as_u16(),
        }
    }

    pub(crate) fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub(crate) fn with_optional_field(mut self, field: Option<String>) -> Self {
        self.body.field = field;
        self
    }

    pub(crate) fn with_fields(mut self, fields: Vec<FieldError>) -> Self {
        self.body.field = fields.first().map(|f| f.field.clone());
        self.body.fields = fields;
        self
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The body clients read.
    pub fn body(&self) -> &dubernetes_core::ApiError {
        &self.body
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
            Error::HostTaken { path, .. } => {
                let field = if path == "/" { "access.host" } else { "access.path" };
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_field(field)
            }
            Error::Certificate { field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidCertificate, message)
                    .with_field(field)
            }
            Error::SecretNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message).with_field("name")
            }
            Error::SecretExists(_) | Error::SecretInUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_field("name")
            }
            Error::InvalidSecret { field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSecret, message).with_field(field)
            }
            Error::SecretTaken(_) | Error::SecretUsed { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_field("name")
            }
            Error::SecretsUnavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::SecretsUnavailable, message)
            }
            Error::VolumeNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message).with_field("name")
            }
            Error::VolumeInUse { .. } | Error::VolumeNotOwned { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_field("name")
            }
            Error::NoRevision { number, .. } => {
                let error = ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message);
                match number {
                    Some(_) => error.with_field("to_revision"),
                    None => error,
                }
            }
            Error::ListenTaken { field, .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_field(field)
            }
            Error::Limit { field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::LimitExceeded, message).with_field(field)
            }
            Error::Unschedulable(_) => ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message),
            Error::Docker { .. } | Error::DockerTimeout(_) | Error::NotSwarmManager(_) => {
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
            Error::InvalidInput { field, .. } if field == "command" => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBody, message).with_field(field)
            }
            Error::RunNotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message).with_field("run")
            }
            Error::NoReadyReplica(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_field("replica")
            }
            Error::ImagePull { reason, .. } => {
                use dubernetes_core::PullFailure;
                let status = match reason {
                    PullFailure::Unreachable | PullFailure::Other => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::CONFLICT,
                };
                ApiError::new(status, ErrorCode::ImagePullFailed, message).with_field("image")
            }
            Error::TooManyRuns { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitExceeded, message).with_field("runs")
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
        (api.status().as_u16(), api.body.code, api.body.field, api.body.message)
    }

    #[test]
    fn a_taken_host_is_a_conflict_on_access_host() {
        let (status, code, field, message) = answer(Error::HostTaken {
            host: "a.local".into(),
            path: "/".into(),
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
            path: "/".into(),
            owner: None,
        });
        assert_eq!(field.as_deref(), Some("access.host"));
        assert_eq!(message, "access.host: \"a.local\" is already routed to another pod");
        let (status, _, field, message) = answer(Error::HostTaken {
            host: "a.local".into(),
            path: "/api".into(),
            owner: Some("api".into()),
        });
        assert_eq!((status, field.as_deref()), (409, Some("access.path")));
        assert_eq!(
            message,
            "access.path: \"/api\" of host \"a.local\" is already routed to pod \"api\"; pick another path or host or change that pod first"
        );
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

//! TLS secrets: create (or replace), list, read, delete. Answers carry what
//! the certificate says (hosts, issuer, validity, the pods using it), never
//! the key.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use dubernetes_core::{Dubernetes, NewTlsSecret};

use super::pods::body_or_error;
use crate::error::{ApiError, ErrorCode};

fn new_secret(body: Result<Bytes, BytesRejection>) -> Result<NewTlsSecret, ApiError> {
    let body = body_or_error(body)?;
    serde_json::from_slice(&body).map_err(|e| {
        // serde_json's message names the field, never quotes a value (the key).
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            format!("expected JSON {{\"name\", \"cert\", \"key\"}} with PEM text: {e}"),
        )
        .with_field("body")
    })
}

/// Every TLS secret, by name (no keys).
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", security(("bearer" = [])), responses(
    (status = 200, body = Vec<dubernetes_core::TlsSecret>), (status = 401, body = ApiError)))]
pub(crate) async fn list_secrets(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.secrets().await?))
}

/// Creates a TLS secret: 201, or 409 when the name exists; 422
/// `invalid_certificate` (field `cert` or `key`) when the pair is unusable.
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", security(("bearer" = [])),
    request_body = dubernetes_core::NewTlsSecret,
    responses((status = 201, body = dubernetes_core::TlsSecret), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError, description = "invalid_certificate")))]
pub(crate) async fn post_secret(
    State(o): State<Dubernetes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let secret = new_secret(body)?;
    Ok((StatusCode::CREATED, axum::Json(o.create_secret(secret).await?)))
}

/// Creates or replaces a TLS secret; the new certificate must cover the hosts of the pods using it.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "secret name")),
    request_body = dubernetes_core::NewTlsSecret,
    responses((status = 200, body = dubernetes_core::TlsSecret), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 422, body = ApiError, description = "invalid_certificate or name_mismatch")))]
pub(crate) async fn put_secret(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let secret = new_secret(body)?;
    if secret.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameMismatch,
            format!("the body names secret {:?} but the path {name:?}", secret.name),
        )
        .with_field("name"));
    }
    Ok(axum::Json(o.replace_secret(secret).await?))
}

/// One TLS secret (no key).
#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "secret name")),
    responses((status = 200, body = dubernetes_core::TlsSecret), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_secret(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.secret(&name).await?))
}

/// Deletes a TLS secret; 409 while pods use it.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "secret name")),
    responses((status = 200, description = "`{deleted: name}`"), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "in use by pods")))]
pub(crate) async fn delete_secret(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    o.delete_secret(&name).await?;
    Ok(axum::Json(serde_json::json!({"deleted": name})))
}

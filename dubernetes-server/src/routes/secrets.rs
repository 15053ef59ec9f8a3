//! Secrets: create (or replace), list, read, delete. TLS secrets answer
//! what the certificate says (hosts, issuer, validity, the pods using it),
//! never the key; generic and docker-registry secrets answer their names,
//! keys and registry, never a value.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use dubernetes_core::{AnySecret, Dubernetes, NewSecret, NewTlsSecret};

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

/// A body with `type` (`generic`, `docker-registry`) is a [`NewSecret`];
/// one without is a TLS secret.
enum NewAny {
    Tls(NewTlsSecret),
    Data(NewSecret),
}

impl NewAny {
    fn name(&self) -> &str {
        match self {
            NewAny::Tls(s) => &s.name,
            NewAny::Data(s) => &s.name,
        }
    }
}

fn new_any(body: Result<Bytes, BytesRejection>) -> Result<NewAny, ApiError> {
    let body = body_or_error(body)?;
    let typed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
        .is_ok_and(|m| m.get("type").is_some_and(|t| t != "tls"));
    if !typed {
        return new_secret(Ok(body)).map(NewAny::Tls);
    }
    serde_json::from_slice(&body).map(NewAny::Data).map_err(|e| {
        // serde_json quotes a value of the wrong type ("invalid type: string
        // \"...\""): only its words about field names are repeated.
        let text = e.to_string();
        let detail = if text.starts_with("unknown field") || text.starts_with("missing field") || text.starts_with("unknown variant") {
            format!(": {text}")
        } else {
            String::new()
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody,
            format!(
                "expected JSON {{\"name\", \"type\": \"generic\", \"data\": {{KEY: \"text\"}}, \"binary_data\": {{KEY: \"base64\"}}}} or {{\"name\", \"type\": \"docker-registry\", \"docker_server\", \"docker_username\", \"docker_password\"}}{detail}"
            ),
        )
        .with_field("body")
    })
}

/// Every secret of every type, by name: what TLS certificates say, the keys
/// of generic secrets, the registry of docker-registry ones; never a value.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", security(("bearer" = [])), responses(
    (status = 200, body = Vec<dubernetes_core::AnySecret>), (status = 401, body = ApiError)))]
pub(crate) async fn list_secrets(State(o): State<Dubernetes>) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.all_secrets().await?))
}

/// Creates a secret: TLS (`{name, cert, key}`), generic or docker-registry
/// (`{name, type, ...}`): 201, or 409 when the name exists; 422
/// `invalid_certificate` or `invalid_secret` (with the field) when unusable.
#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", security(("bearer" = [])),
    request_body = dubernetes_core::NewAnySecret,
    responses((status = 201, body = dubernetes_core::AnySecret), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError), (status = 422, body = ApiError, description = "invalid_certificate or invalid_secret"),
        (status = 503, body = ApiError, description = "secrets_unavailable")))]
pub(crate) async fn post_secret(
    State(o): State<Dubernetes>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let made = match new_any(body)? {
        NewAny::Tls(secret) => AnySecret::Tls(o.create_secret(secret).await?),
        NewAny::Data(secret) => AnySecret::Data(o.create_data_secret(secret).await?),
    };
    Ok((StatusCode::CREATED, axum::Json(made)))
}

/// Creates or replaces a secret. A TLS certificate must cover the hosts of
/// the pods using it; the pods using a generic secret roll to a new revision.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "secret name")),
    request_body = dubernetes_core::NewAnySecret,
    responses((status = 200, body = dubernetes_core::AnySecret), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError, description = "the name is a secret of another type"),
        (status = 422, body = ApiError, description = "invalid_certificate, invalid_secret or name_mismatch"),
        (status = 503, body = ApiError, description = "secrets_unavailable")))]
pub(crate) async fn put_secret(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let secret = new_any(body)?;
    if secret.name() != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameMismatch,
            format!("the body names secret {:?} but the path {name:?}", secret.name()),
        )
        .with_field("name"));
    }
    Ok(axum::Json(match secret {
        NewAny::Tls(secret) => AnySecret::Tls(o.replace_secret(secret).await?),
        NewAny::Data(secret) => AnySecret::Data(o.replace_data_secret(secret).await?),
    }))
}

/// One secret (names and keys, never a value).
#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "secret name")),
    responses((status = 200, body = dubernetes_core::AnySecret), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub(crate) async fn get_secret(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(o.any_secret(&name).await?))
}

/// Deletes a secret of any type; 409 while pods use it.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", security(("bearer" = [])),
    params(("name" = String, Path, description = "secret name")),
    responses((status = 200, description = "`{deleted: name}`"), (status = 401, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "in use by pods")))]
pub(crate) async fn delete_secret(
    State(o): State<Dubernetes>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    o.delete_any_secret(&name).await?;
    Ok(axum::Json(serde_json::json!({"deleted": name})))
}

//! The OpenAPI document, generated from the handlers and types (what
//! `GET /v1/openapi.json` serves and `docs/openapi.json` holds; a test keeps
//! them equal).

use utoipa::OpenApi;

pub mod contract;

use crate::error::{ApiError, ErrorCode};
use crate::routes::meta::{self, VersionInfo};
use crate::routes::pods::{self, ApplyResponse, RollbackRequest};
use crate::routes::{events, exec, logs, nodes, runs, secrets, volumes, watch};

/// The OpenAPI document of the API, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dubernetes API",
        description = "Desired state in, running containers out. See docs/api.md."
    ),
    paths(
        meta::healthz,
        meta::version,
        meta::metrics,
        crate::dashboard::new_link,
        pods::list_pods,
        pods::post_pod,
        pods::get_pod,
        pods::put_pod,
        pods::delete_pod,
        pods::revisions,
        pods::rollback,
        secrets::list_secrets,
        secrets::post_secret,
        secrets::get_secret,
        secrets::put_secret,
        secrets::delete_secret,
        volumes::list_volumes,
        volumes::delete_volume,
        nodes::list_nodes,
        events::events,
        meta::ingress,
        watch::watch,
        logs::logs,
        openapi_json,
        exec::exec,
        runs::post_run,
        runs::list_runs,
        runs::get_run,
        runs::delete_run
    ),
    modifiers(&BearerAuth),
    components(schemas(
        ErrorCode,
        ApiError,
        ApplyResponse,
        VersionInfo,
        crate::dashboard::DashboardLink,
        RollbackRequest,
        dubernetes_core::WatchEvent,
        dubernetes_core::LogLine,
        dubernetes_core::dubernetes_api::ExecRequest,
        dubernetes_core::dubernetes_api::RunRequest,
        dubernetes_core::dubernetes_api::Run,
        dubernetes_core::dubernetes_api::RunExit
    ))
)]
pub struct ApiDoc;

/// Adds the bearer-token scheme every route but `/healthz` requires.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "server", security(("bearer" = [])), responses((status = 200, description = "The OpenAPI document")))]
pub(crate) async fn openapi_json() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
}

/// The OpenAPI document as pretty JSON (what `GET /v1/openapi.json` serves and
/// `docs/openapi.json` holds): the generated one with the constraints and
/// statuses of [`contract`] written in.
pub fn openapi_document() -> String {
    let mut json = serde_json::to_value(ApiDoc::openapi())
        .and_then(|mut doc| {
            let missing = contract::apply(&mut doc);
            debug_assert!(missing.is_empty(), "constraints for missing schema parts: {missing:?}");
            serde_json::to_string_pretty(&doc)
        })
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// The JSON pointers of [`contract`] that the generated document lacks (none, or the types changed).
pub fn openapi_contract_gaps() -> Vec<String> {
    serde_json::to_value(ApiDoc::openapi())
        .map(|mut doc| contract::apply(&mut doc))
        .unwrap_or_else(|e| vec![e.to_string()])
}

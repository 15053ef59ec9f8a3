//! The API contract cannot drift: `docs/openapi.json` is the document the
//! server generates, and every error code is documented in `docs/api.md`.
//!
//! After changing the API: `UPDATE_OPENAPI=1 cargo test -p dubernetes-server openapi`.

use std::path::PathBuf;

use dubernetes_server::{ErrorCode, openapi_document};

fn docs(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs").join(file)
}

#[test]
fn openapi_document_in_docs_is_current() {
    let generated = openapi_document();
    let path = docs("openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("writing docs/openapi.json");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "docs/openapi.json is out of date with the code; regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p dubernetes-server openapi` and commit it"
    );
}

#[test]
fn openapi_document_is_valid_json_with_every_route() {
    let doc: serde_json::Value = serde_json::from_str(&openapi_document()).expect("valid JSON");
    let paths = doc["paths"].as_object().expect("paths");
    for route in [
        "/v1/pods",
        "/v1/pods/{name}",
        "/v1/pods/{name}/logs",
        "/v1/pods/{name}/revisions",
        "/v1/pods/{name}/rollback",
        "/v1/pods/{name}/exec",
        "/v1/pods/{name}/runs",
        "/v1/pods/{name}/runs/{run}",
        "/v1/events",
        "/v1/watch",
        "/v1/version",
        "/v1/openapi.json",
    ] {
        assert!(paths.contains_key(route), "{route} missing from the OpenAPI document");
    }
}

#[test]
fn every_error_code_is_documented() {
    let api = std::fs::read_to_string(docs("api.md")).expect("docs/api.md");
    for code in ErrorCode::ALL {
        let json = serde_json::to_value(code).expect("code serializes");
        assert_eq!(json.as_str(), Some(code.as_str()));
        assert!(
            api.contains(&format!("`{}`", code.as_str())),
            "error code `{}` is not documented in docs/api.md",
            code.as_str()
        );
    }
}

#[test]
fn every_constraint_lands_on_a_part_of_the_document() {
    assert_eq!(dubernetes_server::openapi_contract_gaps(), Vec::<String>::new());
}

#[test]
fn every_operation_lists_its_error_statuses_with_the_error_body() {
    let doc: serde_json::Value = serde_json::from_str(&openapi_document()).expect("valid JSON");
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let responses = op["responses"].as_object().expect("responses");
            let mut needed = vec!["503"];
            if op.get("security").is_some() {
                needed.push("401");
            }
            for status in needed {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ApiError",
                        "{method} {path} {status} has no error body"
                    );
                }
            }
        }
    }
}

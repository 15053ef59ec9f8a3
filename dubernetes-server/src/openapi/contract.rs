//! What `utoipa`'s derives cannot say, written into the generated document:
//! every input constraint the server enforces (patterns, lengths, ranges,
//! the cross-field rules of a health check and an update strategy) and every
//! status an operation can return, each with the JSON error body.
//!
//! Patterns are the server's own rules: the name, host, image and env-key
//! patterns below are the regular expressions of `dubernetes_api`'s
//! validation (a test checks both agree on samples; the contract test,
//! `tests/tests/contract.rs`, checks it on generated input). Durations and
//! sizes have a `format` (`humantime-duration`, with the grammar's pattern:
//! `500ms`, `2s`, `1m 30s`; `byte-size`: `256Mi`, `1g`) and their range in words: a regular
//! expression cannot bound a sum of units.

use serde_json::{Value, json};

use dubernetes_core::dubernetes_api::run::{MAX_EXEC_ARGS, MAX_EXEC_COMMAND_BYTES};
use dubernetes_core::dubernetes_api::spec::DURATION_PATTERN;
use dubernetes_core::dubernetes_api::{MAX_IMAGE_REFERENCE, MAX_MOUNT_PATH_BYTES, MAX_VOLUMES};
use dubernetes_core::limits::MAX_ENV_VALUE_BYTES;
use dubernetes_core::limits::MAX_ENV_VARS;
use dubernetes_core::limits::MAX_PIDS;
use dubernetes_core::limits::MAX_REPLICAS;

/// Where the document keeps its schemas.
const SCHEMAS: &str = "/components/schemas";

/// A DNS label: what a pod name (and the instance name) must be.
pub const DNS_LABEL: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// An RFC 1123 host name of DNS labels, not in the reserved `.invalid` domain.
pub const HOST: &str =
    r"^(?!(.*\.)?invalid$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";
/// A host of `access`: [`HOST`], or `*.` before two labels or more (a wildcard for one label).
pub const HOST_OR_WILDCARD: &str = r"^(?!(.*\.)?invalid$)(\*\.(?=[^.]+\.[^.]))?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";
/// `access.path`: `/` and whole segments of `[A-Za-z0-9._~-]`, none `.` or `..`.
pub const ROUTE_PATH: &str = r"^(?!.*/\.\.?(/|$))/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/?)?$";
/// `secret_files[].path`: an absolute directory of segments of `[A-Za-z0-9._-]`, none `.` or `..`.
pub const SECRET_DIR: &str = r"^(?!.*/\.\.?(/|$))/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?$";
/// The image reference grammar of docker's `reference` package, as the
/// engine normalizes it: the first part is a registry only with a `.` or a
/// `:` or as `localhost` (else it is a lowercase path component), and a
/// digest is sha256, sha384 or sha512 in lowercase hex of its exact length.
/// With `maxLength` [`MAX_IMAGE_REFERENCE`] this is exactly what the server takes.
pub const IMAGE: &str = concat!(
    r"^(?:(?:localhost(?::[0-9]+)?",
    r"|(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+(?::[0-9]+)?",
    r"|(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]):[0-9]+)/)?",
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}))?$"
);
/// A mount path: absolute, plain components (none empty, `.` or `..`), not `/` itself.
pub const MOUNT_PATH: &str = concat!(
    r"^(?:/(?:[A-Za-z0-9\-_@+~=,][A-Za-z0-9\-._@+~=,]*",
    r"|\.[A-Za-z0-9\-_@+~=,][A-Za-z0-9\-._@+~=,]*|\.\.[A-Za-z0-9\-._@+~=,]+))+$"
);
/// An environment variable name.
pub const ENV_KEY: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// A path a readiness check may GET: RFC 3986 characters only.
pub const HTTP_PATH: &str = r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$";
/// `expose[].listen`: `IPv4:PORT`, `[IPv6]:PORT` or a port alone, the port 1
/// to 65535 without leading zeros and not 80 or 443 (the ingress's own).
/// The IPv6 part is RFC 4291's text form without an embedded IPv4 address
/// or a zone, as the server parses it.
pub const LISTEN: &str = concat!(
    r"^(?:(?:(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|\[(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:))\]):)?",
    r"(?!(?:80|443)$)(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
);
/// A NUL character (text must not contain one).
const NUL: &str = "\0";

/// Applies every constraint and response to `doc`; returns the JSON pointers
/// that were not found (none, unless the types changed: a test checks).
pub(crate) fn apply(doc: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    let mut set = |doc: &mut Value, pointer: &str, keys: Value| match doc.pointer_mut(pointer) {
        Some(Value::Object(target)) => {
            if let Value::Object(keys) = keys {
                for (k, v) in keys {
                    if v.is_null() {
                        target.remove(&k);
                    } else {
                        target.insert(k, v);
                    }
                }
            }
        }
        _ => missing.push(pointer.to_string()),
    };
    pod_fields(doc, &mut set);
    secret_refs(doc, &mut set);
    access(doc, &mut set);
    volumes(doc, &mut set);
    placement(doc, &mut set);
    expose(doc, &mut set);
    cron(doc, &mut set);
    resources(doc, &mut set);
    health(doc, &mut set);
    update(doc, &mut set);
    // An empty body means the previous revision; `null` is not a request.
    set(
        doc,
        "/paths/~1v1~1pods~1{name}~1rollback/post/requestBody/content/application~1json",
        json!({"schema": {"$ref": "#/components/schemas/RollbackRequest"}}),
    );

    // Parameters.
    set_param(
        doc,
        &mut missing,
        "/v1/pods/{name}",
        "name",
        json!({"pattern": DNS_LABEL, "maxLength": 63}),
    );
    for (path, name, schema) in [
        ("/v1/events", "limit", json!({"maximum": u32::MAX})),
        ("/v1/pods/{name}/logs", "tail", json!({"maximum": u64::MAX})),
        ("/v1/watch", "since", json!({"maximum": u64::MAX})),
    ] {
        set_param(doc, &mut missing, path, name, schema);
    }
    set_param(
        doc,
        &mut missing,
        "/v1/pods/{name}/logs",
        "since",
        duration("any length"),
    );
    responses(doc);
    unsigned(doc);
    missing
}

/// The pod's own fields: name, image, replicas, port, env, command and
/// args, the stop grace period; the hooks' and a run's or exec's command.
fn pod_fields(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    let pod = format!("{s}/PodSpec/properties");
    set(
        doc,
        &format!("{pod}/name"),
        json!({"pattern": DNS_LABEL, "minLength": 1, "maxLength": 63}),
    );
    set(
        doc,
        &format!("{pod}/image"),
        json!({"pattern": IMAGE, "minLength": 1, "maxLength": MAX_IMAGE_REFERENCE}),
    );
    set(
        doc,
        &format!("{pod}/replicas"),
        json!({"maximum": MAX_REPLICAS, "description":
        format!("How many replicas to keep running (default 1). `0` keeps the pod but runs nothing. At most the server's --max-replicas (default {MAX_REPLICAS}).")}),
    );
    set(doc, &format!("{pod}/port"), json!({"minimum": 1, "maximum": 65535}));
    set(
        doc,
        &format!("{pod}/env"),
        json!({
            "maxProperties": MAX_ENV_VARS,
            "propertyNames": {"type": "string", "pattern": ENV_KEY},
            "additionalProperties": {"type": "string", "not": {"pattern": NUL}, "maxLength": MAX_ENV_VALUE_BYTES,
                "description": format!("at most {MAX_ENV_VALUE_BYTES} bytes of UTF-8")},
        }),
    );
    let item = json!({"type": "string", "not": {"pattern": NUL}, "maxLength": 8192});
    set(
        doc,
        &format!("{pod}/command"),
        json!({"type": "array", "minItems": 1, "maxItems": 256, "items": item}),
    );
    set(
        doc,
        &format!("{pod}/args"),
        json!({"type": "array", "maxItems": 256, "items": item}),
    );
    set(doc, &format!("{pod}/stop_grace_period"), duration("at most 1h"));
    // Deploy hooks: each command as `command` is, the deadline a duration.
    for hook in ["pre_deploy", "post_deploy"] {
        set(
            doc,
            &format!("{s}/Hooks/properties/{hook}"),
            json!({"minItems": 1, "maxItems": 256, "items": item}),
        );
    }
    set(doc, &format!("{s}/Hooks/properties/timeout"), duration("1s to 24h"));
    // A run's command (and an exec's): a first word, at most MAX_EXEC_ARGS
    // items without NUL, at most MAX_EXEC_COMMAND_BYTES bytes in all (said in words).
    let command = |what: &str| {
        json!({
            "minItems": 1,
            "maxItems": MAX_EXEC_ARGS,
            "prefixItems": [{"type": "string", "minLength": 1}],
            "items": {"type": "string", "not": {"pattern": NUL}},
            "description": format!("The command and its arguments: a non-empty first word, at most {MAX_EXEC_ARGS} items and {MAX_EXEC_COMMAND_BYTES} bytes in all, no NUL. {what}"),
        })
    };
    set(
        doc,
        &format!("{s}/RunRequest/properties/command"),
        command("They replace the pod's `command` and `args` (the image's entrypoint stays)."),
    );
    set(
        doc,
        &format!("{s}/ExecRequest/properties/command"),
        command("Run without a shell."),
    );
    // `hooks` names at least one hook.
    set(
        doc,
        &format!("{s}/Hooks"),
        json!({"anyOf": [
            {"required": ["pre_deploy"], "properties": {"pre_deploy": {"type": "array"}}},
            {"required": ["post_deploy"], "properties": {"post_deploy": {"type": "array"}}},
        ]}),
    );
}

/// Secret references: names are DNS labels, files go to a plain absolute directory.
fn secret_refs(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    let pod = format!("{s}/PodSpec/properties");
    // Secret references: names are DNS labels, files go to a plain absolute directory.
    set(
        doc,
        &format!("{s}/SecretFiles/properties/secret"),
        json!({"pattern": DNS_LABEL, "minLength": 1, "maxLength": 63}),
    );
    set(
        doc,
        &format!("{s}/SecretFiles/properties/path"),
        json!({"pattern": SECRET_DIR, "minLength": 2, "maxLength": 256}),
    );
    set(
        doc,
        &format!("{pod}/image_pull_secret"),
        json!({"pattern": DNS_LABEL, "minLength": 1, "maxLength": 63}),
    );
}

/// `access`: hosts (or wildcards), path, body and time limits; at least one
/// name, and no wildcard with `tls: auto`.
fn access(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    set(
        doc,
        &format!("{s}/Access/properties/host"),
        json!({"pattern": HOST_OR_WILDCARD, "minLength": 1, "maxLength": 253,
        "description": "The host name the ingress routes to this pod: RFC 1123 (lowercase letters, digits, `-` and `.`), at most 253 characters, not in the reserved `.invalid` domain; or a wildcard `*.example.com` (one leading label). Merged with `hosts`; at least one name."}),
    );
    let host = json!({"type": "string", "pattern": HOST_OR_WILDCARD, "minLength": 1, "maxLength": 253});
    set(
        doc,
        &format!("{s}/Access/properties/hosts"),
        json!({"maxItems": dubernetes_core::dubernetes_api::MAX_HOSTS, "items": host}),
    );
    set(
        doc,
        &format!("{s}/Access/properties/path"),
        json!({"pattern": ROUTE_PATH, "maxLength": 256}),
    );
    set(doc, &format!("{s}/Access/properties/max_body"), size("1Ki to 1Ti"));
    set(doc, &format!("{s}/Access/properties/timeout"), duration("1s to 24h"));
    // At least one name; `auto` (HTTP-01) cannot validate a wildcard.
    set(
        doc,
        &format!("{s}/Access"),
        json!({
            "anyOf": [
                {"required": ["host"], "properties": {"host": {"type": "string"}}},
                {"required": ["hosts"], "properties": {"hosts": {"minItems": 1}}},
            ],
            "if": {"required": ["tls"], "properties": {"tls": {"const": "auto"}}},
            "then": {"properties": {"host": {"pattern": "^[^*]"}, "hosts": {"items": {"pattern": "^[^*]"}}}},
        }),
    );
}

/// `volumes`: each entry a named volume or a tmpfs, never both.
fn volumes(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    let pod = format!("{s}/PodSpec/properties");
    // `volumes`: each entry is a named volume or a tmpfs, never both. No
    // path (and no volume) twice is said in words: JSON Schema cannot.
    set(
        doc,
        &format!("{pod}/volumes"),
        json!({"maxItems": MAX_VOLUMES,
        "description": format!("Storage of every replica: named volumes of the instance (kept when the pod goes) and tmpfs scratch space; at most {MAX_VOLUMES} entries, no path mounted twice, no volume twice.")}),
    );
    let mount_path = json!({"type": "string", "pattern": MOUNT_PATH, "maxLength": MAX_MOUNT_PATH_BYTES});
    let absent = json!({"type": "null"});
    let mut tmpfs_size = size("1Mi to 1Ti; default 64Mi");
    tmpfs_size["type"] = json!(["string", "null"]);
    set(
        doc,
        &format!("{s}/Volume"),
        json!({"oneOf": [
            {"required": ["name", "path"], "properties": {
                "name": {"type": "string", "pattern": DNS_LABEL, "minLength": 1, "maxLength": 63},
                "path": mount_path, "tmpfs": absent, "size": absent}},
            {"required": ["tmpfs"], "properties": {
                "tmpfs": mount_path, "size": tmpfs_size, "name": absent, "path": absent}},
        ]}),
    );
}

/// `placement`: Swarm's constraint syntax, checked as `Constraint::parse` does.
fn placement(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    // `placement`: Swarm's constraint syntax, checked as `Constraint::parse` does.
    let token = "[A-Za-z0-9._-]{1,128}";
    let key = format!("(node\\.(id|hostname|platform\\.os|platform\\.arch)|(node|engine)\\.labels\\.{token})");
    let constraint =
        format!("^ *({key} *(==|!=) *[A-Za-z0-9._/:-]{{1,128}}|node\\.role *(==|!=) *(manager|worker)) *$");
    set(
        doc,
        &format!("{s}/Placement/properties/constraints"),
        json!({"maxItems": dubernetes_core::dubernetes_api::MAX_CONSTRAINTS,
            "items": {"type": "string", "pattern": constraint}}),
    );
    set(
        doc,
        &format!("{s}/Placement/properties/spread"),
        json!({"pattern": format!("^(node|engine)\\.labels\\.{token}$")}),
    );
}

/// `expose`: the replicas' port and the listen address on the host.
fn expose(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    let pod = format!("{s}/PodSpec/properties");
    // `expose`: no listen port twice is said in words: JSON Schema cannot.
    set(
        doc,
        &format!("{pod}/expose"),
        json!({"maxItems": dubernetes_core::dubernetes_api::MAX_EXPOSE,
        "description": format!("TCP ports of the replicas the ingress publishes on the host, for clients outside the instance; ready replicas only. At most {} entries, no listen port twice in the instance (another pod's: 409), none the ingress's own HTTP or HTTPS port on the host (409).", dubernetes_core::dubernetes_api::MAX_EXPOSE)}),
    );
    set(
        doc,
        &format!("{s}/Expose/properties/port"),
        json!({"format": "int32", "minimum": 1, "maximum": 65535}),
    );
    set(
        doc,
        &format!("{s}/Expose/properties/listen"),
        json!({"pattern": LISTEN, "minLength": 1, "maxLength": 53}),
    );
}

/// `resources` and `logging`: limits and log rotation.
fn resources(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    let res = format!("{s}/Resources/properties");
    set(doc, &format!("{res}/memory"), size("6Mi to 4Ti"));
    set(
        doc,
        &format!("{res}/cpus"),
        json!({"type": "number", "minimum": 0.01, "maximum": 1024}),
    );
    set(doc, &format!("{res}/pids"), json!({"maximum": MAX_PIDS}));

    let log = format!("{s}/Logging/properties");
    set(doc, &format!("{log}/max_size"), size("1Ki to 1Ti"));
    set(doc, &format!("{log}/max_files"), json!({"minimum": 1, "maximum": 100}));
}

/// `health`: path, port, timings, thresholds; `type: http` needs a `path`.
fn health(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    let health = format!("{s}/HealthCheck");
    set(
        doc,
        &format!("{health}/properties/path"),
        json!({"pattern": HTTP_PATH, "maxLength": 1024}),
    );
    set(
        doc,
        &format!("{health}/properties/port"),
        json!({"type": "integer", "minimum": 1, "maximum": 65535}),
    );
    set(doc, &format!("{health}/properties/interval"), duration("100ms to 1h"));
    set(doc, &format!("{health}/properties/timeout"), duration("10ms to 60s"));
    for n in ["healthy_after", "unhealthy_after"] {
        set(
            doc,
            &format!("{health}/properties/{n}"),
            json!({"minimum": 1, "maximum": 100}),
        );
    }
    // `type: http` (the default) needs a `path`; `tcp` and `none` take none.
    set(
        doc,
        &health,
        json!({"anyOf": [
            {"required": ["path"], "properties": {"type": {"const": "http"}, "path": {"minLength": 1}}},
            {"required": ["type"], "properties": {"type": {"enum": ["tcp", "none"]}, "path": {"maxLength": 0}}},
        ]}),
    );
}

/// `update` and `restart_backoff`: surge, unavailability, deadlines, back-off delays.
fn update(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    let s = SCHEMAS;
    let update = format!("{s}/UpdateStrategy");
    for n in ["max_surge", "max_unavailable"] {
        set(
            doc,
            &format!("{update}/properties/{n}"),
            json!({"maximum": MAX_REPLICAS}),
        );
    }
    set(
        doc,
        &format!("{update}/properties/max_failures"),
        json!({"minimum": 1, "maximum": 1000}),
    );
    set(
        doc,
        &format!("{update}/properties/progress_deadline"),
        duration("1s to 24h"),
    );
    set(doc, &format!("{update}/properties/min_ready"), duration("at most 1h"));
    // max_surge (default 1) and max_unavailable (default 0) may not both be 0.
    set(
        doc,
        &update,
        json!({"not": {"required": ["max_surge"],
        "properties": {"max_surge": {"const": 0}, "max_unavailable": {"const": 0}}}}),
    );

    for n in ["initial_delay", "max_delay", "reset_after"] {
        set(
            doc,
            &format!("{s}/RestartBackoff/properties/{n}"),
            duration("at most 24h"),
        );
    }
}

/// utoipa writes Rust's `u32` as `int32` from 0, whose top is 2^31 - 1: the
/// server accepts up to 2^32 - 1. Such integers get `int64` and that maximum
/// (where no tighter one is set).
fn unsigned(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("int32")
                && map.get("minimum").and_then(Value::as_i64) == Some(0)
            {
                map.insert("format".into(), json!("int64"));
                map.entry("maximum").or_insert(json!(u32::MAX));
            }
            map.values_mut().for_each(unsigned);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned),
        _ => {}
    }
}

/// A duration field: its grammar as a pattern, its range in words. Its
/// format is `humantime-duration`, not `duration`: JSON Schema's `duration`
/// is ISO 8601 (`P1D`), which the server does not take, and validators
/// ignore a format they do not know, so the pattern says what is valid.
fn duration(range: &str) -> Value {
    json!({"type": "string", "format": "humantime-duration", "pattern": DURATION_PATTERN, "oneOf": null,
        "description": format!("A duration: a number and a unit (ns, us, ms, s, m, h, d, w, ...), summed, e.g. `500ms`, `2s`, `1m 30s`, or `0`; {range}.")})
}

/// A cron pod's fields: `schedule` (format `cron`: five-field cron, checked
/// by the server's parser) and `timezone` (format `iana-time-zone`); with a
/// schedule no replicas but the default 1, no `access`, no `expose`; without
/// one, none of its companions.
fn cron(doc: &mut Value, set: &mut impl FnMut(&mut Value, &str, Value)) {
    use dubernetes_core::dubernetes_api::{MAX_CRON_HISTORY, MAX_SCHEDULE_BYTES};
    let pod = "/components/schemas/PodSpec";
    set(
        doc,
        &format!("{pod}/properties/schedule"),
        json!({"format": "cron", "minLength": 1, "maxLength": MAX_SCHEDULE_BYTES}),
    );
    set(
        doc,
        &format!("{pod}/properties/timezone"),
        json!({"format": "iana-time-zone", "minLength": 1, "maxLength": 64}),
    );
    set(
        doc,
        &format!("{pod}/properties/history"),
        json!({"minimum": 1, "maximum": MAX_CRON_HISTORY}),
    );
    set(
        doc,
        &format!("{pod}/properties/starting_deadline"),
        duration("1s to 24h; default 5m"),
    );
    set(
        doc,
        &format!("{pod}/properties/timeout"),
        duration("1s to 7d; default none"),
    );
    let absent = json!({"type": "null"});
    set(
        doc,
        pod,
        json!({
            "if": {"required": ["schedule"], "properties": {"schedule": {"type": "string"}}},
            "then": {"properties": {"replicas": {"const": 1}, "access": absent, "expose": {"maxItems": 0}}},
            "else": {"properties": {"timezone": absent, "concurrency": absent, "history": absent,
                "starting_deadline": absent, "timeout": absent}},
        }),
    );
}

/// A byte size field: bytes or a number with k, m, g (powers of 1000), Ki, Mi, Gi.
fn size(range: &str) -> Value {
    json!({"type": "string", "format": "byte-size",
        "description": format!("A size: bytes, or a number with a unit k, m, g (powers of 1000) or Ki, Mi, Gi (powers of 1024), e.g. `256Mi`; {range}.")})
}

/// Sets keys of the schema of the parameter `name` of every operation on `path`.
fn set_param(doc: &mut Value, missing: &mut Vec<String>, path: &str, name: &str, keys: Value) {
    let mut found = false;
    if let Some(Value::Object(ops)) = doc.pointer_mut(&format!("/paths/{}", escape(path))) {
        for op in ops.values_mut() {
            let Some(Value::Array(params)) = op.get_mut("parameters") else {
                continue;
            };
            for p in params.iter_mut().filter(|p| p["name"] == name) {
                if let (Some(Value::Object(schema)), Value::Object(keys)) = (p.get_mut("schema"), &keys) {
                    for (k, v) in keys {
                        if k == "description" {
                            continue;
                        }
                        if v.is_null() {
                            schema.remove(k);
                        } else {
                            schema.insert(k.clone(), v.clone());
                        }
                    }
                    found = true;
                }
            }
        }
    }
    // The path's own `name` parameter is declared once per operation; other
    // operations on sub-paths share the rule.
    if name == "name" && path == "/v1/pods/{name}" {
        let subpaths: Vec<String> = doc["paths"]
            .as_object()
            .map(|p| {
                p.keys()
                    .filter(|k| k.starts_with("/v1/pods/{name}/"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for sub in subpaths {
            set_param(doc, missing, &sub, name, keys.clone());
        }
    }
    if !found {
        missing.push(format!("{path} parameter {name}"));
    }
}

fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

/// Adds the statuses every operation can return besides its own, each with
/// the JSON error body: 401 (a route behind the token), 400 `invalid_query`
/// (an operation with query parameters: unknown or malformed ones), 503
/// `request_timeout`/`shutting_down`/`engine_unavailable` (every route: the
/// deadline), 500 `internal` and 504 `timeout` (routes that read the store
/// or call the engine).
fn responses(doc: &mut Value) {
    let error = |description: &str| {
        json!({"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}})
    };
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return;
    };
    for (path, ops) in paths.iter_mut() {
        let Some(ops) = ops.as_object_mut() else { continue };
        for (method, op) in ops.iter_mut() {
            let secured = op.get("security").is_some();
            let has_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            let has_body = op.get("requestBody").is_some();
            let backend = path != "/healthz" && path != "/v1/openapi.json";
            let Some(Value::Object(responses)) = op.get_mut("responses") else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description));
            };
            if secured {
                add("401", "unauthorized: missing or wrong API token");
            }
            if has_query {
                add("400", "invalid_query: an unknown or malformed query parameter");
            }
            if has_body {
                add("413", "body_too_large: the body is larger than 256 KiB");
            }
            if backend {
                add("500", "internal: the store failed");
                add("504", "timeout: the engine did not answer in time");
            }
            add(
                "503",
                "request_timeout (the request took longer than --request-timeout-seconds), shutting_down, or engine_unavailable",
            );
            let _ = method;
        }
    }
}

#[cfg(test)]
mod tests;

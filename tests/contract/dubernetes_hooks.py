"""Schemathesis hooks of the contract test (tests/tests/contract.rs).

They do not loosen the contract; they keep the run harmless and the
generated values inside what the document says in words. They act in
`before_call`, right before each request of every phase (examples,
coverage, fuzzing, stateful), and schemathesis classifies the case again
after them, so a check expects what is sent.

- With `DUBERNETES_CONTRACT_WRITES=real` (the test's throwaway instance)
  writes are real: pods are stored, rolled out, deleted. A valid pod is
  never pulled (`pull: never`): this machine reaches no registry and a test
  sends nothing off the machine; a missing image is then the pod's status.
  In the stateful phase a create is not a dry run (`dry_run` is dropped from
  `POST /v1/pods`): that phase follows what a create made, and a dry run
  makes nothing by definition. Otherwise (the default) every write is a dry
  run (`dry_run=true`): validated exactly as a real one, nothing stored.
- `PUT /v1/pods/{name}` sends the path's name in the body in positive cases
  (the document says they must be equal; JSON Schema cannot say it);
- a pod's `volumes` mount no path twice and no volume twice in positive
  cases (the document says so in words; JSON Schema cannot say it);
- a pod's `expose` listens on no port twice in positive cases (the
  document says so in words; JSON Schema cannot say it);
- a followed log never ends: `follow` is false;
- a valid run (`POST /v1/pods/{name}/runs`) is detached (`detach: true`):
  streamed, it would last as long as its command, and the whoami image's
  entrypoint serves until it is stopped (the run's container is removed with
  the throwaway instance);
- a pod in a positive case names no secret (`image_pull_secret`,
  `secret_files`, `{secret, key}` env values, `access.tls: {secret}`): the document says each must
  exist, and the run creates none;
- the `humantime-duration` and `byte-size` formats get values inside every
  field's documented range (1s to 60s; 6Mi to 1Ti);
- the `cron` and `iana-time-zone` formats (a cron pod's `schedule` and
  `timezone`) get valid expressions and zone names;
- a negative case that differs from a valid one only in the JSON type of a
  query parameter is not sent: a query string has no types, so `since=0`
  (the integer) is the same request as `since=0` (the string).
"""

import json
import os

import schemathesis
from hypothesis import strategies as st

DRY_RUN = os.environ.get("DUBERNETES_CONTRACT_WRITES") != "real"

_DURATIONS = st.one_of(
    st.integers(min_value=1, max_value=60).map(lambda n: f"{n}s"),
    st.integers(min_value=1000, max_value=60000).map(lambda n: f"{n}ms"),
    st.sampled_from(["1m", "1s 500ms", "30s", "1m 0s", "1.5s"]),
)
schemathesis.openapi.format("humantime-duration", _DURATIONS)
schemathesis.openapi.format(
    "byte-size",
    st.one_of(
        st.integers(min_value=6, max_value=1024 * 1024).map(lambda n: f"{n}Mi"),
        st.integers(min_value=7, max_value=1000).map(lambda n: f"{n}m"),
        st.integers(min_value=1, max_value=1024).map(lambda n: f"{n}Gi"),
    ),
)

schemathesis.openapi.format(
    "cron",
    st.sampled_from(["* * * * *", "*/5 * * * *", "30 2 * * MON-FRI", "0 0 1 * *", "@hourly", "0-30/10 9-17 * JAN-JUN 1"]),
)
schemathesis.openapi.format(
    "iana-time-zone",
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"]),
)

_POD_WRITES = ("/v1/pods", "/v1/pods/{name}")


def _string_query_parameters():
    document = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.json")
    with open(document, encoding="utf-8") as f:
        paths = json.load(f)["paths"]
    found = set()
    for path, operations in paths.items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("schema", {}).get("type") == "string":
                    found.add((path, parameter["name"]))
    return found


# (path, name) of every query parameter the document types as a string.
_STRING_QUERY = _string_query_parameters()


def _mode(case):
    meta = getattr(case, "_meta", None)
    return "" if meta is None else str(meta.generation.mode).lower()



def _positive(case):
    return _mode(case).endswith("positive")


def _phase(case):
    meta = getattr(case, "_meta", None)
    return "" if meta is None else str(meta.phase.name).lower()


@schemathesis.hook
def filter_case(context, case):
    if not _mode(case).endswith("negative") or not isinstance(case.query, dict):
        return True
    # A scalar of another JSON type in a query parameter reaches the server
    # as the same text as a string would: not invalid on the wire.
    scalars = (int, float, bool)
    path = case.operation.path
    return not any(
        isinstance(v, scalars) and (path, k) in _STRING_QUERY for k, v in case.query.items()
    )


def _dedupe_volumes(body):
    paths, names, kept = set(), set(), []
    for volume in body["volumes"]:
        if not isinstance(volume, dict):
            kept.append(volume)
            continue
        where = volume.get("path") or volume.get("tmpfs")
        name = volume.get("name")
        if where in paths or (name is not None and name in names):
            continue
        paths.add(where)
        if name is not None:
            names.add(name)
        kept.append(volume)
    body["volumes"] = kept


def _dedupe_expose(body):
    ports, kept = set(), []
    for entry in body["expose"]:
        listen = entry.get("listen") if isinstance(entry, dict) else None
        port = listen.rsplit(":", 1)[-1] if isinstance(listen, str) else None
        if port is not None and port in ports:
            continue
        ports.add(port)
        kept.append(entry)
    body["expose"] = kept


def _valid_pod(case):
    body = case.body
    if case.operation.method.upper() == "PUT" and case.path_parameters:
        body["name"] = case.path_parameters.get("name")
    # The run creates no secrets: a valid pod naming one would be refused
    # (invalid_secret, the secret does not exist), so valid pods name none.
    body.pop("image_pull_secret", None)
    body.pop("secret_files", None)
    access = body.get("access")
    if isinstance(access, dict) and isinstance(access.get("tls"), dict):
        del access["tls"]
    env = body.get("env")
    if isinstance(env, dict):
        for key in [k for k, v in env.items() if isinstance(v, dict)]:
            env[key] = "x"
    if isinstance(body.get("volumes"), list):
        _dedupe_volumes(body)
    if isinstance(body.get("expose"), list):
        _dedupe_expose(body)
    if not DRY_RUN:
        body["pull"] = "never"


@schemathesis.hook
def before_call(context, case, kwargs):
    method = case.operation.method.upper()
    path = case.operation.path
    # Only values the document allows are replaced: an invalid one (a
    # negative case) is left as generated, and the server refuses it.
    booleans = (True, False, "true", "false")
    query = case.query if case.query is not None else {}
    if method in ("PUT", "POST", "DELETE") and path != "/v1/pods/{name}/rollback":
        if DRY_RUN:
            if "dry_run" not in query or query["dry_run"] in booleans:
                query["dry_run"] = "true"
                case.query = query
        elif _phase(case) == "stateful" and method == "POST" and query.get("dry_run") in booleans:
            del query["dry_run"]
            case.query = query
    if path == "/v1/pods/{name}/logs" and query.get("follow") in (True, "true"):
        query["follow"] = "false"
        case.query = query
    if method in ("PUT", "POST") and path in _POD_WRITES and _positive(case) and isinstance(case.body, dict):
        _valid_pod(case)
    if method == "POST" and path == "/v1/pods/{name}/runs" and _positive(case) and isinstance(case.body, dict):
        case.body["detach"] = True

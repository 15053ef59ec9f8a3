"""Schemathesis hooks of the contract test (tests/tests/contract.rs).

They do not loosen the contract; they keep the run harmless and the
generated values inside what the document says in words:

- writes are dry runs (`dry_run=true`): the server validates the whole spec
  exactly as for a real write and stores nothing, so no container starts and
  no image is pulled;
- `PUT /v1/pods/{name}` sends the path's name in the body in positive cases
  (the document says they must be equal; JSON Schema cannot say it);
- a pod's `volumes` mount no path twice and no volume twice in positive
  cases (the document says so in words; JSON Schema cannot say it);
- a pod's `expose` listens on no port twice in positive cases (the
  document says so in words; JSON Schema cannot say it);
- a followed log never ends: `follow` is false;
- a pod in a positive case names no secret (`image_pull_secret`,
  `secret_files`, `{secret, key}` env values): the document says each must
  exist, and the run creates none;
- the `duration` and `byte-size` formats get values inside every field's
  documented range (1s to 60s; 6Mi to 1Ti);
- the `cron` and `iana-time-zone` formats (a cron pod's `schedule` and
  `timezone`) get valid expressions and zone names.
"""

import schemathesis
from hypothesis import strategies as st

schemathesis.openapi.format(
    "duration",
    st.one_of(
        st.integers(min_value=1, max_value=60).map(lambda n: f"{n}s"),
        st.integers(min_value=1000, max_value=60000).map(lambda n: f"{n}ms"),
        st.sampled_from(["1m", "1s 500ms", "30s", "1m 0s"]),
    ),
)
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


def _positive(case):
    meta = getattr(case, "_meta", None)
    return meta is not None and str(meta.generation.mode).lower().endswith("positive")


@schemathesis.hook
def map_case(context, case):
    method = case.operation.method.upper()
    path = case.operation.path
    # Only values the document allows are replaced: an invalid one (a
    # negative case) is left as generated, and the server refuses it.
    booleans = (True, False, "true", "false")
    query = case.query if case.query is not None else {}
    if method in ("PUT", "POST", "DELETE") and path != "/v1/pods/{name}/rollback":
        if "dry_run" not in query or query["dry_run"] in booleans:
            query["dry_run"] = "true"
            case.query = query
    if path == "/v1/pods/{name}/logs" and query.get("follow") in (True, "true"):
        query["follow"] = "false"
    if (
        method == "PUT"
        and path == "/v1/pods/{name}"
        and _positive(case)
        and isinstance(case.body, dict)
        and case.path_parameters
    ):
        case.body["name"] = case.path_parameters.get("name")
    # The run creates no secrets: a valid pod naming one would be refused
    # (invalid_secret, the secret does not exist), so valid pods name none.
    if (
        method in ("PUT", "POST")
        and path in ("/v1/pods", "/v1/pods/{name}")
        and _positive(case)
        and isinstance(case.body, dict)
    ):
        case.body.pop("image_pull_secret", None)
        case.body.pop("secret_files", None)
        env = case.body.get("env")
        if isinstance(env, dict):
            for key in [k for k, v in env.items() if isinstance(v, dict)]:
                env[key] = "x"
    if (
        method in ("PUT", "POST")
        and path in ("/v1/pods", "/v1/pods/{name}")
        and _positive(case)
        and isinstance(case.body, dict)
        and isinstance(case.body.get("volumes"), list)
    ):
        paths, names, kept = set(), set(), []
        for volume in case.body["volumes"]:
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
        case.body["volumes"] = kept
    if (
        method in ("PUT", "POST")
        and path in ("/v1/pods", "/v1/pods/{name}")
        and _positive(case)
        and isinstance(case.body, dict)
        and isinstance(case.body.get("expose"), list)
    ):
        ports, kept = set(), []
        for entry in case.body["expose"]:
            listen = entry.get("listen") if isinstance(entry, dict) else None
            port = listen.rsplit(":", 1)[-1] if isinstance(listen, str) else None
            if port is not None and port in ports:
                continue
            ports.add(port)
            kept.append(entry)
        case.body["expose"] = kept
    return case

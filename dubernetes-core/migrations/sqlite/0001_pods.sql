-- Desired state only: what runs is observed from Docker by label.
CREATE TABLE pods (
    name        TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL,              -- PodSpec as JSON
    host        TEXT UNIQUE,                -- access.host; one pod per host
    generation  INTEGER NOT NULL,           -- increases on every change of spec
    created_at  INTEGER NOT NULL,           -- unix milliseconds
    updated_at  INTEGER NOT NULL
) STRICT;

-- What the controller did and why; bounded (old rows are pruned).
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    pod      TEXT NOT NULL,
    at       INTEGER NOT NULL,              -- unix milliseconds
    kind     TEXT NOT NULL,                 -- Normal | Warning
    reason   TEXT NOT NULL,
    message  TEXT NOT NULL
) STRICT;
CREATE INDEX events_by_pod ON events (pod, id);

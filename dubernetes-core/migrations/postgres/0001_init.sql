-- The PostgreSQL store: the same tables as the SQLite store's migrations
-- 0001..0003 (see migrations/sqlite), with PostgreSQL's types, plus what
-- several servers sharing one store need (pod_views).

-- Desired state only: what runs is observed from the engine by label.
CREATE TABLE pods (
    name        TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL,              -- PodSpec as JSON
    host        TEXT UNIQUE,                -- access.host; one pod per host
    generation  BIGINT NOT NULL,            -- increases on every change of spec
    created_at  BIGINT NOT NULL,            -- unix milliseconds
    updated_at  BIGINT NOT NULL
);

-- What the controller did and why; bounded (old rows are pruned).
CREATE TABLE events (
    id       BIGSERIAL PRIMARY KEY,
    pod      TEXT NOT NULL,
    at       BIGINT NOT NULL,               -- unix milliseconds
    kind     TEXT NOT NULL,                 -- Normal | Warning
    reason   TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX events_by_pod ON events (pod, id);

-- Every change of what a pod's containers run is a revision.
CREATE TABLE revisions (
    pod          TEXT NOT NULL,
    number       BIGINT NOT NULL,
    hash         TEXT NOT NULL,
    spec         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    outcome      TEXT NOT NULL,             -- progressing | complete | failed | superseded
    reason       TEXT,
    message      TEXT,
    finished_at  BIGINT,
    PRIMARY KEY (pod, number)
);

-- Who this store is (store_id, data_dir), as in SQLite.
CREATE TABLE store_meta (
    key    TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
);

-- Containers this store took over without creating them.
CREATE TABLE adopted_containers (
    id              TEXT PRIMARY KEY NOT NULL,
    pod             TEXT,
    previous_store  TEXT,
    held            BIGINT NOT NULL,
    adopted_at      BIGINT NOT NULL
);

-- The leader's last published view of each pod (status and replicas, as
-- JSON): what the standby servers show, since only the leader observes the
-- engine. Observed state, never desired state: losing a row loses nothing.
CREATE TABLE pod_views (
    name        TEXT PRIMARY KEY NOT NULL,
    view        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

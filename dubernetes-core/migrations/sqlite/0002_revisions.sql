-- Every change of what a pod's containers run is a revision: kept for
-- `rollout history`, `rollout undo` and automatic rollback.
CREATE TABLE revisions (
    pod          TEXT NOT NULL,
    number       INTEGER NOT NULL,          -- 1, 2, 3... per pod
    hash         TEXT NOT NULL,             -- PodSpec::revision_hash()
    spec         TEXT NOT NULL,             -- the whole PodSpec as JSON, when it was applied
    created_at   INTEGER NOT NULL,          -- unix milliseconds
    outcome      TEXT NOT NULL,             -- progressing | complete | failed | superseded
    reason       TEXT,
    message      TEXT,
    finished_at  INTEGER,
    PRIMARY KEY (pod, number)
) STRICT;

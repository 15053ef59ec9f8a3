-- Who this store is. `store_id` (random, made on the first start) labels
-- every container the server creates (io.dubernetes.store), so a server only
-- ever stops, removes or routes containers of its own store. `data_dir` is
-- where the store was last opened. Portable SQL (no STRICT): a PostgreSQL
-- store takes the same tables.
CREATE TABLE store_meta (
    key    TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
);

-- Containers this store took over without creating them. Docker labels cannot
-- change on an existing container, and replacing running work to relabel it
-- is what ownership prevents, so an adoption is recorded here instead:
-- unlabelled containers of an upgraded store's own pods, and foreign ones
-- taken over with --adopt-foreign.
CREATE TABLE adopted_containers (
    id              TEXT PRIMARY KEY NOT NULL,  -- full engine container id
    pod             TEXT,                       -- its io.dubernetes.pod label (NULL: ingress)
    previous_store  TEXT,                       -- the store label it carried (NULL: none)
    held            INTEGER NOT NULL,           -- 1: its pod is not in this store; left alone until applied
    adopted_at      BIGINT NOT NULL             -- unix milliseconds
);

-- Generic and docker-registry secrets (`dubectl create secret generic |
-- docker-registry`). Their values are sealed (AES-256-GCM) with a key that is
-- not in the database (the data dir's secrets.key, or --secrets-key-file):
-- `sealed` is base64 of nonce, ciphertext and tag. Only names are in clear.
-- Numbered 26 (the issue) so it never collides with another branch's next
-- migration; sqlx applies unapplied versions whatever their order.
CREATE TABLE data_secrets (
    name           TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL,      -- 'generic' or 'docker-registry'
    keys           TEXT NOT NULL,      -- JSON array of the generic secret's keys
    docker_server  TEXT,               -- docker-registry: the registry host
    sealed         TEXT NOT NULL,
    version        BIGINT NOT NULL,    -- increases on every replace
    created_at     BIGINT NOT NULL,    -- unix milliseconds
    updated_at     BIGINT NOT NULL     -- unix milliseconds
);

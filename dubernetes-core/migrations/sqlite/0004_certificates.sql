-- TLS certificates and their private keys: the user's (`dubectl create
-- secret tls`, kind 'user', named by the user) and those obtained by ACME
-- (kind 'acme', named 'acme:HOST'), plus ACME account credentials. Keys are
-- as private as the database file (0600, like env values); the API never
-- answers them. Portable SQL (TEXT/BIGINT, no STRICT): a PostgreSQL store
-- takes the same tables.
CREATE TABLE certificates (
    name        TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,      -- 'user' or 'acme'
    cert_pem    TEXT NOT NULL,      -- leaf first, then the chain
    key_pem     TEXT NOT NULL,
    hosts       TEXT NOT NULL,      -- JSON array of the DNS names the leaf covers
    issuer      TEXT NOT NULL,
    not_before  BIGINT NOT NULL,    -- unix seconds
    not_after   BIGINT NOT NULL,    -- unix seconds
    created_at  BIGINT NOT NULL,    -- unix milliseconds
    updated_at  BIGINT NOT NULL     -- unix milliseconds
);

CREATE TABLE acme_accounts (
    directory    TEXT PRIMARY KEY NOT NULL,  -- the ACME directory URL
    credentials  TEXT NOT NULL,              -- instant-acme's AccountCredentials, JSON (holds the account key)
    created_at   BIGINT NOT NULL             -- unix milliseconds
);

//! What needs a real PostgreSQL: the store contract on it and leadership
//! among servers sharing it. Each binary starts one throwaway cluster
//! (`dubernetes_core::pg_cluster`, from `/usr/lib/postgresql/*/bin`, or the
//! server at `DUBERNETES_TEST_PG_URL`) and gives every test a database of
//! its own. An integration test, not a lib test, so that
//! `cargo test --workspace --lib` runs with no database and no Docker.

mod leadership;
mod store;

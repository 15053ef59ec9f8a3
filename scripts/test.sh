#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing,
# builds the local images (no registry needed), builds the binaries, then runs
# formatting, lint, unit, doc and integration tests against the real engine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "test.sh: $*" >&2; }

command -v docker >/dev/null || { log "docker is not installed: install Docker Engine (apt-get install docker.io) and start it"; exit 1; }
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer: start it (e.g. 'service docker start') or set DOCKER_HOST"; exit 1; }

# The PostgreSQL store's tests start a throwaway cluster of the real server
# (dubernetes-core/src/pg_cluster.rs): Debian's package provides the binaries
# and the `postgres` user the cluster runs as under root. Its own service is
# not needed (and not started).
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
	log "installing PostgreSQL (apt-get install postgresql)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	# The package may start its default cluster: the tests use their own.
	service postgresql stop >/dev/null 2>&1 || true
fi

scripts/build-images.sh >/dev/null

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
log "dubectl links the API types and an HTTP client only"
tree="$(cargo tree -p dubectl --locked --prefix none)"; if grep -E '^(bollard|sqlx|libsqlite3-sys|askama) ' <<<"$tree"; then log "dubectl must not depend on bollard, sqlx, SQLite or askama (see cargo tree -p dubectl -i <crate>)"; exit 1; fi
log "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features --locked
log "cargo build (binaries the integration tests run)"
cargo build --workspace --bins --examples --locked
log "cargo test"
cargo test --workspace --locked -- --test-threads="${DUBERNETES_TEST_THREADS:-3}"
log "embedding example"
cargo run --locked -p dubernetes-core --example embed

#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing,
# builds the local images (no registry needed), builds the binaries, then runs
# formatting, lint, the unit tests (the fast tier: no Docker, no PostgreSQL),
# then the integration tests against the real engine and the doc tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "test.sh: $*" >&2; }

command -v docker >/dev/null || { log "docker is not installed: install Docker Engine (apt-get install docker.io) and start it"; exit 1; }
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer: start it (e.g. 'service docker start') or set DOCKER_HOST"; exit 1; }

# Pebble (Let's Encrypt's test ACME server) and its DNS, for tests/tests/tls.rs.
if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then
	log "installing Debian's pebble package (ACME test server for the TLS tests)"
	if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pebble >/dev/null \
		|| { $SUDO apt-get update >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pebble >/dev/null; } \
		|| { log "cannot install pebble (apt-get install pebble); the TLS tests need it"; exit 1; }
fi

# A private registry for tests/tests/secrets.rs: Debian's docker-registry on
# loopback with htpasswd auth (htpasswd from apache2-utils). Its own service is
# not needed: the test starts one on a free port and kills it.
if ! command -v docker-registry >/dev/null || ! command -v htpasswd >/dev/null; then
	log "installing docker-registry and apache2-utils (private registry for the secrets tests)"
	if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry apache2-utils >/dev/null \
		|| { $SUDO apt-get update >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry apache2-utils >/dev/null; } \
		|| { log "cannot install docker-registry apache2-utils; the secrets tests need them"; exit 1; }
	# The package may start its own registry on :5000: the tests use their own.
	$SUDO service docker-registry stop >/dev/null 2>&1 || true
fi

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

# The dashboard's browser test (tests/tests/dashboard.rs) drives Debian's headless Chromium.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver (the dashboard's browser test)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The contract test (tests/tests/contract.rs) runs schemathesis from a venv of its own,
# with every package pinned (tests/contract/requirements.txt): a new release of one of
# its dependencies must not change what the test checks. The venv keeps a copy of the
# file it was made from and is made again when the file changes.
requirements="$ROOT/tests/contract/requirements.txt"
venv="${CARGO_TARGET_DIR:-$ROOT/target}/contract-venv"
if ! cmp -s "$requirements" "$venv/requirements.txt" || ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
  log "installing schemathesis (tests/contract/requirements.txt) into $venv"
  if ! /usr/bin/python3 -m venv --help >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-deps -r "$requirements"
  "$venv/bin/pip" check >/dev/null || { log "tests/contract/requirements.txt is incomplete: $("$venv/bin/pip" check)"; exit 1; }
  cp "$requirements" "$venv/requirements.txt"
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# cargo-deny checks the dependency graph against deny.toml: licences, duplicate
# versions, sources. Pinned, built once into ~/.cargo/bin (about 3 minutes).
# Advisories are not checked here: the RustSec database is on github.com,
# which CI machines do not reach (deny.toml says where to run it).
if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny 0.20.2"; then
  log "installing cargo-deny 0.20.2 (cargo install --locked)"
  cargo install --locked --quiet cargo-deny --version 0.20.2
fi
log "cargo deny check licenses bans sources"
cargo deny --log-level error check licenses bans sources
# Layers point one way (docs/architecture.md): no import cycle among the
# top-level modules of a crate.
log "no import cycle among top-level modules (scripts/check-layers.py)"
python3 scripts/check-layers.py dubernetes-api dubernetes-names dubernetes-core dubernetes-server dubectl
log "dubectl links the API types and an HTTP client only"
tree="$(cargo tree -p dubectl --locked --prefix none)"; if grep -E '^(bollard|sqlx|libsqlite3-sys|askama) ' <<<"$tree"; then log "dubectl must not depend on bollard, sqlx, SQLite or askama (see cargo tree -p dubectl -i <crate>)"; exit 1; fi
log "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features --locked
# The fast tier: every unit test of every crate (lib and binaries), which
# needs no Docker and no PostgreSQL (what does lives in integration tests,
# such as dubernetes-core/tests/postgres/). It fails in about a minute,
# before the slow integration tier.
log "fast tier: cargo test --workspace --lib --bins (unit tests: no Docker, no PostgreSQL)"
cargo test --workspace --lib --bins --locked
log "cargo build (binaries the integration tests run)"
cargo build --workspace --bins --examples --locked
# The swarm backend's tests (swarm::* in orchestrator, rollout and healing) need a
# swarm manager: a single-node swarm on loopback is made here when the engine is in
# none, and left at the end (also on failure) only if it was made here. Docker 20.10
# can give a broken manager right after a leave: check it answers, else again.
SWARM_MADE=0
# `swarm init` also makes the docker_gwbridge network, which a leave keeps:
# removed too when this script's init made it.
GWBRIDGE_WAS_THERE=0
docker network inspect docker_gwbridge >/dev/null 2>&1 && GWBRIDGE_WAS_THERE=1
leave_swarm() {
	if [[ $SWARM_MADE -eq 1 ]]; then
		log "docker swarm leave --force (the swarm this script made)"
		docker swarm leave --force >/dev/null 2>&1 || log "warning: docker swarm leave --force failed"
		if [[ $GWBRIDGE_WAS_THERE -eq 0 ]]; then
			docker network rm docker_gwbridge >/dev/null 2>&1 || log "warning: could not remove docker_gwbridge"
		fi
	fi
}
trap leave_swarm EXIT
if [[ $(docker info --format '{{.Swarm.LocalNodeState}}') == inactive ]]; then
	for attempt in 1 2 3; do
		log "docker swarm init --advertise-addr 127.0.0.1"
		if docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null; then
			SWARM_MADE=1
		fi
		if docker node ls >/dev/null 2>&1; then break; fi
		docker swarm leave --force >/dev/null 2>&1 || true
		SWARM_MADE=0
		sleep "$attempt"
	done
	[[ $SWARM_MADE -eq 1 ]] || { log "could not make a single-node swarm for the swarm backend's tests (docker swarm init)"; exit 1; }
fi

# The multi-node tests (tests/tests/multinode.rs) make a 3-node swarm of their own
# (scripts/multinode.sh: three dockerds in network namespaces of their own, on
# fuse-overlayfs), run alone and bounded in time. Every harness they make is
# recorded, and removed at exit even if the test process was killed.
if ! command -v fuse-overlayfs >/dev/null; then
	log "installing fuse-overlayfs (storage of the multi-node tests' engines)"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse-overlayfs >/dev/null \
		|| { log "cannot install fuse-overlayfs; the multi-node tests need it"; exit 1; }
fi
DUBERNETES_MULTINODE_LEDGER="$(mktemp)"
export DUBERNETES_MULTINODE_LEDGER
# The partition test (tests/tests/partition.rs) keeps its own ledger of the
# namespaces it made (scripts/partition.sh).
DUBERNETES_PARTITION_LEDGER="$(mktemp)"
export DUBERNETES_PARTITION_LEDGER
remove_harnesses() {
	local n
	while read -r n; do
		[[ -n $n ]] && scripts/multinode.sh down "$n" 2>/dev/null || true
	done <"$DUBERNETES_MULTINODE_LEDGER"
	rm -f "$DUBERNETES_MULTINODE_LEDGER"
	while read -r n; do
		[[ -n $n ]] && scripts/partition.sh down "$n" 2>/dev/null || true
	done <"$DUBERNETES_PARTITION_LEDGER"
	rm -f "$DUBERNETES_PARTITION_LEDGER"
}
trap 'remove_harnesses; leave_swarm' EXIT
log "cargo test (multi-node: a 3-node swarm, at most ${DUBERNETES_MULTINODE_TIMEOUT:-900} s)"
timeout --kill-after=30 "${DUBERNETES_MULTINODE_TIMEOUT:-900}" \
	cargo test --locked -p dubernetes-tests --test multinode -- --test-threads=1 \
	|| { log "the multi-node tests failed or took longer than ${DUBERNETES_MULTINODE_TIMEOUT:-900} s"; exit 1; }
# The control plane under a partition: three servers on one PostgreSQL, each in a
# network namespace of its own; the leader's link is cut during a rollout. The
# partitioned leader is fenced with no duplicate container (about 45 s).
log "cargo test (partition: the partitioned leader fenced with no duplicate container, at most ${DUBERNETES_PARTITION_TIMEOUT:-300} s)"
timeout --kill-after=30 "${DUBERNETES_PARTITION_TIMEOUT:-300}" \
	cargo test --locked -p dubernetes-tests --test partition -- --test-threads=1 \
	|| { log "the partition test failed or took longer than ${DUBERNETES_PARTITION_TIMEOUT:-300} s"; exit 1; }

# The integration tier: the integration tests of every crate (the unit tests
# ran in the fast tier; the multi-node ones above), then the doc tests.
log "cargo test --test '*' (integration tests of every crate)"
cargo test --workspace --locked --test '*' -- --test-threads="${DUBERNETES_TEST_THREADS:-3}" --skip multinode_
log "cargo test --doc"
cargo test --workspace --locked --doc
log "embedding example"
cargo run --locked -p dubernetes-core --example embed

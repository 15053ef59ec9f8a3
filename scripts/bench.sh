#!/usr/bin/env bash
# Runs the Dubernetes benchmarks on this machine and (optionally) writes the
# results into docs/benchmarks.md:
#
#   scripts/bench.sh all --write-docs docs/benchmarks.md    # everything, about 10 minutes
#   scripts/bench.sh heal --quick                           # one suite, smaller, for development
#
# Suites: heal (issue 4), scale (issue 8), rollout (issue 3), takeover (issue 17; needs PostgreSQL's
# server binaries: apt-get install postgresql), ingress (issue 25; needs wrk: apt-get install wrk), all. Options:
# --quick, --write-docs FILE, --no-swarm (see `dubernetes-bench --help`).
#
# Builds the release binaries and the local images first. Bounded and loopback
# only. Removes everything it made, also on failure; if the bench process
# itself is killed, the trap below removes what is left of the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "bench.sh: $*" >&2; }

command -v docker >/dev/null || { log "docker is not installed"; exit 1; }
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer: start it or set DOCKER_HOST"; exit 1; }
[[ $# -ge 1 ]] || { log "usage: scripts/bench.sh heal|scale|rollout|swarm-backend|takeover|ingress|all [--quick] [--write-docs FILE] [--no-swarm]"; exit 2; }

for image in dubernetes/whoami:v1 dubernetes/whoami:v2 dubernetes/nginx:local-4; do
	docker image inspect "$image" >/dev/null 2>&1 || { scripts/build-images.sh >/dev/null; break; }
done
log "cargo build --release"
cargo build --release --locked -p dubernetes-server -p dubectl -p dubernetes-bench

# Last resort if the bench process dies without its own clean-up: every
# instance, container, service and network of a bench run starts with "bench-".
sweep() {
	local ids
	ids="$(docker ps -a --format '{{.ID}} {{.Label "io.dubernetes.instance"}} {{.Label "io.dubernetes.bench"}}' |
		awk '$2 ~ /^bench-/ || $3 ~ /^bench-/ { print $1 }')"
	[[ -z $ids ]] || { log "removing leftover containers"; docker rm -f $ids >/dev/null 2>&1 || true; }
	ids="$(docker service ls -q --filter label=io.dubernetes.bench 2>/dev/null || true)"
	[[ -z $ids ]] || docker service rm $ids >/dev/null 2>&1 || true
	ids="$(docker network ls --format '{{.Name}}' | grep -E '^(dub-)?bench-' || true)"
	[[ -z $ids ]] || docker network rm $ids >/dev/null 2>&1 || log "warning: could not remove networks: $ids"
	# Only a swarm this run created is left: one that was active before the
	# run is someone else's (the bench then only adds services of its own).
	if [[ $SWARM_BEFORE != active && $(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null) == active ]]; then
		log "docker swarm leave --force"
		docker swarm leave --force >/dev/null 2>&1 || log "warning: docker swarm leave --force failed"
	fi
}
SWARM_BEFORE="$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true)"
status=0
DUBERNETES_BENCH_COMMAND="scripts/bench.sh $*" target/release/dubernetes-bench "$@" || status=$?
if [[ $status -ne 0 ]]; then
	sweep
fi
exit $status

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
#   scripts/bench.sh nodes [--rounds N] [--write-docs FILE]  # node loss on a 3-node swarm (issue 28)
#
# `nodes` is not part of `all` (it needs root, dockerd and fuse-overlayfs, and
# makes a swarm of three engines of its own): it runs the multi-node test of a
# lost worker (tests/tests/multinode.rs, harness scripts/multinode.sh) N times
# (default 1) and reports the times that test prints: ours vs plain Swarm's
# rescheduling of the same loss, in the same run, and the node's return.
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
[[ $# -ge 1 ]] || { log "usage: scripts/bench.sh heal|scale|rollout|swarm-backend|takeover|ingress|all [--quick] [--write-docs FILE] [--no-swarm] | nodes [--rounds N] [--write-docs FILE]"; exit 2; }

# The node-loss row (issue 28): the multi-node test measures it; this runs it and reads its figures.
nodes_suite() {
	local rounds=1 docs="" out i line
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--rounds) rounds=$2; shift 2 ;;
		--write-docs) docs=$2; shift 2 ;;
		*) log "nodes: unknown option $1"; exit 2 ;;
		esac
	done
	[[ $rounds =~ ^[1-9][0-9]?$ ]] || { log "nodes: --rounds takes 1..99"; exit 2; }
	local started load_start rows="" ours=() plain=() back=()
	started=$(date -u '+%Y-%m-%d %H:%M')
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	local t0=$SECONDS seen=()
	log "nodes: cargo build (the binaries the test starts)"
	cargo build --locked -p dubernetes-server -p dubectl --bins
	for ((i = 1; i <= rounds; i++)); do
		log "nodes: round $i of $rounds (cargo test -p dubernetes-tests --test multinode -- --nocapture multinode_replicas_of_a_lost_node)"
		out=$(timeout --kill-after=30 600 cargo test --locked -p dubernetes-tests --test multinode -- \
			--nocapture --test-threads=1 multinode_replicas_of_a_lost_node 2>&1) || { echo "$out" | tail -40 >&2; log "nodes: the test failed"; exit 1; }
		line=$(grep -m1 -o 'multinode node loss:.*' <<<"$out") || { log "nodes: the test printed no node-loss line"; exit 1; }
		ours+=("$(sed -E 's/.*routed in ([0-9.]+) s.*/\1/' <<<"$line")")
		plain+=("$(sed -E 's/.*running again in ([0-9.]+) s.*/\1/' <<<"$line")")
		line=$(grep -m1 -o 'multinode node back:.*' <<<"$out") || { log "nodes: the test printed no node-back line"; exit 1; }
		back+=("$(sed -E 's/.*running ([0-9.]+) s after.*/\1/' <<<"$line")")
		line=$(grep -m1 -o 'multinode remote exit:.*' <<<"$out") || { log "nodes: the test printed no remote-exit line"; exit 1; }
		seen+=("$(sed -E 's/.*seen in ([0-9.]+) s.*/\1/' <<<"$line")")
		log "nodes: round $i: ours ${ours[-1]} s, plain Swarm ${plain[-1]} s, node back clean in ${back[-1]} s, remote exit seen in ${seen[-1]} s"
	done
	local engine
	engine=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo unknown)
	local section
	section="<!-- bench:nodes:start -->
## Node loss on a 3-node swarm (issue 28)

Command: \`scripts/bench.sh nodes --rounds $rounds${docs:+ --write-docs $docs}\`  
Date: $started (UTC), $((SECONDS - t0)) s in all  
Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, Linux $(uname -r), Docker Engine $engine  
Load average at start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)

The figures are the ones \`tests/tests/multinode.rs\` (\`multinode_replicas_of_a_lost_node_are_replaced_on_the_others\`) measures and prints; this suite runs that test (\`cargo test -p dubernetes-tests --test multinode -- --nocapture multinode_replicas_of_a_lost_node\`, the debug build the tests use) and reads them. Harness: three engines in network namespaces on this machine (\`scripts/multinode.sh\`), the server on the manager, 6 replicas of \`dubernetes/whoami:v1\` with a 200 ms health check; beside them in the same run, a plain Swarm service of 6 tasks (default restart policy). Worker \`w2\` is lost (its link cut, its engine and containers killed). Ours is until all 6 replicas run on the survivors, ready and routed; plain Swarm's until its 6 tasks run on the survivors. Then \`w2\` comes back (link up, its engine restarted on its old data root): the time is until it is ready in the swarm, none of its stale containers of ours runs (Swarm removes those of deleted services; a stopped one may stay as task history) and exactly 6 tasks run (the test also checks the ingress serves only those 6). Before the loss, a task of a 3-replica pod without a health check is killed on a worker's engine: the time is until the pod shows one replica fewer ready (the server runs without its periodic resync).

| round | Dubernetes: lost node's replicas replaced, ready and routed | plain Swarm: tasks running again | node back: no stale container running | a task killed on a worker: its exit seen |
|---|---|---|---|---|"
	for ((i = 0; i < rounds; i++)); do
		section+="
| $((i + 1)) | ${ours[i]} s | ${plain[i]} s | ${back[i]} s | ${seen[i]} s |"
	done
	section+="
<!-- bench:nodes:end -->"
	echo "$section"
	if [[ -n $docs ]]; then
		SECTION="$section" python3 - "$docs" <<'PY'
import os, sys
path, section = sys.argv[1], os.environ["SECTION"]
text = open(path).read()
start, end = "<!-- bench:nodes:start -->", "<!-- bench:nodes:end -->"
if start in text and end in text:
    text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
		log "nodes: wrote the section into $docs"
	fi
}
if [[ $1 == nodes ]]; then
	shift
	nodes_suite "$@"
	exit 0
fi

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

#!/usr/bin/env bash
# A 3-node Docker Swarm on this one machine, for the multi-node tests
# (tests/src/multinode.rs): three Debian `dockerd`s, each in a network
# namespace of its own, joined by a bridge this script makes.
#
#   scripts/multinode.sh up [IMAGE...]   makes a harness, prints its id (N) on stdout
#   scripts/multinode.sh down N          removes harness N, whatever state it is in
#   scripts/multinode.sh cut N NODE      cuts NODE's link (m, w1 or w2) and kills its dockerd
#   scripts/multinode.sh back N NODE     brings a cut NODE back: link up, dockerd on its old data root
#
# Harness N:
#   - bridge `dmnNbr` in the host's namespace, with no address; an ACCEPT rule for
#     it in DOCKER-USER (the host's Docker sets FORWARD's policy to DROP);
#   - namespaces `dmnN-m`, `dmnN-w1`, `dmnN-w2` (ip netns), each with `eth0` at
#     10.231.N.2, .3, .4/24 on that bridge (veth host ends `dmnNm`, `dmnNw1`, `dmnNw2`).
#     N is the first number whose subnet the host does not use;
#   - in each, `nsenter --net=/run/netns/dmnN-X dockerd` (not `ip netns exec`,
#     which remounts /sys and hides the cgroups) with its own config file, data
#     root (/tmp/dmnN/X), exec root and socket (/run/dmnN/X, /run/dmnN/X.sock),
#     pid file, cgroup parent (/dmnN-X) and fuse-overlayfs;
#   - a swarm: X=m the manager, w1 and w2 workers, overlay networks from
#     10.231.128.0/17 (inside the engines' own namespaces);
#   - the IMAGEs given, loaded into every node (docker save | docker load).
# `down` kills the engines and the processes of their containers (by the pids
# in their cgroups), unmounts what they mounted, deletes the veths (a namespace
# a process still holds would keep them), the namespaces, the bridge, the rule
# and the directories. `up` calls `down` itself when it fails.
set -euo pipefail

NODES=(m w1 w2)
log() { echo "multinode: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

ip_of() { # N NODE
	case "$2" in
	m) echo "10.231.$1.2" ;;
	w1) echo "10.231.$1.3" ;;
	w2) echo "10.231.$1.4" ;;
	*) die "unknown node $2" ;;
	esac
}
sock() { echo "/run/dmn$1/$2.sock"; }
dk() { # N NODE docker-args...
	local n=$1 node=$2
	shift 2
	docker -H "unix://$(sock "$n" "$node")" "$@"
}

# Kills the processes in a cgroup tree of every v1 hierarchy (or the v2 one), by pid.
kill_cgroup() { # NAME
	local dir pid
	for dir in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
		[[ -d $dir ]] || continue
		while read -r pid; do
			[[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
		done < <(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
	done
}
rm_cgroup() { # NAME
	local dir
	for dir in /sys/fs/cgroup/*/"$1" /sys/fs/cgroup/"$1"; do
		[[ -d $dir ]] || continue
		find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
}

# Kills a node's dockerd (and the containerd it started), by pid.
kill_engine() { # N NODE
	local n=$1 node=$2 pid i
	pid=$(cat "/run/dmn$n/$node.pid" 2>/dev/null || true)
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		# its managed containerd is its child
		local children
		children=$(pgrep -P "$pid" || true)
		kill -9 "$pid" $children 2>/dev/null || true
		for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	# containerd shims of this engine, found by their containerd socket (its exec root)
	local shim
	for shim in $(pgrep -f "/run/dmn$n/$node/containerd/" || true); do kill -9 "$shim" 2>/dev/null || true; done
	kill_cgroup "dmn$n-$node"
}

down() { # N
	local n=$1 node mnt
	[[ $n =~ ^[0-9]+$ ]] || die "bad harness id $n"
	for node in "${NODES[@]}"; do kill_engine "$n" "$node"; done
	# Unmount everything below the harness's directories, deepest first.
	for _ in 1 2 3; do
		while read -r mnt; do
			umount -l "$mnt" 2>/dev/null || true
		done < <(awk -v a="/tmp/dmn$n/" -v b="/run/dmn$n/" 'index($5, a) == 1 || index($5, b) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	done
	for node in "${NODES[@]}"; do
		rm_cgroup "dmn$n-$node"
		ip link del "dmn$n$node" 2>/dev/null || true
		ip netns del "dmn$n-$node" 2>/dev/null || true
	done
	ip link del "dmn${n}br" 2>/dev/null || true
	while iptables -D DOCKER-USER -i "dmn${n}br" -o "dmn${n}br" -j ACCEPT 2>/dev/null; do :; done
	rm -rf "/tmp/dmn$n" "/run/dmn$n"
}

wait_engine() { # N NODE
	local n=$1 node=$2 i
	for i in $(seq 300); do
		dk "$n" "$node" version >/dev/null 2>&1 && return 0
		kill -0 "$(cat "/run/dmn$n/$node.pid" 2>/dev/null || echo 0)" 2>/dev/null || [[ $i -lt 20 ]] ||
			die "dockerd of node $node exited; its log: $(tail -20 "/tmp/dmn$n/$node.log")"
		sleep 0.1
	done
	die "dockerd of node $node did not answer in 30 s; its log: $(tail -20 "/tmp/dmn$n/$node.log")"
}

# Starts a node's dockerd in its namespace (its data root kept from any earlier run).
start_engine() { # N NODE
	local n=$1 node=$2
	nsenter --net="/run/netns/dmn$n-$node" dockerd \
		--config-file "/tmp/dmn$n/$node.json" \
		--data-root "/tmp/dmn$n/$node" \
		--exec-root "/run/dmn$n/$node" \
		--pidfile "/run/dmn$n/$node.pid" \
		-H "unix://$(sock "$n" "$node")" \
		--cgroup-parent "/dmn$n-$node" \
		--storage-driver fuse-overlayfs \
		--mtu 1400 \
		>>"/tmp/dmn$n/$node.log" 2>&1 </dev/null &
	disown
}

up() {
	command -v dockerd >/dev/null || die "dockerd is missing (apt-get install docker.io)"
	command -v fuse-overlayfs >/dev/null || die "fuse-overlayfs is missing (apt-get install fuse-overlayfs)"
	[[ $(id -u) -eq 0 ]] || die "the multi-node harness needs root (namespaces, bridges, iptables)"
	n=""
	mkdir -p /run
	for i in $(seq 1 120); do
		ip -4 route | grep -q "10\.231\.$i\." && continue
		ip -4 addr | grep -q "10\.231\.$i\." && continue
		[[ -e /run/netns/dmn$i-m ]] && continue
		mkdir "/run/dmn$i" 2>/dev/null || continue # taken by another harness
		n=$i
		break
	done
	[[ -n $n ]] || die "no free subnet 10.231.N.0/24"
	# A caller may keep a ledger of the harnesses made (scripts/test.sh removes them at its exit).
	if [[ -n ${DUBERNETES_MULTINODE_LEDGER:-} ]]; then echo "$n" >>"$DUBERNETES_MULTINODE_LEDGER"; fi
	trap 'log "setting up harness $n failed; removing it"; down "$n"' EXIT
	mkdir -p "/tmp/dmn$n"
	ip link add "dmn${n}br" type bridge
	ip link set "dmn${n}br" up
	iptables -I DOCKER-USER -i "dmn${n}br" -o "dmn${n}br" -j ACCEPT
	local node
	for node in "${NODES[@]}"; do
		ip netns add "dmn$n-$node"
		ip link add "dmn$n$node" type veth peer name eth0 netns "dmn$n-$node"
		ip link set "dmn$n$node" master "dmn${n}br" up
		ip -n "dmn$n-$node" addr add "$(ip_of "$n" "$node")/24" dev eth0
		ip -n "dmn$n-$node" link set eth0 up
		ip -n "dmn$n-$node" link set lo up
		mkdir -p "/tmp/dmn$n/$node" "/run/dmn$n/$node"
		echo '{}' >"/tmp/dmn$n/$node.json"
		start_engine "$n" "$node"
	done
	for node in "${NODES[@]}"; do wait_engine "$n" "$node"; done
	local m
	m=$(ip_of "$n" m)
	dk "$n" m swarm init --advertise-addr "$m" --listen-addr "$m:2377" \
		--default-addr-pool 10.231.128.0/17 --default-addr-pool-mask-length 24 >/dev/null
	local token
	token=$(dk "$n" m swarm join-token -q worker)
	for node in w1 w2; do
		dk "$n" "$node" swarm join --token "$token" --advertise-addr "$(ip_of "$n" "$node")" \
			--listen-addr "$(ip_of "$n" "$node"):2377" "$m:2377" >/dev/null
	done
	if [[ $# -gt 0 ]]; then
		docker save "$@" -o "/tmp/dmn$n/images.tar"
		local pids=()
		for node in "${NODES[@]}"; do
			dk "$n" "$node" load -q -i "/tmp/dmn$n/images.tar" >/dev/null &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p" || die "loading the images failed"; done
		rm -f "/tmp/dmn$n/images.tar"
	fi
	local ready=0
	for _ in $(seq 300); do
		ready=$(dk "$n" m node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
		[[ $ready -eq 3 ]] && break
		sleep 0.1
	done
	[[ $ready -eq 3 ]] || die "the swarm has $ready of 3 nodes ready"
	trap - EXIT
	echo "$n"
}

cut() { # N NODE
	ip link set "dmn$1$2" down
	kill_engine "$1" "$2"
}

# A cut node comes back: its link up, its dockerd started again on the same
# data root (its old containers and swarm state reappear; it rejoins by itself).
back() { # N NODE
	ip link set "dmn$1$2" up
	start_engine "$1" "$2"
	wait_engine "$1" "$2"
}

case "${1:-}" in
up)
	shift
	up "$@"
	;;
down) down "$2" ;;
cut) cut "$2" "$3" ;;
back) back "$2" "$3" ;;
*) die "usage: $0 up [IMAGE...] | down N | cut N NODE | back N NODE" ;;
esac

#!/usr/bin/env bash
# Network namespaces for the partition test (tests/tests/partition.rs): each
# server of the test runs in a namespace of its own, reaching PostgreSQL (on
# the host, at the bridge's address) over a veth the test can cut. All the
# servers still share the host's Docker engine through its unix socket, which
# a network namespace does not cut: the partition is between a server and the
# store (and the replicas' addresses), as when a machine's network fails.
#
#   scripts/partition.sh up        makes a harness, prints its id (N) on stdout
#   scripts/partition.sh down N    removes harness N, whatever state it is in
#   scripts/partition.sh cut N I   sets server I's link down (I = 0, 1, 2)
#   scripts/partition.sh heal N I  sets it up again
#
# Harness N:
#   - bridge `dpaNbr` in the host's namespace at 10.232.N.1/24 (N is the first
#     number whose subnet the host does not use), and two ACCEPT rules for it in
#     DOCKER-USER (the host's Docker sets FORWARD's policy to DROP; the servers
#     reach the replicas' addresses on Docker's networks through the host);
#   - namespaces `dpaN-s0`, `dpaN-s1`, `dpaN-s2` (ip netns), each with `eth0` at
#     10.232.N.2, .3, .4/24 on that bridge and a default route through the
#     host (veth host ends `dpaNs0`, `dpaNs1`, `dpaNs2`).
# A caller may keep a ledger of the harnesses made (DUBERNETES_PARTITION_LEDGER:
# scripts/test.sh removes them at its exit). `down` deletes the veths (a
# namespace a process still holds would keep them), the namespaces, the
# bridge, the rules and /run/dpaN. `up` calls `down` itself when it fails.
set -euo pipefail

SERVERS=(0 1 2)
log() { echo "partition: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}
id_ok() { [[ $1 =~ ^[0-9]+$ ]] || die "bad harness id $1"; }
server_ok() { [[ $1 =~ ^[012]$ ]] || die "bad server $1 (0, 1 or 2)"; }

down() { # N
	local n=$1 s
	id_ok "$n"
	for s in "${SERVERS[@]}"; do
		ip link del "dpa${n}s$s" 2>/dev/null || true
		ip netns del "dpa$n-s$s" 2>/dev/null || true
	done
	ip link del "dpa${n}br" 2>/dev/null || true
	while iptables -D DOCKER-USER -i "dpa${n}br" -j ACCEPT 2>/dev/null; do :; done
	while iptables -D DOCKER-USER -o "dpa${n}br" -j ACCEPT 2>/dev/null; do :; done
	rm -rf "/run/dpa$n"
}

up() {
	[[ $(id -u) -eq 0 ]] || die "the partition harness needs root (namespaces, bridges, iptables)"
	local n="" i s
	for i in $(seq 1 120); do
		ip -4 route | grep -q "10\.232\.$i\." && continue
		ip -4 addr | grep -q "10\.232\.$i\." && continue
		mkdir "/run/dpa$i" 2>/dev/null || continue # taken by another harness
		n=$i
		break
	done
	[[ -n $n ]] || die "no free subnet 10.232.N.0/24"
	if [[ -n ${DUBERNETES_PARTITION_LEDGER:-} ]]; then echo "$n" >>"$DUBERNETES_PARTITION_LEDGER"; fi
	trap 'log "setting up harness $n failed; removing it"; down "$n"' EXIT
	ip link add "dpa${n}br" type bridge
	ip addr add "10.232.$n.1/24" dev "dpa${n}br"
	ip link set "dpa${n}br" up
	iptables -I DOCKER-USER -i "dpa${n}br" -j ACCEPT
	iptables -I DOCKER-USER -o "dpa${n}br" -j ACCEPT
	for s in "${SERVERS[@]}"; do
		ip netns add "dpa$n-s$s"
		ip link add "dpa${n}s$s" type veth peer name eth0 netns "dpa$n-s$s"
		ip link set "dpa${n}s$s" master "dpa${n}br" up
		ip -n "dpa$n-s$s" addr add "10.232.$n.$((s + 2))/24" dev eth0
		ip -n "dpa$n-s$s" link set eth0 up
		ip -n "dpa$n-s$s" link set lo up
		ip -n "dpa$n-s$s" route add default via "10.232.$n.1"
	done
	# Wait until every link is up on both ends (the bridge forwards at once: no STP).
	for s in "${SERVERS[@]}"; do
		for i in $(seq 100); do
			ip -n "dpa$n-s$s" -o link show eth0 | grep -q 'state UP' &&
				ip -o link show "dpa${n}s$s" | grep -q 'state UP' && break
			[[ $i -lt 100 ]] || die "the link of namespace s$s did not come up"
			sleep 0.1
		done
	done
	trap - EXIT
	echo "$n"
}

case "${1:-}" in
up) up ;;
down) down "$2" ;;
cut)
	id_ok "$2"
	server_ok "$3"
	ip link set "dpa$2s$3" down
	;;
heal)
	id_ok "$2"
	server_ok "$3"
	ip link set "dpa$2s$3" up
	for _ in $(seq 100); do
		ip -n "dpa$2-s$3" -o link show eth0 | grep -q 'state UP' && exit 0
		sleep 0.1
	done
	die "the link of namespace s$3 did not come up again"
	;;
*) die "usage: $0 up | down N | cut N I | heal N I" ;;
esac

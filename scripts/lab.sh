#!/bin/sh
# The namespaces every ppctl lab is built from: the tests (Tests/IntegrationTests/
# Lab.swift), scripts/demo and scripts/bench. A client, a balancer and one or two
# backends, joined by veth pairs, on test addresses only (198.18.0.0/15, 2001:2::/48):
#
#   CLIENT c0 198.18.1.2/24 2001:2:0:1::2/64 --- l0 198.18.1.1/24 2001:2:0:1::1/64 BALANCER
#   BALANCER l1 198.18.2.1/24 2001:2:0:2::1/64 --- b0 198.18.2.2/24 198.18.2.3/24 2001:2:0:2::2/64 BACKEND
#   BALANCER l2 198.18.3.1/24 2001:2:0:3::1/64 --- b0 198.18.3.2/24 2001:2:0:3::2/64 BACKEND2 (if named)
#
# The balancer forwards; the others route through it. VIPs (198.18.0.10, 2001:2::10)
# are on no interface: ppctl's tc program takes their packets.
#
#   scripts/lab.sh up CLIENT BALANCER BACKEND [BACKEND2]
#   scripts/lab.sh down NAMESPACE...      (missing ones are ignored)
set -eu

up() {
	client=$1 balancer=$2 backend=$3 backend2=${4:-}
	for ns in "$client" "$balancer" "$backend" $backend2; do
		ip netns del "$ns" 2>/dev/null || true
		ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	ip link add c0 netns "$client" type veth peer name l0 netns "$balancer"
	ip link add l1 netns "$balancer" type veth peer name b0 netns "$backend"
	ip -n "$client" addr add 198.18.1.2/24 dev c0
	ip -n "$client" addr add 2001:2:0:1::2/64 dev c0 nodad
	ip -n "$balancer" addr add 198.18.1.1/24 dev l0
	ip -n "$balancer" addr add 2001:2:0:1::1/64 dev l0 nodad
	ip -n "$balancer" addr add 198.18.2.1/24 dev l1
	ip -n "$balancer" addr add 2001:2:0:2::1/64 dev l1 nodad
	ip -n "$backend" addr add 198.18.2.2/24 dev b0
	ip -n "$backend" addr add 198.18.2.3/24 dev b0
	ip -n "$backend" addr add 2001:2:0:2::2/64 dev b0 nodad
	ip -n "$client" link set c0 up
	ip -n "$balancer" link set l0 up
	ip -n "$balancer" link set l1 up
	ip -n "$backend" link set b0 up
	ip -n "$client" route add default via 198.18.1.1
	ip -n "$client" -6 route add default via 2001:2:0:1::1
	ip -n "$backend" route add default via 198.18.2.1
	ip -n "$backend" -6 route add default via 2001:2:0:2::1
	if [ -n "$backend2" ]; then
		ip link add l2 netns "$balancer" type veth peer name b0 netns "$backend2"
		ip -n "$balancer" addr add 198.18.3.1/24 dev l2
		ip -n "$balancer" addr add 2001:2:0:3::1/64 dev l2 nodad
		ip -n "$backend2" addr add 198.18.3.2/24 dev b0
		ip -n "$backend2" addr add 2001:2:0:3::2/64 dev b0 nodad
		ip -n "$balancer" link set l2 up
		ip -n "$backend2" link set b0 up
		ip -n "$backend2" route add default via 198.18.3.1
		ip -n "$backend2" -6 route add default via 2001:2:0:3::1
	fi
	ip netns exec "$balancer" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

down() {
	for ns in "$@"; do ip netns del "$ns" 2>/dev/null || true; done
}

case "${1:-}" in
up) shift; [ $# -ge 3 ] || { echo "usage: $0 up CLIENT BALANCER BACKEND [BACKEND2]" >&2; exit 64; }; up "$@" ;;
down) shift; down "$@" ;;
*) echo "usage: $0 up CLIENT BALANCER BACKEND [BACKEND2] | down NAMESPACE..." >&2; exit 64 ;;
esac

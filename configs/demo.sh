#!/usr/bin/env bash
# dpfw demo on the embedded default config (configs/default.yaml):
#   ns dpfw-client (198.18.0.1/24) -- dpfw-out [ dpfw ] dpfw-in -- ns dpfw-server (198.18.0.2/24)
# Starts dpfw, moves its two tap interfaces into the namespaces, pings and
# downloads 10 MB over HTTP through it, shows the counters, then keeps running
# until Ctrl-C (or DEMO_SECONDS elapse) and cleans everything up.
set -euo pipefail
BIN=${1:-bin/dpfw}
DEMO_SECONDS=${DEMO_SECONDS:-0}
CNS=dpfw-client SNS=dpfw-server
work=$(mktemp -d)
dpfw_pid="" http_pid=""

cleanup() {
	set +e
	[ -n "$http_pid" ] && kill "$http_pid" 2>/dev/null
	if [ -n "$dpfw_pid" ] && kill -0 "$dpfw_pid" 2>/dev/null; then
		kill -INT "$dpfw_pid"; wait "$dpfw_pid"
	fi
	ip netns del $CNS 2>/dev/null; ip netns del $SNS 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "the demo needs root (DPDK, taps, namespaces): sudo make run"; exit 1; }
ip netns del $CNS 2>/dev/null || true; ip netns del $SNS 2>/dev/null || true

echo "== starting dpfw on the embedded default config"
# Wait for readiness (every port started and every worker polling), never
# for the tap interfaces to appear: moving a tap while its port starts can
# leave dpfw attached to another one.
"$BIN" run --ready-file "$work/ready" &
dpfw_pid=$!
for _ in $(seq 200); do
	[ -e "$work/ready" ] && break
	kill -0 $dpfw_pid 2>/dev/null || { echo "dpfw exited"; exit 1; }
	sleep 0.1
done
[ -e "$work/ready" ] || { echo "dpfw did not get ready in 20 s"; exit 1; }
ip netns add $CNS; ip netns add $SNS
ip link set dpfw-out netns $CNS; ip link set dpfw-in netns $SNS
ip -n $CNS addr add 198.18.0.1/24 dev dpfw-out; ip -n $CNS link set dpfw-out up; ip -n $CNS link set lo up
ip -n $SNS addr add 198.18.0.2/24 dev dpfw-in; ip -n $SNS link set dpfw-in up; ip -n $SNS link set lo up

echo "== ping 198.18.0.2 from $CNS, through dpfw"
ip netns exec $CNS ping -c 3 -i 0.2 -W 2 198.18.0.2

echo "== 10 MB HTTP download through dpfw"
head -c 10000000 /dev/urandom > "$work/blob"
if command -v python3 >/dev/null; then
	ip netns exec $SNS python3 -m http.server -d "$work" -b 198.18.0.2 8080 >/dev/null 2>&1 &
	http_pid=$!
	sleep 1
	ip netns exec $CNS curl -sS -m 30 -o "$work/got" -w '%{size_download} bytes in %{time_total}s\n' http://198.18.0.2:8080/blob
	[ "$(sha256sum <"$work/blob")" = "$(sha256sum <"$work/got")" ] && echo "sha256 matches"
	kill $http_pid; http_pid=""
fi

echo "== the protected side may not open connections out (no NEW rule in OUTPUT): this must fail"
if ip netns exec $SNS curl -sS -m 2 -o /dev/null http://198.18.0.1:8080/ 2>/dev/null; then
	echo "UNEXPECTED: the connection went through"
else
	echo "blocked, as the rules say"
fi

echo "== tracked connections (dpfw conntrack list)"
"$BIN" conntrack list || true
echo "== rules with counters (dpfw rules list)"
"$BIN" rules list || true

echo "== counters (http://127.0.0.1:9469/metrics)"
curl -s http://127.0.0.1:9469/metrics | grep -E '^dpfw_(worker_(rx|tx)_packets_total|port_(rx|tx)_packets_total|mempool|conntrack_created_total|worker_dropped_packets_total.*reason="rule")' || true

if [ "$DEMO_SECONDS" -gt 0 ]; then
	echo "== dpfw keeps running for $DEMO_SECONDS s"; sleep "$DEMO_SECONDS"
else
	echo "== dpfw is running: try 'ip netns exec $CNS ping 198.18.0.2' in another shell; Ctrl-C stops it"
	wait $dpfw_pid
fi

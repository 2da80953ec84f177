#!/usr/bin/env bash
# bench.sh runs one load shape against a freshly built cmd/sfu on 127.0.0.1 and
# stops the server afterwards (docs/performance.md). Every simulated client comes
# from 127.0.0.1, so the server runs with its per-address limits off.
#
#   cmd/loadtest/bench.sh [loadtest flags…]
#   cmd/loadtest/bench.sh --video-publishers 1 --subscribers 200 --json > run.json
#
# Environment:
#   SERVER_CPUS, TOOL_CPUS  pin the server / the load tool with taskset (e.g. 0 and 1)
#   SERVER_GOMAXPROCS       GOMAXPROCS of the server only (which also turns its --adaptive-procs controller off)
#   MAX_LOAD                wait until the 1-minute load average is below this (default 1.0)
#   MAX_WAIT                give up waiting for a quiet machine after this many seconds and run anyway (default 600)
#   PERF_OUT                record a perf profile of the server into this file: PERF_SECONDS (default 20)
#                           seconds starting PERF_DELAY (default 60) seconds after the server started, at
#                           PERF_FREQ (default 499) samples a second
#   PPROF_OUT               save a Go CPU profile of the server (its --debug-addr) into this file, over the same
#                           PERF_SECONDS starting PERF_DELAY seconds after the server started
#   HEAP_OUT                save a heap profile of the server (live objects, after a GC) into this file, and its
#                           /metrics (Go's memory statistics among them) and goroutines into HEAP_OUT.metrics and
#                           HEAP_OUT.goroutines, PERF_DELAY
#                           seconds after the server started (GODEBUG=memprofilerate=4096 in the environment gives finer samples)
#   WEBINAR                 1: the rooms are webinar rooms (a preset for load-*, the server in token mode): the
#                           publishers join with tokens of a key made for the run, the subscribers without one,
#                           as viewers (the report counts them)
#   OUT                     directory for the binaries and the server log (default a temporary directory)
# The load tool's exit status is the script's.
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
go build -o "$OUT/sfu" ./cmd/sfu
go build -o "$OUT/loadtest" ./cmd/loadtest

max_load=${MAX_LOAD:-1.0}
deadline=$((SECONDS + ${MAX_WAIT:-600}))
while awk -v m="$max_load" '{ exit !($1 >= m) }' /proc/loadavg && ((SECONDS < deadline)); do
	echo "bench: load average $(cut -d' ' -f1-3 /proc/loadavg), waiting for < $max_load" >&2
	sleep 15
done
echo "bench: load average $(cut -d' ' -f1-3 /proc/loadavg) at start" >&2

free_port() { # proto: tcp or udp
	python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1]=='tcp' else socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}
http_port=$(free_port tcp)
tcp_port=$(free_port tcp)
udp_port=$(free_port udp)
debug_port=$(free_port tcp)

pin_server=()
pin_tool=()
[[ -n ${SERVER_CPUS:-} ]] && pin_server=(taskset -c "$SERVER_CPUS")
[[ -n ${TOOL_CPUS:-} ]] && pin_tool=(taskset -c "$TOOL_CPUS")

auth_args=()
tool_args=()
if [[ ${WEBINAR:-} == 1 ]]; then
	mkdir -p "$OUT/rooms"
	printf '%s\n' "rooms: ['load-*']" "webinar: true" "grants: [subscribe, chat]" >"$OUT/rooms/webinar.yaml"
	head -c 48 /dev/urandom | base64 >"$OUT/load.key"
	auth_args=(--auth token --auth-key-file "load=$OUT/load.key" --rooms-dir "$OUT/rooms")
	tool_args=(--token-key "load=$OUT/load.key")
fi

env ${SERVER_GOMAXPROCS:+GOMAXPROCS=$SERVER_GOMAXPROCS} "${pin_server[@]}" "$OUT/sfu" "${auth_args[@]}" --addr "127.0.0.1:$http_port" --media-ip 127.0.0.1 --udp-port "$udp_port" \
	--tcp-port "$tcp_port" --max-participants 0 --max-sessions-per-address 0 --new-sessions-per-address 0 \
	--new-rooms-per-address 0 --log-level warn --debug-addr "127.0.0.1:$debug_port" >"$OUT/sfu.log" 2>&1 &
server=$!
perf_pid=
cleanup() {
	if [[ -n $perf_pid ]]; then
		pkill -INT -P "$perf_pid" 2>/dev/null || true
		kill -INT "$perf_pid" 2>/dev/null || true
		wait "$perf_pid" 2>/dev/null || true
	fi
	kill "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$http_port/healthz" >/dev/null && break
	sleep 0.1
done
if [[ -n ${PERF_OUT:-} ]]; then
	(sleep "${PERF_DELAY:-60}" && exec perf record -F "${PERF_FREQ:-499}" -g -o "$PERF_OUT" -p "$server" -- sleep "${PERF_SECONDS:-20}") \
		>/dev/null 2>&1 &
	perf_pid=$!
fi
if [[ -n ${PPROF_OUT:-} ]]; then
	(sleep "${PERF_DELAY:-60}" && exec curl -fsS -o "$PPROF_OUT" \
		"http://127.0.0.1:$debug_port/debug/pprof/profile?seconds=${PERF_SECONDS:-20}") >/dev/null 2>&1 &
fi

if [[ -n ${HEAP_OUT:-} ]]; then
	(sleep "${PERF_DELAY:-60}" && curl -fsS -o "$HEAP_OUT" "http://127.0.0.1:$debug_port/debug/pprof/heap?gc=1" &&
		curl -fsS -o "$HEAP_OUT.goroutines" "http://127.0.0.1:$debug_port/debug/pprof/goroutine?debug=1" &&
		exec curl -fsS -o "$HEAP_OUT.metrics" "http://127.0.0.1:$http_port/metrics") >/dev/null 2>&1 &
fi

rc=0
"${pin_tool[@]}" "$OUT/loadtest" --url "ws://127.0.0.1:$http_port/ws" "${tool_args[@]}" "$@" || rc=$?
exit $rc

#!/usr/bin/env bash
# Instructions per request of the end-to-end server on Redis, counted by callgrind: the app's
# user-space work only (the kernel's and Redis' are not counted), deterministic where
# `bench/e2e.py`'s requests per second move by several percent from run to run.
#
#   bash bench/e2e_instructions.sh [variants] [workloads]
#   bash bench/e2e_instructions.sh "typed tower floor" "read-write read-only"   # the default
#
# Each measurement starts its own `redis-server` on a loopback port, starts the server binary
# (`bench/src/bin/e2e.rs`) under callgrind, zeroes the counters once its sessions are created,
# drives it with `wrk` (4 connections, 8 s; callgrind runs it some 50 times slower) and divides
# the count by the requests served.
set -euo pipefail
cd "$(dirname "$0")/.."
variants=${1:-typed tower floor}
workloads=${2:-read-write read-only}
cargo build --release -j2 -p typed-sessions-bench --features e2e --bin e2e >/dev/null 2>&1
bin=$PWD/target/release/e2e
work=$(mktemp -d)
redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
redis=$!
trap 'kill $redis 2>/dev/null; rm -rf "$work"' EXIT
wait_for() {
  for _ in $(seq 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done
  echo "nothing listened on port $1" >&2; exit 1
}
wait_for "$redis_port"
for workload in $workloads; do
  for variant in $variants; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" "$bin" --variant "$variant" --store redis \
      --url "redis://127.0.0.1:$redis_port" --workload "$workload" --port "$port" --sessions 200 \
      --cookies "$work/cookies.txt" >/dev/null 2>&1 &
    server=$!
    wait_for "$port"
    sleep 1
    callgrind_control -z "$server" >/dev/null 2>&1
    requests=$(COOKIES="$work/cookies.txt" wrk -t1 -c4 -d8s -s bench/e2e.lua "http://127.0.0.1:$port/" \
      | sed -n 's/ *\([0-9]*\) requests in.*/\1/p')
    callgrind_control -d "$server" >/dev/null 2>&1
    sleep 1
    kill "$server"; wait "$server" 2>/dev/null || true
    total=$(grep -h -m1 '^totals:\|^summary:' "$work"/callgrind.*.1 | awk '{print $2}')
    echo "$variant $workload: $(( total / requests )) instructions/request ($requests requests)"
    rm -f "$work"/callgrind.*
  done
done

#!/usr/bin/env bash
# Instructions per request of each variant, counted by callgrind: deterministic, unlike time on
# a shared machine. The cost per request is the difference between two runs of different
# lengths divided by the difference in requests, so set-up (1,000 sessions) cancels out.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -j2 -p typed-sessions-bench >/dev/null 2>&1
bin=target/release/typed-sessions-bench
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only "$1" --requests "$2" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
variants="bare bare-cookie tower typed typed-client-side typed-locked"
# `--breakdown`: also any layer at all, typed-sessions' layer alone, and a session taken but untouched.
if [[ "${1:-}" == "--breakdown" ]]; then
  variants="$variants any-layer typed-layer-only typed-untouched"
fi
declare -A per_request
for variant in $variants; do
  small=$(count "$variant" 2000)
  large=$(count "$variant" 6000)
  per_request[$variant]=$(( (large - small) / 4000 ))
  echo "$variant: ${per_request[$variant]} instructions/request"
done
# Overheads against bare axum receiving the same request (Cookie header included), and, as
# measured before that baseline, against bare axum without the header.
report() {
  local tower_overhead=$(( per_request[tower] - per_request[$1] ))
  local typed_overhead=$(( per_request[typed] - per_request[$1] ))
  # One decimal: shell arithmetic alone would round 25.9% down to a target-meeting "25%".
  local ratio
  ratio=$(awk -v t="$typed_overhead" -v w="$tower_overhead" 'BEGIN { printf "%.1f", 100 * t / w }')
  echo "$2: tower-sessions $tower_overhead, typed-sessions $typed_overhead instructions/request, ratio $ratio%"
}
report bare-cookie "overhead over bare axum (same request)"
report bare "overhead over bare axum without the Cookie header"
echo "(target: ratio <= 25%)"
echo "client-side sessions (no store; opened and sealed on every request): $(( per_request[typed-client-side] - per_request[bare-cookie] )) instructions/request over bare axum"
echo "LockedSession (the same handler with the session's lock): $(( per_request[typed-locked] - per_request[typed] )) instructions/request over Session"

#!/usr/bin/env bash
# Reading one key of a session of 1, 10 and 100 keys (100 bytes each), in process: instructions
# per request by callgrind (the difference between 6,000 and 2,000 requests, so set-up cancels
# out), for typed-sessions and tower-sessions on their memory stores, over bare axum receiving
# the same request, and each layer's cost at 10 and 100 keys as a multiple of its cost at 1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -j2 -p typed-sessions-bench >/dev/null 2>&1
bin=target/release/typed-sessions-bench
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only "$1" --keys "$2" --requests "$3" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_request() {
  echo $(( ($(count "$1" "$2" 6000) - $(count "$1" "$2" 2000)) / 4000 ))
}
bare=$(per_request bare-cookie 1)
echo "bare axum (same request): $bare instructions/request"
for variant in typed-read tower-read; do
  declare -A cost=()
  for keys in 1 10 100; do
    cost[$keys]=$(( $(per_request "$variant" "$keys") - bare ))
  done
  awk -v v="$variant" -v a="${cost[1]}" -v b="${cost[10]}" -v c="${cost[100]}" 'BEGIN {
    printf "%s over bare axum: 1 key %d, 10 keys %d (%.2fx), 100 keys %d (%.2fx) instructions/request\n",
      v, a, b, b / a, c, c / a }'
done

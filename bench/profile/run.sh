#!/usr/bin/env bash
# Profiles bench variants (see `--only` in bench/src/main.rs) for bench/profile/*.py:
# callgrind runs of 2,000 and 6,000 requests per variant (their difference is the cost of
# 4,000 requests, set-up cancelled), with per-instruction counts, and cachegrind's per-request
# instructions and L1 misses. Output goes to target/profile/.
#
#   bench/profile/run.sh bare-cookie typed tower
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/profile
mkdir -p "$out"
# Debug info for function and line names; a target directory of its own, so that the release
# build of the benchmark is left alone.
CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_TARGET_DIR="$out/build" \
  cargo build --release -j2 -p typed-sessions-bench >/dev/null 2>&1
bin="$out/build/release/typed-sessions-bench"
for variant in "${@:-typed}"; do
  declare -A misses=()
  for requests in 2000 6000; do
    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
      --callgrind-out-file="$out/cg.$variant.$requests" "$bin" --only "$variant" --requests "$requests" \
      >/dev/null 2>&1
    misses[$requests]=$(valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
      "$bin" --only "$variant" --requests "$requests" 2>&1 \
      | awk '/I *refs|I1 *misses|D1 *misses/ { gsub(",", "", $4); printf "%s ", $4 }')
  done
  python3 - "$variant" "${misses[2000]}" "${misses[6000]}" <<'PY'
import sys
variant, small, large = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
per = [(int(b) - int(a)) / 4000 for a, b in zip(small, large)]
print(f"{variant}: {per[0]:.0f} instructions, {per[1]:.0f} L1i misses, {per[2]:.1f} L1d misses per request")
PY
done

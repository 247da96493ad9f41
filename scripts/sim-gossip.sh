#!/usr/bin/env bash
# Deterministic gossip membership simulation (virtual time, simulated network), release build:
#   scripts/sim-gossip.sh                         # the CI run: 1,000 nodes pre-converged, 10
#                                                 # fresh joins, 3 kills, no partition (tests
#                                                 # cover it), 5 s steady; ~30 s of CPU (1,000
#                                                 # joins through one seed take ~63 s at the
#                                                 # 200 ms probe: run that with --nodes 1000)
#   scripts/sim-gossip.sh --nodes 1000,5000 --loss 0.01 --kills 10 --partition-secs 5
#   scripts/sim-gossip.sh --nodes 5000 --preconverged --fresh-joins 10   # start converged
# Every argument goes to `examples/gossip_sim.rs` (also --gossip-ms, --gossip-fanout, --seed).
# Prints one Markdown row per size (see README "Measured: simulation"). Exits non-zero if a
# run did not converge, did not spread its fresh joins (--preconverged), missed a kill, or
# saw a false `dead`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || set -- --nodes 1000 --preconverged --fresh-joins 10 --kills 3 --partition-secs 0 --steady-secs 5
pre=0
for a in "$@"; do [ "$a" != --preconverged ] || pre=1; done
# Columns: nodes, loss, convergence, fresh joins known, detection (…(detected/kills)), false dead.
# (Not `tee /dev/stderr`: reopening stderr truncates it when it is a file, e.g. a CI log.)
out=$(cargo run --quiet --release --example gossip_sim -- "$@")
printf '%s\n' "$out"
printf '%s\n' "$out" | awk -F'|' -v pre="$pre" '
  NR > 3 {
    rows++
    if ($4 ~ /—/ || (pre && $5 ~ /—/) || $7 !~ /^ 0\.000 /) bad = 1
    d = $6; sub(/.*\(/, "", d); sub(/\).*/, "", d); split(d, k, "/")
    if (k[1] != k[2]) bad = 1
  }
  END { exit (bad || !rows) }' 2>/dev/null

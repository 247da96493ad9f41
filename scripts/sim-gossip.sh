#!/usr/bin/env bash
# Deterministic gossip membership simulation (virtual time, simulated network), release build:
#   scripts/sim-gossip.sh                         # 1,000 nodes (the CI run: 3 kills, no
#                                                 # partition (tests cover it), 5 s steady)
#   scripts/sim-gossip.sh --nodes 1000,5000 --loss 0.01 --kills 10 --partition-secs 5
# Prints one Markdown row per size (see README "Measured: simulation"). Exits non-zero if a
# run did not converge, missed a kill, or saw a false `dead`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || set -- --nodes 1000 --kills 3 --partition-secs 0 --steady-secs 5
cargo run --quiet --release --example gossip_sim -- "$@" | tee /dev/stderr | awk -F'|' '
  NR > 2 { if ($4 ~ /—/ || $5 ~ /—/ || $6 !~ /^ 0\.000 /) bad = 1 }
  END { exit bad }' 2>/dev/null

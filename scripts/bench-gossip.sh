#!/usr/bin/env bash
# Gossip benchmark (not a test): real QUIC nodes on loopback in one release-build process;
# prints, for 3, 10 and 50 nodes, convergence time, bytes/s and frames/s per node, CPU,
# and the time until a killed node is dead on every survivor.
#   scripts/bench-gossip.sh            # sizes 3,10,50
#   GOSSIP_BENCH_NODES=3,10 scripts/bench-gossip.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo test --release --lib gossip_bench_table -- --ignored --nocapture --test-threads 1

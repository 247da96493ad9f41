#!/usr/bin/env bash
# Node vs redis-server, interleaved, several repetitions (issue #17): memory per entry
# (node / redis-server / raw moka), L1-hit GET over HTTP (wrk) vs redis-benchmark GET,
# PUT with Redis vs SET, L2 hit vs GET, and redis-benchmark against the node's RESP port vs
# against redis-server. Prints min/median/max of each ratio as a Markdown table.
#
#   scripts/bench-node.sh            # REPS=3 ENTRIES=100000 SECS=4 CONNS=64
#   REPS=5 scripts/bench-node.sh
#
# Needs redis-server, redis-tools (redis-cli, redis-benchmark) and wrk (Debian packages,
# installed when missing). Starts its own servers on free loopback ports, never 6379, and
# stops them by pid. Release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

cargo build --release --bin hybrid-cache --example moka_baseline >&2
target="${CARGO_TARGET_DIR:-target}"
HC_BIN="$target/release/hybrid-cache" HC_MOKA="$target/release/examples/moka_baseline" \
  exec python3 scripts/bench_node.py

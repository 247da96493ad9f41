#!/usr/bin/env bash
# Randomized fault checker (tests/fault/): 3 real nodes, a private redis-server, one
# controllable TCP proxy per node, concurrent clients, a nemesis; the history is checked
# offline for reads older than the staleness bound and for corrupt values.
#   scripts/fault-check.sh [--duration SECS] [--bound-ms B] [--seed N] [--strict CATS]
#                          [--faults list] [--clients N] [--out DIR]
# Exit 0 = pass, 1 = stale beyond the bound or corruption, 2 = the run itself failed.
# Re-check a history: python3 tests/fault/checker.py DIR/history.jsonl [--bound-ms B]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=${CARGO_TARGET_DIR:-target}

if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "[fault-check] installing redis-server (apt-get)" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
fi
cargo build --quiet --bin hybrid-cache
out=""
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
out=${out:-$TARGET/fault-check/run-$(date -u +%Y%m%dT%H%M%SZ)-$$}
exec python3 tests/fault/run.py --binary "$TARGET/debug/hybrid-cache" --out "$out" ${args[@]+"${args[@]}"}

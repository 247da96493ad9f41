#!/usr/bin/env bash
# Failover figures for README.md: runs the Sentinel and the Cluster failover tests
# (tests/redis_topologies.rs: real redis-server / redis-sentinel processes on free loopback
# ports, 3 nodes under load, a primary SIGKILLed) N times, interleaved, and prints
# min/median/max of
#   - primary death -> the sentinels name a new primary / a replica serves the slots,
#   - primary death -> first acknowledged write (Sentinel: any; Cluster: the category on the
#     killed shard).
# Usage: scripts/failover-times.sh [N=5]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo test --test redis_topologies --no-run >&2
for i in $(seq 1 "$N"); do
  for t in sentinel cluster; do
    cargo test -q --test redis_topologies "$t" -- --nocapture 2>/dev/null \
      | grep -E "^(sentinel|cluster): " >>"$out/$t.txt" || echo "run $i of $t failed" >&2
  done
done
python3 - "$out" <<'PY'
import re, statistics, sys, pathlib
d = pathlib.Path(sys.argv[1])
for t in ("sentinel", "cluster"):
    lines = (d / f"{t}.txt").read_text().splitlines() if (d / f"{t}.txt").exists() else []
    pro, wr = [], []
    for l in lines:
        m = re.search(r"after (\d+) ms; first acknowledged .*?write (\d+) ms", l)
        if m:
            pro.append(int(m.group(1))); wr.append(int(m.group(2)))
    def f(xs):
        return f"min {min(xs)} / median {statistics.median(xs):.0f} / max {max(xs)} ms" if xs else "no data"
    print(f"{t:8} runs={len(pro)}  new primary: {f(pro)}   writes again: {f(wr)}")
PY

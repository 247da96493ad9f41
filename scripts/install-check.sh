#!/usr/bin/env bash
# `cargo install --path .` gives a working `hybrid-cache` on PATH: installs into a temporary
# root (debug profile, reusing the build directory, so it takes seconds; `--locked` as a user
# should), then runs it from PATH: --version, and a node answering /health.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"; }
trap cleanup EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cargo install -q --locked --debug --path "$ROOT" --root "$tmp"
export PATH="$tmp/bin:$PATH"
[ "$(command -v hybrid-cache)" = "$tmp/bin/hybrid-cache" ] || { echo "hybrid-cache not on PATH" >&2; exit 1; }
hybrid-cache --version
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -u HC_CONFIG -u REDIS_URL hybrid-cache node --http "127.0.0.1:$port" >"$tmp/node.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
    echo "[install-check] ok: installed hybrid-cache runs a node (/health 200)"
    exit 0
  fi
  sleep 0.1
done
cat "$tmp/node.log" >&2
echo "[install-check] FAIL: installed node did not answer /health" >&2
exit 1

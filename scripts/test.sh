#!/usr/bin/env bash
# Run the test suite: installs what the tests need when missing (redis-server,
# redis-cli and redis-sentinel from Debian's packages; tests start their own servers
# (single Redis, Sentinel, Cluster: tests/redis_topologies.rs) on free
# loopback ports, never 6379), runs the fault checker's self-test (python3), then
# `cargo test --all-targets "$@"`, the doctests and the redis-py test of the RESP front end
# (installing the `redis` package when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[test.sh] installing ${missing[*]} (apt-get)" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
# The Debian package may try to start a system service; tests never use it.
echo "[test.sh] $(redis-server --version)" >&2

# Self-test of the fault checker (tests/fault/: the offline history checker on hand-made
# histories, and the fault proxy); stdlib Python only, a few seconds.
echo "[test.sh] python3 -m unittest discover tests/fault" >&2
python3 -m unittest discover -s tests/fault -t tests/fault

# Extra arguments pass through. When they select targets themselves (--test X,
# --lib, ...), --all-targets is left out: cargo would otherwise run everything.
for a in "$@"; do
  case $a in
    --test|--test=*|--lib|--bin|--bin=*|--bins|--bench|--bench=*|--benches|--example|--example=*|--examples|--tests|--doc)
      exec cargo test "$@" ;;
    --) break ;;
  esac
done
cargo test --all-targets "$@"
# --all-targets leaves out doctests (the runnable examples of the rustdoc): run them too.
cargo test --doc "$@"

# The RESP front end through redis-py (a common client library), against the debug binary
# the tests above built.
if ! python3 -c "import redis" >/dev/null 2>&1; then
  echo "[test.sh] installing redis-py (pip)" >&2
  python3 -m pip install --quiet redis >&2 \
    || python3 -m pip install --quiet --break-system-packages redis >&2
fi
HC_BIN="${CARGO_TARGET_DIR:-target}/debug/hybrid-cache" \
  python3 tests/python/test_resp_redis_py.py

#!/usr/bin/env bash
# Run the test suite: installs what the tests need when missing (redis-server
# and redis-cli from Debian's packages; tests start their own servers on free
# loopback ports, never 6379), runs the fault checker's self-test (python3), then
# `cargo test --all-targets "$@"` and the doctests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
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
exec cargo test --doc "$@"

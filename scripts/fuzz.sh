#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each (default 30).
#
#   scripts/fuzz.sh [seconds] [target...]
#
# Installs cargo-fuzz when missing (`cargo install cargo-fuzz`). Uses a nightly toolchain
# when one is installed, else the stable one with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs
# nightly-only sanitizer flags; no nightly can be downloaded in this environment).
# Corpora persist in fuzz/corpus/<target>; crashes land in fuzz/artifacts/<target> and make
# the script fail. Fuzz longer by passing more seconds, e.g. `scripts/fuzz.sh 3600`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECS=${1:-30}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(wire_decode gossip_frame pattern_parse config_toml http_key_ttl)
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "[fuzz.sh] installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

TOOLCHAIN=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TOOLCHAIN=(+nightly)
else
  echo "[fuzz.sh] no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
fi

# Separate target dir: sanitizer builds must not invalidate the normal build's artefacts.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}

status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzz $t for ${SECS}s" >&2
  # FUZZ_SANITIZER=none (CI) skips the AddressSanitizer build: a panic is still a failure,
  # and the crate has no unsafe code of its own; the default keeps ASan for long runs.
  if ! cargo "${TOOLCHAIN[@]}" fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$SECS" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 2>"fuzz/$t.log"; then
    echo "[fuzz.sh] $t FAILED; see fuzz/$t.log and fuzz/artifacts/$t/" >&2
    tail -40 "fuzz/$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "fuzz/$t.log" | sed "s/^/[$t] /" >&2 || true
  fi
done
exit $status

#!/usr/bin/env bash
# Checks xtask/sh/compose-lib.sh picks `docker compose` (v2) when the plugin answers and
# `docker-compose` (v1) otherwise, with stub commands on a private PATH (no Docker needed).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/v2" "$tmp/v1" "$tmp/none"
# v2: `docker compose ...` works.
printf '#!/bin/sh\necho "v2 $*"\n' >"$tmp/v2/docker"
# v1: `docker compose` is an unknown command, docker-compose exists.
printf '#!/bin/sh\n[ "$1" = compose ] && exit 1\necho "docker $*"\n' >"$tmp/v1/docker"
printf '#!/bin/sh\necho "v1 $*"\n' >"$tmp/v1/docker-compose"
cp "$tmp/v1/docker" "$tmp/none/docker"
chmod +x "$tmp"/*/*
# Only the stubs and a private bin with the few tools the shell needs: never the real
# docker or docker-compose.
mkdir -p "$tmp/bin"
for t in bash sh env; do ln -s "$(command -v "$t")" "$tmp/bin/$t"; done
run() { # DIR ARGS...: `compose ARGS` with only DIR (and the private bin) on PATH
  local dir=$1; shift
  (cd "$tmp" && env -i PATH="$tmp/$dir:$tmp/bin" "$tmp/bin/bash" -c 'source "$0"; compose "$@"' \
    "$ROOT/xtask/sh/compose-lib.sh" "$@" 2>&1)
}
fail=0
expect() { if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: got '$2', want '$3'"; fail=1; fi; }
expect "v2 plugin preferred" "$(run v2 up -d)" "v2 compose up -d"
expect "v1 fallback" "$(run v1 -p x up -d)" "v1 -p x up -d"
out=$(run none up -d || true)
case $out in *"neither 'docker compose'"*) echo "ok: neither found is an error" ;; *) echo "FAIL: none: $out"; fail=1 ;; esac
exit $fail

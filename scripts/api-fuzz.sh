#!/usr/bin/env bash
# Fuzz the HTTP API against its own OpenAPI document with schemathesis: a node (L1 only, on
# a free loopback port) is started twice, without and with an API token, and
# `schemathesis run <node>/openapi.json` must find no 5xx, no response outside the schema,
# no schema-violating request accepted and no schema-valid request refused (settings and
# the few limits JSON Schema cannot express: scripts/schemathesis/schemathesis.toml).
# Bounded: --max-examples (HC_FUZZ_EXAMPLES, default 40) per operation (about 15 s a run).
# Installs schemathesis with pip when missing. HC_BIN overrides the binary.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { echo "[api-fuzz] $*" >&2; }
if ! command -v schemathesis >/dev/null 2>&1; then
  log "installing schemathesis (pip)"
  python3 -m pip install -q schemathesis >&2
fi
BIN=${HC_BIN:-}
if [ -z "$BIN" ]; then
  cargo build -q --bin hybrid-cache >&2
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/hybrid-cache
fi
EXAMPLES=${HC_FUZZ_EXAMPLES:-40}
TMP=$(mktemp -d)
NODE_PID=""
stop_node() {
  if [ -n "$NODE_PID" ]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
  fi
}
cleanup() { stop_node; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_fuzz LABEL [TOKEN]
run_fuzz() {
  local label=$1 token=${2:-} port url i
  port=$(free_port)
  url=http://127.0.0.1:$port
  (
    # Only what this run sets: no developer REDIS_URL or HC_* leaks in.
    for v in $(env | sed -n 's/^\(HC_[A-Z_]*\|REDIS_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
    if [ -n "$token" ]; then export HC_API_TOKEN=$token; fi
    exec "$BIN" node --http "127.0.0.1:$port" --node-id "fuzz-$label"
  ) >"$TMP/$label.log" 2>&1 &
  NODE_PID=$!
  for i in $(seq 1 100); do
    curl -sf -o /dev/null "$url/health" && break
    kill -0 "$NODE_PID" 2>/dev/null || { cat "$TMP/$label.log" >&2; log "node exited"; return 1; }
    sleep 0.1
  done
  log "$label: schemathesis against $url (max $EXAMPLES examples per operation)"
  local auth=()
  if [ -n "$token" ]; then auth=(-H "Authorization: Bearer $token"); fi
  local rc=0 attempt phases=()
  for attempt in 1 2; do
    rc=0
    (cd "$TMP" && timeout 300 schemathesis --config-file "$ROOT/scripts/schemathesis/schemathesis.toml" run \
      "$url/openapi.json" --max-examples "$EXAMPLES" --workers 2 \
      --request-timeout 10 "${auth[@]}" "${phases[@]}") >"$TMP/$label.st" 2>&1 || rc=$?
    cat "$TMP/$label.st"
    # CPython 3.11.7's `ast.parse` can fail inside hypothesis while schemathesis's coverage
    # phase describes a filter lambda ("AST constructor recursion depth mismatch", a CPython
    # bug): the tool fails, not the API. Such a run is repeated once without the coverage
    # phase (examples and fuzzing still run); a run with any API failure is never repeated.
    if [ "$rc" -ne 0 ] && [ "$attempt" -eq 1 ] \
      && grep -q "AST constructor recursion depth mismatch" "$TMP/$label.st" \
      && ! grep -q "= FAILURES =" "$TMP/$label.st"; then
      log "$label: schemathesis hit the CPython 3.11 AST bug in its coverage phase; again without it"
      phases=(--phases examples,fuzzing)
      continue
    fi
    break
  done
  # The node must have survived everything.
  if ! kill -0 "$NODE_PID" 2>/dev/null; then
    log "$label: node died during the run"; tail -n 40 "$TMP/$label.log" >&2; rc=1
  elif grep -q "panicked" "$TMP/$label.log"; then
    log "$label: node panicked"; grep -A5 panicked "$TMP/$label.log" >&2; rc=1
  fi
  stop_node
  return "$rc"
}

failed=0
run_fuzz open || failed=1
run_fuzz token "fuzz-$RANDOM$RANDOM" || failed=1
if [ "$failed" -ne 0 ]; then log "FAIL"; exit 1; fi
log "PASS: no 5xx, every response matches the schema (with and without a token)"

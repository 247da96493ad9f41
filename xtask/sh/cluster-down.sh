#!/usr/bin/env bash
# Stop what cargo xtask cluster up (or chaos.sh) started: exactly the pids
# recorded in .cluster/*.pid, each only if it still runs the recorded program.
set -euo pipefail
# shellcheck source=cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

[ -d "$STATE" ] || { log "nothing to stop ($STATE missing)"; exit 0; }
stop_proc haproxy haproxy
for f in "$STATE"/n*.pid; do
  [ -e "$f" ] || continue
  stop_proc "$(basename "$f" .pid)" hybrid-cache
done
stop_proc redis redis-server
log "cluster down (logs kept in $STATE)"

#!/usr/bin/env bash
# `docker compose` or `docker-compose`, whichever this machine has, on docker-compose.yml:
#   scripts/compose.sh up -d      scripts/compose.sh ps      scripts/compose.sh down -v
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=compose-lib.sh
source "$ROOT/scripts/compose-lib.sh"
compose -f "$ROOT/docker-compose.yml" "$@"

# shellcheck shell=bash
# Sourced by the scripts that drive docker-compose.yml: defines `compose ARGS...`, which runs
# `docker compose` (v2 plugin) when it answers, else `docker-compose` (v1), else fails with
# a message saying what to install. HC_COMPOSE overrides the choice (e.g. "docker-compose").
compose_cmd() {
  if [ -n "${HC_COMPOSE:-}" ]; then
    echo "$HC_COMPOSE"
  elif docker compose version >/dev/null 2>&1; then
    echo "docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    echo "docker-compose"
  else
    return 1
  fi
}

compose() {
  local cmd
  cmd=$(compose_cmd) || {
    echo "neither 'docker compose' (v2) nor 'docker-compose' (v1) found: install one" >&2
    return 127
  }
  # shellcheck disable=SC2086 # "docker compose" is two words on purpose
  $cmd "$@"
}

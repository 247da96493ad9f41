#!/usr/bin/env bash
# Validate the Prometheus alert rules and prove they fire: `promtool check rules`,
# `promtool test rules` (deploy/prometheus/alerts_test.yml) and `promtool check config` of
# both scrape configs (local cluster, compose profile).
# Installs Debian's `prometheus` package (which ships promtool) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../deploy/prometheus"
if ! command -v promtool >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "[check-alerts] installing prometheus (apt-get)" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >&2
fi
promtool check rules alerts.yml
promtool test rules alerts_test.yml
promtool check config prometheus.yml
promtool check config compose.yml

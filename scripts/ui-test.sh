#!/usr/bin/env bash
# CI wrapper of scripts/ui-test.py: installs Debian's chromium (and prometheus, for the
# scrape check) when missing, then runs the headless-browser test of GET /ui against a
# 3-node loopback cluster. The screenshot goes to a temporary file unless
# HC_UI_SCREENSHOT is set (docs/ui.png is refreshed with HC_UI_SCREENSHOT=docs/ui.png).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[ui-test] installing ${missing[*]} (apt-get)" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
shot=${HC_UI_SCREENSHOT:-}
tmp=""
if [ -z "$shot" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  shot=$tmp/ui.png
fi
python3 "$ROOT/scripts/ui-test.py" --screenshot "$shot"

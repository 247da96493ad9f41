#!/usr/bin/env bash
# Build every image the compose cluster needs without a container registry:
#
#   hc-debian:bookworm   Debian bookworm minbase (debootstrap -> docker import), cached
#   hc-redis:local       redis-server from Debian packages on hc-debian:bookworm, cached
#   hc-haproxy:local     haproxy from Debian packages on hc-debian:bookworm, cached
#   hc-prometheus:local  prometheus from Debian packages on hc-debian:bookworm, cached
#                        (the compose `prometheus` profile)
#   hybrid-cache:local   host-built target/release/hybrid-cache in the runtime image
#
# Prints on stdout (last lines) the variables docker-compose.yml reads:
#   export REDIS_IMAGE=hc-redis:local NODE_IMAGE=hybrid-cache:local HAPROXY_IMAGE=hc-haproxy:local PROMETHEUS_IMAGE=hc-prometheus:local
# so `eval "$(cargo xtask compose images | tail -n1)"` works. Progress goes to stderr.
#
# Options / environment:
#   --rebuild            rebuild redis/haproxy/base images even if present
#   HC_IMAGE_CACHE       debootstrap cache dir (default /var/cache/hc-debootstrap)
#   DEBIAN_MIRROR        (default http://deb.debian.org/debian)
#   HC_OFFLINE_APT=1     do not use the network inside `docker build`; install
#                        .deb files downloaded on the host instead (automatic
#                        when a container from the base cannot run apt-get update)
#   HC_NO_CARGO=1        do not run `cargo build --release` (binary must exist)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${HC_IMAGE_CACHE:-/var/cache/hc-debootstrap}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
BASE_IMAGE=hc-debian:bookworm
REDIS_IMAGE=hc-redis:local
HAPROXY_IMAGE=hc-haproxy:local
PROMETHEUS_IMAGE=hc-prometheus:local
NODE_IMAGE=hybrid-cache:local
REBUILD=0
for a in "$@"; do
  case $a in
    --rebuild) REBUILD=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

log() { echo "[docker-images] $*" >&2; }
# The legacy builder: no buildx on these machines, and it needs no registry.
export DOCKER_BUILDKIT=0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

apt_install_host() {
  # Install Debian packages on the host if their command is missing.
  local missing=()
  local cmd pkg
  while [ $# -gt 0 ]; do
    cmd=$1 pkg=$2; shift 2
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing on host: ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

docker info >/dev/null 2>&1 || { echo "docker-images: no Docker engine answers 'docker info'" >&2; exit 1; }
$SUDO mkdir -p "$CACHE"

# ---------------------------------------------------------------- base image
TARBALL=$CACHE/$SUITE-minbase.tar
ROOTFS=$CACHE/rootfs
build_base() {
  if [ ! -s "$TARBALL" ] || [ "$REBUILD" = 1 ]; then
    if [ ! -x "$ROOTFS/usr/bin/apt-get" ] || [ "$REBUILD" = 1 ]; then
      apt_install_host debootstrap debootstrap
      log "debootstrap --variant=minbase $SUITE (takes a few minutes; .debs cached in $CACHE/debs)"
      $SUDO rm -rf "$CACHE/rootfs.tmp"
      $SUDO mkdir -p "$CACHE/debs"
      $SUDO debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$CACHE/rootfs.tmp" "$MIRROR" >&2
      $SUDO rm -rf "$ROOTFS"
      $SUDO mv "$CACHE/rootfs.tmp" "$ROOTFS"
    fi
    log "preparing rootfs and tarball $TARBALL"
    $SUDO tee "$ROOTFS/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
    # Keep images small and free of host state.
    $SUDO tee "$ROOTFS/etc/apt/apt.conf.d/90hc-docker" >/dev/null <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
    $SUDO find "$ROOTFS/var/cache/apt/archives" -name '*.deb' -delete
    $SUDO rm -rf "$ROOTFS/var/lib/apt/lists/"*
    $SUDO tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.tmp" .
    $SUDO mv "$TARBALL.tmp" "$TARBALL"
  fi
  log "docker import $TARBALL as $BASE_IMAGE"
  docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["/bin/bash"]' \
    "$TARBALL" "$BASE_IMAGE" >/dev/null
}
if ! image_exists "$BASE_IMAGE" || [ "$REBUILD" = 1 ]; then
  build_base
else
  log "$BASE_IMAGE present (cached)"
fi

# ------------------------------------------------- apt inside a container?
OFFLINE=${HC_OFFLINE_APT:-}
if [ -z "$OFFLINE" ]; then
  need_pkg_build=0
  { ! image_exists "$REDIS_IMAGE" || ! image_exists "$HAPROXY_IMAGE" || ! image_exists "$PROMETHEUS_IMAGE" \
    || [ "$REBUILD" = 1 ]; } && need_pkg_build=1
  if [ "$need_pkg_build" = 1 ]; then
    if docker run --rm "$BASE_IMAGE" sh -c 'timeout 90 apt-get update -q >/dev/null 2>&1'; then
      OFFLINE=0
      log "containers reach the Debian mirror: apt-get inside docker build"
    else
      OFFLINE=1
      log "containers cannot reach the Debian mirror: using .debs downloaded on the host"
    fi
  fi
fi

# Download PACKAGES and every dependency the base image lacks into DIR, on the
# host, resolving against the base image's dpkg status.
host_download_debs() {
  local dir=$1; shift
  local work
  work=$(mktemp -d)
  docker run --rm "$BASE_IMAGE" cat /var/lib/dpkg/status >"$work/status"
  mkdir -p "$dir/partial"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --download-only \
    --no-install-recommends \
    -o Debug::NoLocking=1 \
    -o Dir::State::status="$work/status" \
    -o Dir::Cache::archives="$dir" \
    "$@" >&2
  rm -rf "$dir/partial" "$dir/lock" "$work"
  ls "$dir"/*.deb >/dev/null 2>&1 || { echo "no .deb downloaded for $*" >&2; return 1; }
}

# build_pkg_image IMAGE DOCKERFILE PACKAGES...
build_pkg_image() {
  local image=$1 dockerfile=$2; shift 2
  if image_exists "$image" && [ "$REBUILD" != 1 ]; then
    log "$image present (cached)"
    return
  fi
  local ctx
  ctx=$(mktemp -d)
  mkdir -p "$ctx/debs"
  touch "$ctx/debs/.keep"
  cp "$ROOT/docker/haproxy.cfg" "$ctx/haproxy.cfg"
  if [ "$OFFLINE" = 1 ]; then
    host_download_debs "$ctx/debs" "$@"
  fi
  log "docker build $image ($*)"
  docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" -f "$ROOT/$dockerfile" -t "$image" "$ctx" >&2
  rm -rf "$ctx"
}
build_pkg_image "$REDIS_IMAGE" docker/Dockerfile.redis redis-server
build_pkg_image "$HAPROXY_IMAGE" docker/Dockerfile.haproxy haproxy
build_pkg_image "$PROMETHEUS_IMAGE" docker/Dockerfile.prometheus prometheus

# ----------------------------------------------------------------- node image
BIN=$ROOT/target/release/hybrid-cache
if [ "${HC_NO_CARGO:-0}" != 1 ]; then
  log "cargo build --release (no-op when up to date)"
  (cd "$ROOT" && cargo build --release --locked --bin hybrid-cache >&2)
fi
[ -x "$BIN" ] || { echo "missing $BIN (cargo build --release)" >&2; exit 1; }
ctx=$(mktemp -d)
cp "$BIN" "$ctx/hybrid-cache"
cp "$ROOT/docker/hc-http" "$ctx/hc-http"
log "docker build $NODE_IMAGE from $BIN"
docker build -q --build-arg RUNTIME_IMAGE="$BASE_IMAGE" -f "$ROOT/docker/Dockerfile.prebuilt" \
  -t "$NODE_IMAGE" "$ctx" >&2
rm -rf "$ctx"

# Smoke checks: non-root users, binaries present.
for img in "$REDIS_IMAGE" "$HAPROXY_IMAGE" "$PROMETHEUS_IMAGE" "$NODE_IMAGE"; do
  user=$(docker image inspect -f '{{.Config.User}}' "$img")
  case $user in ''|root|0|0:*) echo "image $img runs as root" >&2; exit 1 ;; esac
done
docker run --rm --entrypoint redis-server "$REDIS_IMAGE" --version >&2
docker run --rm --entrypoint haproxy "$HAPROXY_IMAGE" -c -f /usr/local/etc/haproxy/haproxy.cfg >&2 \
  || log "note: haproxy -c failed outside compose (n1..n3 names unresolvable is fine with init-addr none)"
docker run --rm --entrypoint prometheus "$PROMETHEUS_IMAGE" --version >&2
docker run --rm --entrypoint id "$NODE_IMAGE" >&2

echo "export REDIS_IMAGE=$REDIS_IMAGE NODE_IMAGE=$NODE_IMAGE HAPROXY_IMAGE=$HAPROXY_IMAGE PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE"

#!/usr/bin/env bash
# Builds the recorder image with a real Docker engine and saves it for the node.
#
#   tests/node/image.sh      prints the tarball path on stdout (progress and timings on stderr)
#
# 1. docker.sh up (and down at the end, only if this script started the engine);
# 2. the base image without a registry: debootstrap --variant=minbase bookworm from the host's
#    own Debian mirror, the host's apt sources and extra CA certificates copied in (pip in the
#    build verifies PyPI through them), `docker import`ed as $BASE_IMAGE; the rootfs tarball is
#    kept in the cache, so a fresh engine imports it instead of bootstrapping again;
# 3. docker build of recorder-image/Dockerfile as $WEBRECORD_IMAGE with BASE_IMAGE as build arg;
# 4. docker save to $CACHE/recorder.tar only when the image ID changed (ID stored beside it).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=tests/node
NODE_DIR=${WEBRECORD_NODE_DIR:-/tmp/webrecord-node}
CACHE=${WEBRECORD_CACHE:-$HOME/.cache/webrecord}/node/images
IMAGE=${WEBRECORD_IMAGE:-webrecord/recorder:0.1.0}   # the chart's default repository:tag
BASE_IMAGE=${WEBRECORD_BASE_IMAGE:-webrecord.local/debian:bookworm-slim}
SUITE=bookworm
DOCKER=/usr/bin/docker   # Debian's client; a newer /usr/local/bin/docker may be first on PATH
TARBALL=$CACHE/recorder.tar
mkdir -p "$NODE_DIR" "$CACHE"

log() { echo "image.sh: $*" >&2; }
timed() {   # timed LABEL CMD...: runs CMD, logs how long it took
  local label=$1 start=$SECONDS rc=0
  shift
  "$@" || rc=$?
  log "$label: $((SECONDS - start)) s$([ "$rc" = 0 ] || echo ", failed ($rc)")"
  return "$rc"
}

started=0
stop_docker() { if [ "$started" = 1 ]; then "$HERE/docker.sh" down; fi; }
trap stop_docker EXIT
"$HERE/docker.sh" status || started=1
timed "docker up" "$HERE/docker.sh" up

make_base_tar() {   # the rootfs of a minimal bookworm as $1 (written atomically)
  local rootfs=$NODE_DIR/base-rootfs mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rm -rf "$rootfs"
  log "debootstrap $SUITE from $mirror"
  timeout 1200 debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$NODE_DIR/debootstrap.log" 2>&1 ||
    { tail -20 "$NODE_DIR/debootstrap.log" >&2; return 1; }
  # What the official slim image leaves out: downloaded packages, apt lists and caches.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
  rm -f "$rootfs/etc/apt/sources.list"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
  else
    echo "deb $mirror $SUITE main" > "$rootfs/etc/apt/sources.list"
  fi
  # Like the official slim image: no documentation (copyright notices stay), manual pages or
  # translations, now or in packages installed later.
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    > "$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  # The host's extra CAs (an HTTPS egress proxy's): update-ca-certificates in the build adds
  # them to the bundle pip uses.
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  tar -C "$rootfs" --numeric-owner -cf "$1.tmp" .
  mv "$1.tmp" "$1"
  rm -rf "$rootfs"
}

# Bump BASE_RECIPE when make_base_tar changes: the cached tarball and the imported image carry it.
BASE_RECIPE=2
if [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "webrecord.base-recipe"}}' "$BASE_IMAGE" 2>/dev/null)" != "$BASE_RECIPE" ]; then
  # Not in $CACHE itself: cluster.sh imports every *.tar there into the node.
  mkdir -p "$CACHE/../base"
  base_tar=$CACHE/../base/base-$SUITE-$BASE_RECIPE.tar
  [ -s "$base_tar" ] || timed "debootstrap" make_base_tar "$base_tar"
  timed "docker import" "$DOCKER" import -c "LABEL webrecord.base-recipe=$BASE_RECIPE" \
    -c 'CMD ["bash"]' "$base_tar" "$BASE_IMAGE" >/dev/null
fi

build_log=$NODE_DIR/build.log
log "docker build $IMAGE (log $build_log)"
# BuildKit: the apt and pip stages run in parallel, and only the files a stage uses are sent.
build() { DOCKER_BUILDKIT=1 timeout 2400 "$DOCKER" build --progress=plain "$@" >"$build_log" 2>&1; }
if ! timed "docker build" build -f recorder-image/Dockerfile -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" .; then
  tail -40 "$build_log" >&2
  exit 1
fi

id=$("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE")
size=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
log "$IMAGE $id, $((size / 1000000)) MB"
if [ -s "$TARBALL" ] && [ "$(cat "$TARBALL.id" 2>/dev/null)" = "$id" ]; then
  log "docker save: $TARBALL is current"
else
  timed "docker save" "$DOCKER" save -o "$TARBALL.tmp" "$IMAGE"
  mv "$TARBALL.tmp" "$TARBALL"
  echo "$id" > "$TARBALL.id"
fi
echo "$TARBALL"

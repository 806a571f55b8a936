#!/usr/bin/env bash
# Provides the `helm` binary for the chart tests and prints its path (stdout only that).
#
# - WEBRECORD_HELM set to an executable: printed as is.
# - otherwise built once from Go modules (`go install helm.sh/helm/v3/cmd/helm@VERSION`) into
#   ${WEBRECORD_CACHE:-$HOME/.cache/webrecord}/tools/helm-VERSION/helm. No download site is
#   reachable here, only the Go module proxy; the binary never lands in the repo.
set -euo pipefail

HELM_VERSION=${WEBRECORD_HELM_VERSION:-v3.19.0}
log() { echo "helm.sh: $*" >&2; }

if [ -n "${WEBRECORD_HELM:-}" ]; then
  [ -x "$WEBRECORD_HELM" ] || { log "WEBRECORD_HELM=$WEBRECORD_HELM is not executable"; exit 1; }
  echo "$WEBRECORD_HELM"
  exit 0
fi

# CI may run with a bare environment; Go needs HOME for its own caches too.
if [ -z "${HOME:-}" ]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
CACHE_ROOT=${WEBRECORD_CACHE:-$HOME/.cache/webrecord}
DIR="$CACHE_ROOT/tools/helm-$HELM_VERSION"
if [ -x "$DIR/helm" ]; then
  echo "$DIR/helm"
  exit 0
fi

GO=$(command -v go || true)
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
[ -n "$GO" ] || { log "no Go toolchain found (need go on PATH)"; exit 1; }

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [ -x "$DIR/helm" ]; then
  echo "$DIR/helm"
  exit 0
fi
start=$(date +%s)
log "building helm $HELM_VERSION from Go modules (a few minutes, once)"
GOFLAGS="-buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$DIR/.build" \
  nice -n 10 "$GO" install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv "$DIR/.build/helm" "$DIR/helm"
rmdir "$DIR/.build" 2>/dev/null || true
log "built in $(($(date +%s) - start)) s"
echo "$DIR/helm"

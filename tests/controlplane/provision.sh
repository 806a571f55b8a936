#!/usr/bin/env bash
# Provides kube-apiserver, etcd, kubectl (and kube-controller-manager) for the cluster tests and
# prints the directory that holds them (the envtest layout: KUBEBUILDER_ASSETS).
#
# - KUBEBUILDER_ASSETS set and complete: printed as is, nothing is built.
# - otherwise the binaries are built from Go modules into
#   ${WEBRECORD_CACHE:-$HOME/.cache/webrecord}/envtest/<k8s-version>/bin, once; a stamp file
#   makes later runs instant. No binary ever lands in the repo.
#
# Why build from modules: this machine has no Docker, no cluster and no download site, only the
# Go module proxy. k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the k8s.io/*
# staging modules with ./staging paths), so a throwaway module in the cache requires it and
# replaces each staging module with its published v0.N.x tag.
#
# Progress goes to stderr; stdout is only the assets directory.
set -euo pipefail

K8S_VERSION=${WEBRECORD_K8S_VERSION:-v1.36.3}
ETCD_VERSION=${WEBRECORD_ETCD_VERSION:-v3.6.16}
# Staging modules (k8s.io/api, k8s.io/apiserver, ...) are tagged v0.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
K8S_BINARIES=(kube-apiserver kubectl kube-controller-manager)

log() { echo "provision: $*" >&2; }

# Module downloads can hit a passing network error; try them again before giving up.
retry() {
  local attempt
  for attempt in 1 2 3; do
    "$@" && return 0
    log "attempt $attempt of: $* failed"
    sleep $((attempt * 5))
  done
  return 1
}

complete_dir() {
  local dir=$1 name
  for name in kube-apiserver etcd kubectl; do
    [ -x "$dir/$name" ] || return 1
  done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if complete_dir "$KUBEBUILDER_ASSETS"; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver, etcd or kubectl"
  exit 1
fi

# CI may run with a bare environment; Go needs HOME for its own caches too.
if [ -z "${HOME:-}" ]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
CACHE_ROOT=${WEBRECORD_CACHE:-$HOME/.cache/webrecord}
DIR="$CACHE_ROOT/envtest/$K8S_VERSION"
BIN="$DIR/bin"
STAMP="$BIN/.stamp"
WANT_STAMP="kubernetes=$K8S_VERSION staging=$STAGING_VERSION etcd=$ETCD_VERSION binaries=${K8S_BINARIES[*]} etcd"

stamp_ok() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] && complete_dir "$BIN"; }

if stamp_ok; then
  echo "$BIN"
  exit 0
fi

GO=$(command -v go || true)
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
[ -n "$GO" ] || { log "no Go toolchain found (need go >= 1.25 on PATH)"; exit 1; }

mkdir -p "$DIR"
# One builder at a time (parallel pytest sessions, CI and a developer's shell).
exec 9>"$DIR/.lock"
flock 9
if stamp_ok; then
  echo "$BIN"
  exit 0
fi

export GOFLAGS="-buildvcs=false -mod=mod"
export GOTOOLCHAIN=local
export CGO_ENABLED=0
# Smaller binaries, less to link: no symbol table or DWARF.
LDFLAGS="-s -w"
start=$(date +%s)
rm -f "$STAMP"
mkdir -p "$BIN"

build_kubernetes() {
  local src="$DIR/src/kubernetes" gomod staging
  rm -rf "$src"
  mkdir -p "$src"
  cd "$src"
  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  gomod=$(retry "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || { log "could not download the go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  # Every `k8s.io/x => ./staging/src/k8s.io/x` line becomes `k8s.io/x => k8s.io/x v0.N.M`.
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod" | sort -u)
  [ -n "$staging" ] || { log "found no staging replace lines in $gomod"; exit 1; }
  {
    echo "module webrecord.local/envtest-kubernetes"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\).*/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for mod in $staging; do echo "	$mod => $mod $STAGING_VERSION"; done
    echo ")"
  } >go.mod
  for name in "${K8S_BINARIES[@]}"; do
    log "adding tool k8s.io/kubernetes/cmd/$name"
    retry "$GO" get -tool "k8s.io/kubernetes/cmd/$name@$K8S_VERSION" >&2
  done
  for name in "${K8S_BINARIES[@]}"; do
    log "building $name (k8s.io/kubernetes $K8S_VERSION)"
    nice -n 10 "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$BIN/$name" "k8s.io/kubernetes/cmd/$name" >&2
  done
}

build_etcd() {
  local src="$DIR/src/etcd"
  rm -rf "$src"
  mkdir -p "$src"
  cd "$src"
  # Its own module: etcd's dependency versions must not be bent by Kubernetes' and vice versa.
  "$GO" mod init webrecord.local/envtest-etcd >/dev/null 2>&1
  log "adding tool go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  retry "$GO" get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  log "building etcd $ETCD_VERSION"
  nice -n 10 "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 >&2
}

(build_etcd)
(build_kubernetes)
echo "$WANT_STAMP" >"$STAMP"
log "built in $(($(date +%s) - start)) s into $BIN"
echo "$BIN"

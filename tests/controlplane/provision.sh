#!/usr/bin/env bash
# Provides kube-apiserver, etcd, kubectl (and kube-controller-manager) for the cluster tests and
# prints the directory that holds them (the envtest layout: KUBEBUILDER_ASSETS).
#
# - KUBEBUILDER_ASSETS set and complete: printed as is, nothing is built.
# - otherwise the binaries are built from Go modules (gobuild.sh) into
#   ${WEBRECORD_CACHE:-$HOME/.cache/webrecord}/envtest/<k8s-version>/bin, once; a stamp file
#   makes later runs instant. No binary ever lands in the repo.
#
# Progress goes to stderr; stdout is only the assets directory.
set -euo pipefail

log() { echo "provision: $*" >&2; }
# shellcheck source=gobuild.sh
. "$(dirname "${BASH_SOURCE[0]}")/gobuild.sh"

ETCD_VERSION=${WEBRECORD_ETCD_VERSION:-v3.6.16}
K8S_BINARIES=(kube-apiserver kubectl kube-controller-manager)

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

DIR="$CACHE_ROOT/envtest/$K8S_VERSION"
BIN="$DIR/bin"

build() {
  (build_go_command "$DIR/src/etcd" "go.etcd.io/etcd/server/v3" "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$BIN/etcd")
  (build_k8s "$DIR/src/kubernetes" "$BIN" "${K8S_BINARIES[@]}")
}

build_once "$BIN" "kubernetes=$K8S_VERSION staging=$STAGING_VERSION etcd=$ETCD_VERSION binaries=${K8S_BINARIES[*]} etcd version-ldflags" complete_dir build
echo "$BIN"

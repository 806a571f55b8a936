#!/usr/bin/env bash
# Provides everything the one-node cluster (cluster.sh) runs, and prints the directory of its
# binaries (stdout: only that line; progress on stderr):
#
# - Debian packages: containerd, runc, CNI plugins, iptables, conntrack, busybox-static (apt, only
#   when one is missing);
# - kubelet, kube-scheduler, kube-proxy (k8s.io/kubernetes, same module trick as the control
#   plane: ../controlplane/gobuild.sh), CoreDNS and the pause binary (gcc -static of the k8s
#   module's build/pause/linux/pause.c), built once into
#   ${WEBRECORD_CACHE:-$HOME/.cache/webrecord}/node/<k8s-version>/bin (stamp + lock: a second run
#   is instant);
# - links there to kube-apiserver, etcd, kubectl, kube-controller-manager
#   (tests/controlplane/provision.sh) and helm (tests/operator/helm.sh);
# - image tarballs in $CACHE/node/images: the pause image (registry.k8s.io/pause:3.10.2), CoreDNS
#   and a busybox image for the smoke test. Each is a single-layer docker-archive written
#   directly (deterministic: the same bytes, so the same image ID, on every machine), which
#   `ctr images import` takes like `docker save` output; no Docker engine needed.
set -euo pipefail

log() { echo "node-provision: $*" >&2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=../controlplane/gobuild.sh
. "$REPO/tests/controlplane/gobuild.sh"

COREDNS_VERSION=${WEBRECORD_COREDNS_VERSION:-v1.14.7}
PAUSE_VERSION=3.10.2
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_VERSION"
COREDNS_IMAGE="webrecord.local/coredns:$COREDNS_VERSION"
K8S_BINARIES=(kubelet kube-scheduler kube-proxy)
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack busybox-static gcc libc6-dev)

DIR="$CACHE_ROOT/node/$K8S_VERSION"
BIN="$DIR/bin"
IMAGES="$CACHE_ROOT/node/images"

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  # Other installs may hold the dpkg lock for a while (scripts/install.sh, docker.sh).
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -q)
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2 ||
    { "${apt[@]}" update >&2 && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2; }
}

node_complete() {
  local dir=$1 name
  for name in "${K8S_BINARIES[@]}" coredns pause; do
    [ -x "$dir/$name" ] || return 1
  done
}

build_node() {
  (build_k8s "$DIR/src/kubernetes" "$BIN" "${K8S_BINARIES[@]}")
  (build_go_command "$DIR/src/coredns" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns "$BIN/coredns")
  # The pause binary of the k8s release: its C source ships in the module downloaded above.
  local src
  src="$("$GO" env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
  log "building pause $PAUSE_VERSION (gcc -static)"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$BIN/pause" "$src"
  strip "$BIN/pause"
}

# Deterministic tar: sorted names, zero times and owners, so the digest depends on content only.
det_tar() {
  local dir=$1 out=$2
  (cd "$dir" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    tar --no-recursion --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$out" -T -)
}

# make_image OUT REF ENTRYPOINT_JSON ROOTFS: a docker-archive (manifest.json + config + one layer).
make_image() {
  local out=$1 ref=$2 entrypoint=$3 rootfs=$4 work diff config cfg_digest arch
  work=$(mktemp -d)
  arch=$(dpkg --print-architecture)
  det_tar "$rootfs" "$work/layer.tar"
  diff=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  mkdir "$work/$diff"
  mv "$work/layer.tar" "$work/$diff/layer.tar"
  config='{"architecture":"'$arch'","os":"linux","created":"1970-01-01T00:00:00Z",'
  config+='"config":{"Env":["PATH=/bin"],"Entrypoint":'$entrypoint'},'
  config+='"rootfs":{"type":"layers","diff_ids":["sha256:'$diff'"]}}'
  printf '%s' "$config" >"$work/config.json"
  cfg_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/$cfg_digest.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfg_digest" "$ref" "$diff" >"$work/manifest.json"
  det_tar "$work" "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$work"
  log "image $ref -> $out (ID sha256:${cfg_digest:0:12})"
}

# rootfs with the files the runtime bind-mounts over (so a read-only root needs no mount points).
new_rootfs() {
  local root=$1
  rm -rf "$root"
  mkdir -p "$root/etc" "$root/tmp" "$root/bin"
  chmod 1777 "$root/tmp"
  : >"$root/etc/hosts"; : >"$root/etc/hostname"; : >"$root/etc/resolv.conf"
  echo "nobody:x:65534:65534:nobody:/:/bin/false" >"$root/etc/passwd"
}

# Rebuilt when missing or older than what goes into it (cheap: seconds).
images() {
  mkdir -p "$IMAGES"
  exec 8>"$IMAGES/.lock"
  flock 8
  local root="$DIR/rootfs" version
  if [ ! "$IMAGES/pause.tar" -nt "$BIN/pause" ]; then
    new_rootfs "$root"; cp "$BIN/pause" "$root/pause"
    make_image "$IMAGES/pause.tar" "$PAUSE_IMAGE" '["/pause"]' "$root"
  fi
  if [ ! "$IMAGES/coredns.tar" -nt "$BIN/coredns" ]; then
    new_rootfs "$root"; cp "$BIN/coredns" "$root/coredns"
    make_image "$IMAGES/coredns.tar" "$COREDNS_IMAGE" '["/coredns"]' "$root"
  fi
  # busybox (Debian's static build): sh, httpd, wget, nslookup for pods that test the network.
  version=$(dpkg-query -W -f='${Version}' busybox-static | sed 's/^[0-9]*://; s/-.*//')
  if [ ! "$IMAGES/busybox.tar" -nt /bin/busybox ]; then
    new_rootfs "$root"; cp /bin/busybox "$root/bin/busybox"
    for name in sh wget nslookup httpd cat sleep; do ln -s busybox "$root/bin/$name"; done
    make_image "$IMAGES/busybox.tar" "webrecord.local/busybox:$version" '["/bin/busybox"]' "$root"
  fi
  rm -rf "$root"
  exec 8>&-
}

install_packages
# The control plane's binaries from the project's own cache (never a user's KUBEBUILDER_ASSETS:
# the node needs kube-controller-manager and versions that match the kubelet).
CP_BIN=$(env -u KUBEBUILDER_ASSETS bash "$REPO/tests/controlplane/provision.sh")
HELM=$(bash "$REPO/tests/operator/helm.sh")
build_once "$BIN" "kubernetes=$K8S_VERSION staging=$STAGING_VERSION coredns=$COREDNS_VERSION pause=$PAUSE_VERSION binaries=${K8S_BINARIES[*]} coredns pause version-ldflags" node_complete build_node
for name in kube-apiserver etcd kubectl kube-controller-manager; do
  ln -sfn "$CP_BIN/$name" "$BIN/$name"
done
ln -sfn "$HELM" "$BIN/helm"
images
echo "$BIN"

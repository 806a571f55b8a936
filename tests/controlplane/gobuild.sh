# Building Kubernetes components and other Go commands from the Go module proxy into the cache,
# once. Sourced (not run) by tests/controlplane/provision.sh and tests/node/provision.sh; the
# caller defines `log MESSAGE...` (to stderr) and uses `set -euo pipefail`.
#
# Why build from modules: no download site or container registry is reachable, only the Go
# module proxy. k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the k8s.io/*
# staging modules with ./staging paths), so a throwaway module in the cache requires it and
# replaces each staging module with its published v0.N.x tag.

K8S_VERSION=${WEBRECORD_K8S_VERSION:-v1.36.3}
# Staging modules (k8s.io/api, k8s.io/apiserver, ...) are tagged v0.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

# CI may run with a bare environment; Go needs HOME for its own caches too.
if [ -z "${HOME:-}" ]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
CACHE_ROOT=${WEBRECORD_CACHE:-$HOME/.cache/webrecord}

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

find_go() {
  GO=$(command -v go || true)
  [ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
  [ -n "$GO" ] || { log "no Go toolchain found (need go >= 1.26 on PATH or in /usr/local/go)"; exit 1; }
}

# build_once BIN WANT COMPLETE BUILD: runs `BUILD` unless BIN/.stamp holds WANT and `COMPLETE BIN`
# succeeds. One builder at a time (parallel pytest sessions, CI and a developer's shell) through a
# lock next to BIN; the stamp makes later calls instant.
build_once() {
  local bin=$1 want=$2 complete=$3 build=$4
  local stamp="$bin/.stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$complete" "$bin"; then
    return 0
  fi
  find_go
  mkdir -p "$bin"
  exec 9>"${bin%/*}/.lock"
  flock 9
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$complete" "$bin"; then
    exec 9>&-
    return 0
  fi
  export GOFLAGS="-buildvcs=false -mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
  local start
  start=$(date +%s)
  rm -f "$stamp"
  "$build"
  echo "$want" >"$stamp"
  log "built in $(($(date +%s) - start)) s into $bin"
  exec 9>&-
}

# The version the binaries report (`kubectl version`, the API server's /version that helm's
# kubeVersion checks read, the node's kubeletVersion); a plain `go build` says v0.0.0-master.
k8s_version_ldflags() {
  local minor=${K8S_VERSION#v1.} pkg flags=""
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

# build_k8s SRC OUT NAME...: k8s.io/kubernetes/cmd/NAME at K8S_VERSION into OUT/NAME, the module
# kept in SRC (recreated).
build_k8s() {
  local src=$1 out=$2 gomod staging name
  shift 2
  rm -rf "$src"
  mkdir -p "$src" "$out"
  cd "$src"
  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  gomod=$(retry "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$gomod" ] || { log "could not download the go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  # Every `k8s.io/x => ./staging/src/k8s.io/x` line becomes `k8s.io/x => k8s.io/x v0.N.M`.
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod" | sort -u)
  [ -n "$staging" ] || { log "found no staging replace lines in $gomod"; exit 1; }
  {
    echo "module webrecord.local/build-kubernetes"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\).*/\1/p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for mod in $staging; do echo "	$mod => $mod $STAGING_VERSION"; done
    echo ")"
  } >go.mod
  for name in "$@"; do
    log "adding tool k8s.io/kubernetes/cmd/$name"
    retry "$GO" get -tool "k8s.io/kubernetes/cmd/$name@$K8S_VERSION" >&2
  done
  for name in "$@"; do
    log "building $name (k8s.io/kubernetes $K8S_VERSION)"
    # -s -w: no symbol table or DWARF, smaller binaries, less to link.
    nice -n 10 "$GO" build -trimpath -ldflags "-s -w$(k8s_version_ldflags)" -o "$out/$name" "k8s.io/kubernetes/cmd/$name" >&2
  done
}

# build_go_command SRC MODULE VERSION PACKAGE OUT: one command from its own module (its
# dependency versions are not bent by Kubernetes' and vice versa), the module kept in SRC.
build_go_command() {
  local src=$1 module=$2 version=$3 package=$4 out=$5
  rm -rf "$src"
  mkdir -p "$src" "${out%/*}"
  cd "$src"
  "$GO" mod init "webrecord.local/build-${out##*/}" >/dev/null 2>&1
  log "adding tool $module@$version"
  retry "$GO" get -tool "$module@$version" >&2
  log "building $package $version"
  nice -n 10 "$GO" build -trimpath -ldflags "-s -w" -o "$out" "$package" >&2
}

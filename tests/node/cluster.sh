#!/usr/bin/env bash
# A real one-node Kubernetes for the tests: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, a kubelet on containerd, kube-proxy (iptables) and CoreDNS, all binaries from
# provision.sh. Needs root.
#
#   bash tests/node/cluster.sh up [--owner-pid PID]     start (idempotent), print timings
#   bash tests/node/cluster.sh down [--owner-pid PID]   stop everything, undo what up changed
#   bash tests/node/cluster.sh status                   what runs; exit 1 unless all of it
#   bash tests/node/cluster.sh kubeconfig               print the admin kubeconfig's path
#
# State: ${WEBRECORD_NODE_DIR:-/tmp/webrecord-node} (PKI, kubeconfigs, etcd data, containerd's
# images, kubelet dir, logs/, run/*.pid). Each `up` after a `down` is a fresh cluster (new etcd
# data); imported images stay (an image tarball is imported again only when its image ID changed).
#
# Owners: `up --owner-pid PID` registers PID (a pytest session) and starts a watchdog that runs
# `down` once no registered owner is alive, so even a SIGKILLed test run leaves nothing running.
# `down --owner-pid PID` only stops the cluster when no other owner is left; a plain `down` always
# does.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=${WEBRECORD_NODE_DIR:-/tmp/webrecord-node}
if [ -z "${HOME:-}" ]; then HOME=$(getent passwd "$(id -u)" | cut -d: -f6); export HOME; fi
CACHE_ROOT=${WEBRECORD_CACHE:-$HOME/.cache/webrecord}
IMAGES="$CACHE_ROOT/node/images"
RUN="$D/run"
LOGS="$D/logs"
SOCK="$D/containerd/containerd.sock"
PAUSE_IMAGE=registry.k8s.io/pause:3.10.2
COREDNS_IMAGE=webrecord.local/coredns:v1.14.7
NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_IP=10.96.0.10
POD_CIDR=10.244.0.0/24
BRIDGE=wrnode0
API_PORT=6443
ETCD_PORT=2379
ETCD_PEER_PORT=2380
# Start order; `down` goes the other way (clients before the servers they talk to).
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
# What the kubelet, kube-proxy and the CNI bridge may change; `down` puts back what `up` found.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet)
# Fixed places the kubelet, containerd and CNI write to; removed by `down` when `up` found none.
HOST_PATHS=(/var/lib/cni /var/log/containers)

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

kubectl() { "$D/bin/kubectl" --kubeconfig="$D/admin.kubeconfig" "$@"; }
ctr() { command ctr --address "$SOCK" --namespace k8s.io "$@"; }

# ---- processes --------------------------------------------------------------------------------

pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
# A zombie counts as gone: our daemons are re-parented, and their reaper may be slow.
pid_alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]; }

# Running and really ours: the PID file's process still runs the binary we started.
running() {
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && pid_alive "$pid" && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "$1"
}

# start NAME ARGV...: in its own session (a Ctrl-C to the test run does not reach it: `down`
# stops it in order), output to logs/NAME.log, without our lock's descriptor (7).
start() {
  local name=$1 pid i
  shift
  running "$name" && return 0
  setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 7>&- &
  pid=$!
  echo "$pid" >"$RUN/$name.pid"
  # Until the fork has exec'd, /proc shows our own command line and `running` would call the
  # component gone: wait (briefly) for the exec, or for its end.
  for ((i = 0; i < 100; i++)); do
    if running "$name" || ! pid_alive "$pid"; then return 0; fi
    sleep 0.05
  done
}

# exit_report NAME: how NAME ended (its exit status: it is our child) and the end of its log.
exit_report() {
  local name=$1 pid status=0
  pid=$(pid_of "$name")
  if [ -n "$pid" ] && ! pid_alive "$pid"; then
    wait "$pid" 2>/dev/null || status=$?
    if [ "$status" -gt 128 ] && [ "$status" != 255 ]; then
      log "$name (pid $pid) was killed by SIG$(kill -l $((status - 128)))"
    elif [ "$status" != 127 ]; then
      log "$name (pid $pid) exited with status $status"
    fi
  fi
  if [ -s "$LOGS/$name.log" ]; then
    tail -n 30 "$LOGS/$name.log" >&2
  else
    log "$name wrote nothing to $LOGS/$name.log"
  fi
}

# stop NAME [GRACE]: SIGTERM, SIGKILL after GRACE seconds.
stop() {
  local name=$1 grace=${2:-20} pid i
  if running "$name"; then
    pid=$(pid_of "$name")
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 4; i++)); do
      pid_alive "$pid" || break
      sleep 0.25
    done
    if pid_alive "$pid"; then
      log "$name ($pid) still runs after ${grace}s: SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
      while pid_alive "$pid"; do sleep 0.1; done
    fi
  fi
  rm -f "$RUN/$name.pid"
}

# Kubelet restarts wait_for has made, and how many it may make.
KUBELET_RESTARTS=0
KUBELET_RESTARTS_MAX=2

# wait_for WHAT SECONDS COMPONENT CMD...: until CMD succeeds; fails early (with the component's
# log) if the component exits.
wait_for() {
  local what=$1 seconds=$2 component=$3 deadline
  shift 3
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$component" ] && ! running "$component"; then
      exit_report "$component"
      # A real node's kubelet runs under systemd with Restart=always: so does ours, while up
      # waits on it (its earlier logs kept as kubelet.log.N).
      if [ "$component" = kubelet ] && [ "$KUBELET_RESTARTS" -lt "$KUBELET_RESTARTS_MAX" ]; then
        KUBELET_RESTARTS=$((KUBELET_RESTARTS + 1))
        mv "$LOGS/kubelet.log" "$LOGS/kubelet.log.$KUBELET_RESTARTS" 2>/dev/null || true
        log "kubelet exited while waiting for $what: restart $KUBELET_RESTARTS of $KUBELET_RESTARTS_MAX"
        start_kubelet
        continue
      fi
      die "$component exited while waiting for $what"
    fi
    if [ $SECONDS -ge $deadline ]; then
      [ -z "$component" ] || tail -n 30 "$LOGS/$component.log" >&2 || true
      die "timed out after ${seconds}s waiting for $what"
    fi
    sleep 0.5
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- configuration ----------------------------------------------------------------------------

# The address pods reach the API server at: the source address of the default route, else the
# first global IPv4 address (WEBRECORD_NODE_IP overrides).
detect_node_ip() {
  local ip=${WEBRECORD_NODE_IP:-}
  [ -n "$ip" ] || ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1)
  [ -n "$ip" ] || ip=$(ip -4 -o addr show scope global | awk -v br="$BRIDGE" '$2 != br { split($4, a, "/"); print a[1]; exit }')
  [ -n "$ip" ] || die "no non-loopback IPv4 address found (set WEBRECORD_NODE_IP)"
  echo "$ip"
}

# render TEMPLATE OUT: {{NAME}} becomes the value of shell variable NAME.
render() {
  local text name
  text=$(<"$1")
  for name in D SOCK PAUSE_IMAGE COREDNS_IMAGE NODE_NAME DNS_IP POD_CIDR BRIDGE; do
    text=${text//"{{$name}}"/${!name}}
  done
  printf '%s\n' "$text" >"$2"
}

# cert NAME CN O [SAN]: an EC key and a certificate signed by the cluster CA (client-only without SAN).
cert() {
  local name=$1 cn=$2 o=$3 san=${4:-} subj
  subj="/CN=$cn"
  [ -z "$o" ] || subj="/O=$o/CN=$cn"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$san"; else echo "extendedKeyUsage=clientAuth"; fi
  } >"$name.ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout "$name.key" \
    -subj "$subj" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# kubeconfig NAME CERT: certificates inline, so the file can be copied anywhere.
kubeconfig() {
  local b64="base64 -w0"
  cat >"$D/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: webrecord-node
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority-data: $($b64 "$D/pki/ca.crt")}
users:
- name: $1
  user: {client-certificate-data: $($b64 "$D/pki/$2.crt"), client-key-data: $($b64 "$D/pki/$2.key")}
contexts:
- name: webrecord-node
  context: {cluster: webrecord-node, user: $1}
current-context: webrecord-node
EOF
}

# PKI for this node name and address; made again when either changed (a new machine).
pki() {
  local params="node=$NODE_NAME ip=$NODE_IP"
  if [ "$(cat "$D/pki/params" 2>/dev/null)" != "$params" ]; then
    rm -rf "$D/pki"
    mkdir -p "$D/pki"
    (
      cd "$D/pki"
      openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -keyout ca.key \
        -subj "/CN=webrecord-node-ca" -days 3650 -out ca.crt 2>/dev/null
      openssl ecparam -genkey -name prime256v1 -noout -out sa.key
      openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
      cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
      cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
      cert admin kubernetes-admin system:masters
      cert kubelet "system:node:$NODE_NAME" system:nodes
      cert controller-manager system:kube-controller-manager ""
      cert scheduler system:kube-scheduler ""
      cert kube-proxy system:kube-proxy ""
    )
    echo "$params" >"$D/pki/params"
  fi
  local name
  for name in admin kubelet controller-manager scheduler kube-proxy; do kubeconfig "$name" "$name"; done
}

# ---- what up changes on the host, and how down puts it back -----------------------------------

# chains TOOL TABLE: the chains of the CNI plugins, the kubelet and kube-proxy in it.
chains() {
  "$1" -t "$2" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(CNI|KUBE)-/ { print $2 }'
}

save_host() {
  [ -f "$D/host.saved" ] && return 0
  local key tool table path
  {
    for key in "${SYSCTLS[@]}"; do echo "sysctl $key $(sysctl -n "$key" 2>/dev/null || echo -)"; done
    echo "forward-policy $(iptables -S FORWARD | awk '$1 == "-P" { print $3 }')"
    ! ip link show "$BRIDGE" >/dev/null 2>&1 || echo "bridge-existed"
    for tool in iptables ip6tables; do
      for table in filter nat mangle; do chains "$tool" "$table" | sed "s/^/chain $tool $table /"; done
    done
    for path in "${HOST_PATHS[@]}"; do [ -e "$path" ] || echo "absent $path"; done
  } >"$D/host.saved.tmp"
  mv "$D/host.saved.tmp" "$D/host.saved"
}

restore_host() {
  [ -f "$D/host.saved" ] || return 0
  local kind a b tool table chain rule new
  # Chains that were not there before (kube-proxy --cleanup leaves the kubelet's and the CNI
  # plugins'): every jump to them, then their rules, then the chains.
  for tool in iptables ip6tables; do
    for table in filter nat mangle; do
      new=$(chains "$tool" "$table" | while read -r chain; do
        grep -qx "chain $tool $table $chain" "$D/host.saved" || echo "$chain"; done)
      [ -n "$new" ] || continue
      for chain in $new; do
        # (grep finds nothing when no rule jumps there: not an error under pipefail)
        "$tool" -t "$table" -S | { grep -E -- "-j $chain( |\$)" || true; } | sed 's/^-A /-D /' |
          while read -r rule; do eval "$tool -t $table $rule" || true; done
      done
      for chain in $new; do "$tool" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $new; do "$tool" -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
  grep -qx bridge-existed "$D/host.saved" || ip link del "$BRIDGE" 2>/dev/null || true
  while read -r kind a b; do
    case $kind in
      sysctl) [ "$b" = - ] || [ "$(sysctl -n "$a" 2>/dev/null)" = "$b" ] || sysctl -q -w "$a=$b" || true ;;
      forward-policy) [ -z "$a" ] || iptables -P FORWARD "$a" ;;
      absent) rm -rf "$a" ;;
    esac
  done <"$D/host.saved"
  rm -f "$D/host.saved"
}

# Mounts under the node dir (the kubelet's own bind mount, volumes, container rootfs, shm),
# deepest first.
unmount_all() {
  local mnt
  awk -v d="$D/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r mnt; do
      mnt=$(printf '%b' "${mnt//\\/\\0}") # mountinfo escapes as \040: %b wants \0040
      umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    done
}

# The kubelet's cgroups (cgroupfs driver: kubepods/ under every v1 controller), deepest first.
remove_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/kubepods; do
    [ -d "$dir" ] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

# ---- images -----------------------------------------------------------------------------------

# image_ids TAR: "REF sha256:CONFIG" per image in a docker-archive, cached by the file's identity
# (reading a 1.4 GB archive's manifest means reading the whole file).
image_ids() {
  local tar=$1 key cache
  key=$(stat -c '%s %Y %i' "$tar")
  cache="$D/images/$(basename "$tar").ids"
  if [ "$(head -n 1 "$cache" 2>/dev/null)" != "$key" ]; then
    mkdir -p "$D/images"
    { echo "$key"; { tar -xOf "$tar" manifest.json 2>/dev/null || log "$tar: not a docker-archive (no manifest.json), skipped"; } | python3 -c '
import json, sys
text = sys.stdin.read()
def full(ref):  # containerd stores docker.io/library/x:t for x:t
    first = ref.split("/")[0]
    if "/" not in ref:
        return "docker.io/library/" + ref
    if "." in first or ":" in first or first == "localhost":
        return ref
    return "docker.io/" + ref
for entry in json.loads(text) if text.strip() else []:
    digest = entry["Config"].split("/")[-1].removesuffix(".json")
    for ref in entry.get("RepoTags") or []:
        print(full(ref), "sha256:" + digest)
'; } >"$cache.tmp"
    mv "$cache.tmp" "$cache"
  fi
  tail -n +2 "$cache"
}

# The image ID (config digest) containerd has for REF, empty if none.
node_image_id() {
  local digest
  digest=$(ctr images ls "name==$1" 2>/dev/null | awk 'NR == 2 { print $3 }')
  [ -n "$digest" ] || return 0
  ctr content get "$digest" 2>/dev/null | python3 -c '
import json, sys
doc = json.load(sys.stdin)
print(doc.get("config", {}).get("digest", ""))' 2>/dev/null || true
}

import_images() {
  local tar ref id stale t
  shopt -s nullglob
  for tar in "$IMAGES"/*.tar; do
    stale=0
    while read -r ref id; do
      [ "$(node_image_id "$ref")" = "$id" ] || stale=1
    done < <(image_ids "$tar")
    [ $stale = 1 ] || continue
    t=$(now)
    ctr images import "$tar" >/dev/null
    log "imported $(basename "$tar") ($(du -h "$tar" | cut -f1)) in $(since "$t") s"
  done
  shopt -u nullglob
}

# ---- up ---------------------------------------------------------------------------------------

start_kubelet() {
  start kubelet "$D/bin/kubelet" --config="$D/kubelet.yaml" --kubeconfig="$D/kubelet.kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$D/kubelet" --v=1
}

# Owners file: "PID STARTTIME" per owning process (the start time tells a reused PID apart), or
# "manual" for an `up` from a shell, which only a plain `down` ends.
owner_alive() {
  [ "$1" = manual ] || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20)" = "$2" ]
}

add_owner() {
  local start
  if [ "$1" = manual ]; then
    grep -qx manual "$D/owners" 2>/dev/null || echo manual >>"$D/owners"
    return 0
  fi
  start=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20)
  [ -n "$start" ] || die "no process $1"
  echo "$1 $start" >>"$D/owners"
  if ! running watch; then
    setsid bash "$HERE/cluster.sh" watch </dev/null >>"$LOGS/watch.log" 2>&1 7>&- &
    echo $! >"$RUN/watch.pid"
  fi
}

live_owners() {
  local pid start
  [ -f "$D/owners" ] || return 0
  while read -r pid start; do owner_alive "$pid" "$start" && echo "$pid${start:+ $start}"; done <"$D/owners"
}

up() {
  local owner=${1:-} t0 t fresh=1 name bin
  t0=$(now)
  [ "$(id -u)" = 0 ] || die "needs root"
  mkdir -p "$D" "$RUN" "$LOGS"
  exec 7>"$D/.lock"
  flock 7
  for name in "${COMPONENTS[@]}"; do ! running "$name" || fresh=0; done
  # Owners of an earlier cluster that is gone do not own this one.
  [ $fresh = 0 ] || rm -f "$D/owners"
  add_owner "${owner:-manual}"

  t=$(now)
  bin=$(bash "$HERE/provision.sh")
  ln -sfn "$bin" "$D/bin"
  log "binaries and images ready in $(since "$t") s ($bin)"

  NODE_IP=$(detect_node_ip)
  save_host
  if [ $fresh = 1 ]; then
    for port in $API_PORT $ETCD_PORT $ETCD_PEER_PORT 10250 10256 10257 10259; do
      port_free "$port" || die "port $port is in use: another cluster runs on this machine"
    done
    rm -rf "$D/etcd" "$D/kubelet" "$D/pod-logs"
  fi
  mkdir -p "$D/containerd" "$D/cni/net.d" "$D/kubelet" "$D/pod-logs"
  # Node preparation a platform team does once per node: the chart's Localhost seccomp profile
  # for recorder pods with Chromium's sandbox (charts/webrecord values recorder.seccompProfile).
  install -D -m 0644 "$HERE/../../charts/webrecord/files/chromium-seccomp.json" \
    "$D/kubelet/seccomp/webrecord/chromium.json"
  # Pods reach each other and the Services through the host: forwarding, and bridged traffic
  # through iptables (kube-proxy's rules), as every CNI bridge setup needs.
  sysctl -q -w net.ipv4.ip_forward=1
  [ -e /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null || true
  sysctl -q -w net.bridge.bridge-nf-call-iptables=1 || log "no br_netfilter: pod-to-Service on one bridge may fail"
  pki
  render "$HERE/cluster/containerd.toml" "$D/containerd.toml"
  render "$HERE/cluster/cni.conflist" "$D/cni/net.d/10-webrecord-node.conflist"
  render "$HERE/cluster/kubelet.yaml" "$D/kubelet.yaml"
  render "$HERE/cluster/kube-proxy.yaml" "$D/kube-proxy.yaml"
  render "$HERE/cluster/coredns.yaml" "$D/coredns.yaml"

  t=$(now)
  start containerd /usr/bin/containerd --config "$D/containerd.toml"
  wait_for "containerd" 60 containerd ctr version
  log "containerd ready in $(since "$t") s"
  t=$(now)
  import_images
  log "images in the node in $(since "$t") s"

  t=$(now)
  local url=http://127.0.0.1:$ETCD_PORT peer=http://127.0.0.1:$ETCD_PEER_PORT P=$D/pki
  start etcd "$D/bin/etcd" --name=webrecord-node --data-dir="$D/etcd" \
    --listen-client-urls="$url" --advertise-client-urls="$url" --listen-peer-urls="$peer" \
    --initial-advertise-peer-urls="$peer" --initial-cluster="webrecord-node=$peer" \
    --unsafe-no-fsync --log-level=warn
  # A test cluster's data is thrown away: no fsync, the slow part of etcd.
  wait_for "etcd" 60 etcd curl -sf "$url/health"
  start kube-apiserver "$D/bin/kube-apiserver" --etcd-servers="$url" --bind-address=0.0.0.0 \
    --advertise-address="$NODE_IP" --secure-port=$API_PORT --cert-dir="$D/apiserver-certs" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range=$SERVICE_CIDR --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --allow-privileged=true --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 120 kube-apiserver kubectl get --raw /readyz
  log "etcd + kube-apiserver ready in $(since "$t") s (advertising $NODE_IP)"

  t=$(now)
  start kube-controller-manager "$D/bin/kube-controller-manager" --kubeconfig="$D/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$D/controller-manager.kubeconfig" --authorization-kubeconfig="$D/controller-manager.kubeconfig" \
    --leader-elect=false --use-service-account-credentials=true --service-account-private-key-file="$P/sa.key" \
    --root-ca-file="$P/ca.crt" --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
    --controllers='*,-nodeipam' --bind-address=127.0.0.1 --v=1
  start kube-scheduler "$D/bin/kube-scheduler" --kubeconfig="$D/scheduler.kubeconfig" \
    --authentication-kubeconfig="$D/scheduler.kubeconfig" --authorization-kubeconfig="$D/scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --v=1
  start_kubelet
  start kube-proxy "$D/bin/kube-proxy" --config="$D/kube-proxy.yaml" --v=1
  wait_for "node $NODE_NAME Ready" 120 kubelet \
    kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  log "node Ready in $(since "$t") s"

  t=$(now)
  kubectl apply -f "$D/coredns.yaml" >/dev/null
  wait_for "CoreDNS" 180 kubelet kubectl -n kube-system rollout status deploy/coredns --timeout=5s
  log "CoreDNS ready in $(since "$t") s"
  log "up in $(since "$t0") s; KUBECONFIG=$D/admin.kubeconfig"
}

# ---- down -------------------------------------------------------------------------------------

# Delete every pod while the kubelet still runs, so it unmounts volumes, stops the sandboxes
# (CNI teardown) and ends the shims itself. The controllers stop first: nothing is recreated.
delete_pods() {
  running kubelet && kubectl get --raw /readyz >/dev/null 2>&1 || return 0
  stop kube-controller-manager
  stop kube-scheduler
  local deadline=$((SECONDS + 60))
  kubectl delete pods --all --all-namespaces --wait=false --grace-period=10 >/dev/null 2>&1 || true
  until [ -z "$(kubectl get pods -A -o name 2>/dev/null)" ]; do
    if [ $SECONDS -ge $deadline ]; then
      log "pods still there after 60 s: force-deleting"
      kubectl delete pods --all --all-namespaces --force --grace-period=0 >/dev/null 2>&1 || true
      break
    fi
    sleep 1
  done
}

# Containers the kubelet did not clean up, and their shims: gone before containerd stops.
delete_containers() {
  local id pid
  if running containerd; then
    for id in $(ctr tasks ls -q 2>/dev/null); do
      ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
      ctr tasks delete --force "$id" >/dev/null 2>&1 || true
    done
    for id in $(ctr containers ls -q 2>/dev/null); do ctr containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  # Shims of our containerd only: its socket is on their command line.
  for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $SOCK( |\$)" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
}

down() {
  local owner=${1:-} others name pid
  mkdir -p "$D" "$RUN"
  exec 7>"$D/.lock"
  flock 7
  if [ -n "$owner" ] && [ -f "$D/owners" ]; then
    others=$(live_owners | awk -v me="$owner" '$1 != me')
    if [ -n "$others" ]; then
      printf '%s\n' "$others" >"$D/owners"
      log "still used by $(echo "$others" | awk '{ print $1 }' | paste -sd' ') (plain \`down\` stops it anyway): left running"
      return 0
    fi
  fi
  local t0
  t0=$(now)
  if [ -f "$D/host.saved" ] || running containerd || running etcd || running kube-apiserver; then
    stop_cluster
  fi
  rm -f "$D/owners"
  # The watchdog last (unless it is what runs this).
  pid=$(pid_of watch)
  if [ -n "$pid" ] && [ "$pid" != $$ ] && running watch; then kill "$pid" 2>/dev/null || true; fi
  rm -f "$RUN/watch.pid"
  log "down in $(since "$t0") s"
}

stop_cluster() {
  local name
  delete_pods
  for name in kube-proxy kubelet kube-scheduler kube-controller-manager; do stop "$name"; done
  delete_containers
  # The API server hangs on shutdown once etcd is gone: stop it first, SIGKILL after 15 s.
  stop kube-apiserver 15
  stop etcd
  stop containerd
  delete_containers
  [ ! -x "$D/bin/kube-proxy" ] || "$D/bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
  unmount_all
  remove_cgroups
  restore_host
  rm -rf "$D/etcd" "$D/kubelet" "$D/pod-logs" "$D/cni/ipam"
  rm -f /var/lib/cni/results/webrecord-node-* 2>/dev/null || true
}

# The watchdog: `down` once no registered owner is alive.
watch() {
  while [ -n "$(live_owners)" ]; do sleep 2; done
  log "no owner left: stopping the cluster"
  down
}

status() {
  local name ok=0
  for name in "${COMPONENTS[@]}"; do
    if running "$name"; then echo "$name running (pid $(pid_of "$name"))"; else echo "$name stopped"; ok=1; fi
  done
  if [ $ok = 0 ]; then kubectl get nodes -o wide && kubectl get pods -A; fi
  return $ok
}

usage() { sed -n '6,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# Sourced (tests/node/test_cluster_script.py): the functions only.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

cmd=${1:-}
shift || true
owner=""
if [ "${1:-}" = --owner-pid ]; then owner=${2:?--owner-pid needs a PID}; fi
case $cmd in
  up) up "$owner" ;;
  down) down "$owner" ;;
  status) status ;;
  kubeconfig) echo "$D/admin.kubeconfig" ;;
  watch) watch ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# The Docker engine of the node tests: Debian's docker.io, a dockerd started and stopped here.
#
#   tests/node/docker.sh up      install what is missing (apt), start dockerd unless one answers
#   tests/node/docker.sh down    stop the dockerd that `up` started (by PID), restore FORWARD
#   tests/node/docker.sh status  exit 0 when a Docker engine answers
#
# State in ${WEBRECORD_NODE_DIR:-/tmp/webrecord-node}: dockerd.pid, dockerd.log and
# dockerd.forward (the iptables FORWARD policy before dockerd set it to DROP). Idempotent.
# Callers that must leave a running engine alone check `status` before `up` and call `down`
# only when they started it. Debian's client /usr/bin/docker is used on purpose: a newer
# /usr/local/bin/docker may be first on PATH.
set -euo pipefail
NODE_DIR=${WEBRECORD_NODE_DIR:-/tmp/webrecord-node}
PID_FILE=$NODE_DIR/dockerd.pid
LOG=$NODE_DIR/dockerd.log
FORWARD_FILE=$NODE_DIR/dockerd.forward
DOCKER=/usr/bin/docker
PACKAGES=(docker.io debootstrap containernetworking-plugins containerd)
# dockerd never outlives a forgotten `down` by more than this (seconds, or with an s/m/h suffix).
LIFETIME=${WEBRECORD_DOCKERD_LIFETIME:-6h}

log() { echo "docker.sh: $*" >&2; }
answers() { [ -x "$DOCKER" ] && timeout 20 "$DOCKER" info >/dev/null 2>&1; }
ours() {   # the PID file names a live dockerd
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(ps -o comm= -p "$pid")" = dockerd ]
}
forward_policy() { iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3; exit}'; }

install_missing() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  # Lists may be stale or absent on a fresh machine: update once, then install.
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

up() {
  install_missing
  if answers; then return 0; fi
  if ! ours; then
    [ -f "$FORWARD_FILE" ] || forward_policy > "$FORWARD_FILE"
    log "starting dockerd (log $LOG)"
    # dockerd writes its own PID (not that of the timeout wrapper) into the PID file.
    # setsid: the daemon does not die with the caller's terminal or process group.
    setsid timeout --kill-after=30 "$LIFETIME" /usr/sbin/dockerd --pidfile "$PID_FILE" \
      >>"$LOG" 2>&1 </dev/null 9>&- &
  fi
  local i
  for i in $(seq 120); do
    answers && { log "dockerd ready ($(cat "$PID_FILE" 2>/dev/null))"; return 0; }
    sleep 0.5
  done
  log "dockerd did not answer within 60 s; last log lines:"
  tail -20 "$LOG" >&2 || true
  return 1
}

down() {
  if ours; then
    local pid i
    pid=$(cat "$PID_FILE")
    log "stopping dockerd $pid"
    kill -TERM "$pid"
    # dockerd stops its containers and its managed containerd first: give it time.
    for i in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd $pid ignored SIGTERM for 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      # Its managed containerd would be left behind.
      local cpid
      cpid=$(cat /var/run/docker/containerd/containerd.pid 2>/dev/null || true)
      if [ -n "$cpid" ] && [ "$(ps -o comm= -p "$cpid" 2>/dev/null)" = containerd ]; then
        kill -TERM "$cpid" 2>/dev/null || true
      fi
    fi
    rm -f "$PID_FILE"
  fi
  # dockerd sets the FORWARD policy to DROP; put back what was there before it started.
  if [ -f "$FORWARD_FILE" ]; then
    local before
    before=$(cat "$FORWARD_FILE")
    if [ -n "$before" ] && [ "$(forward_policy)" != "$before" ] && ! ours; then
      iptables -P FORWARD "$before" && log "iptables FORWARD policy back to $before"
    fi
    rm -f "$FORWARD_FILE"
  fi
}

mkdir -p "$NODE_DIR"
# One caller at a time: the cluster harness and the image build may both call up/down.
exec 9>"$NODE_DIR/docker.lock"
flock -w 120 9
case ${1:-} in
  up) up ;;
  down) down ;;
  status) answers ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Installs what webrecord needs on a bare Debian machine: system packages and the Python package.
# Idempotent: a second run only checks. Usage: bash scripts/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(chromium xvfb xserver-xorg-core xserver-xorg-video-dummy pulseaudio ffmpeg fonts-noto-cjk fonts-liberation fonts-noto-color-emoji x11-utils)
# The node tests: a Docker engine to build the recorder image, debootstrap for its base image,
# containerd and CNI plugins for the one-node cluster.
if [ "${1:-}" = "--test" ]; then
  APT_PACKAGES+=(docker.io debootstrap containernetworking-plugins containerd)
  # Live output receivers (tests/recorder/test_live.py): nginx-rtmp, nginx's stream module
  # (TLS in front of it: rtmps://) and an SRT listener.
  APT_PACKAGES+=(libnginx-mod-rtmp libnginx-mod-stream srt-tools)
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
extra=""; [ "${1:-}" = "--test" ] && extra="[test]"
$PY -m pip install -q -U pip
# The versions of requirements/lock.txt (tested together); README says how to refresh it.
$PY -m pip install -q -e ".${extra}" -c requirements/lock.txt

#!/usr/bin/env bash
# The test command (README and .ci/run): installs everything, then runs the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/recorder -k pause`.
#
# What it provides before pytest (each step is skipped when its output is already there):
# - Debian and Python packages (scripts/install.sh --test), incl. the Docker engine and containerd;
# - kube-apiserver, etcd, kubectl, kube-controller-manager built from Go modules into
#   ~/.cache/webrecord (tests/controlplane/provision.sh);
# - kubelet, kube-scheduler, kube-proxy, CoreDNS and the pause image for the real one-node cluster
#   (tests/node/provision.sh);
# - the recorder image, built from recorder-image/Dockerfile by a real Docker engine on a locally
#   made Debian base (tests/node/image.sh starts dockerd and stops it again).
# The one-node cluster itself is started by the tests that need it (tests/node/plugin.py) and
# stopped when pytest ends.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { local s; s=$(date +%s); "$@"; echo "test.sh: $1 ${2:-} took $(( $(date +%s) - s )) s" >&2; }
step bash scripts/install.sh --test
KUBEBUILDER_ASSETS=$(bash tests/controlplane/provision.sh); export KUBEBUILDER_ASSETS
step bash tests/node/provision.sh >/dev/null
step bash tests/node/image.sh >/dev/null
exec timeout --kill-after=30 70m python3 -m pytest -p no:cacheprovider -ra "$@"

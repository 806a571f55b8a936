#!/usr/bin/env bash
# The test command (README and .ci/run): installs everything, then runs the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/recorder -k pause`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
KUBEBUILDER_ASSETS=$(bash tests/controlplane/provision.sh); export KUBEBUILDER_ASSETS # kube-apiserver, etcd, kubectl: built once into ~/.cache/webrecord
exec timeout --kill-after=30 80m python3 -m pytest -p no:cacheprovider -ra "$@"

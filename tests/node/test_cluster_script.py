"""cluster.sh's own supervision, without a cluster: a kubelet that dies while `up` waits on it
is reported (how it ended, its log) and started again, at most twice, as systemd's
Restart=always does on a real node. The kubelet here is a stand-in script that kills itself."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

CLUSTER_SH = Path(__file__).parent / "cluster.sh"

# A kubelet that SIGKILLs itself on its first DIES starts (saying so first when LOUD=1), then
# stays up and makes the condition `up` waits for come true.
FAKE_KUBELET = """#!/usr/bin/env bash
n=$(cat "$D/starts" 2>/dev/null || echo 0)
echo $((n + 1)) >"$D/starts"
if [ "$n" -lt "$DIES" ]; then
  [ "$LOUD" = 0 ] || echo "fake kubelet: start $n fails"
  kill -9 $$
fi
touch "$D/ready"
exec -a kubelet-stand-in sleep 60
"""

# The part of `up` under test: start the kubelet, wait on a condition it brings about.
WAIT = """set -euo pipefail
source "$CLUSTER_SH"
mkdir -p "$RUN" "$LOGS"
NODE_NAME=stand-in NODE_IP=127.0.0.1
start_kubelet
wait_for "the stand-in" 30 kubelet test -e "$D/ready"
log "waited"
"""


def _run(tmp_path: Path, dies: int, loud: bool) -> subprocess.CompletedProcess[str]:
    node_dir = tmp_path / "node"
    (node_dir / "bin").mkdir(parents=True)
    kubelet = node_dir / "bin" / "kubelet"
    kubelet.write_text(FAKE_KUBELET)
    kubelet.chmod(0o755)
    env = dict(os.environ, WEBRECORD_NODE_DIR=str(node_dir), D=str(node_dir), DIES=str(dies),
               LOUD="1" if loud else "0", CLUSTER_SH=str(CLUSTER_SH))
    try:
        return subprocess.run(["timeout", "60", "bash", "-c", WAIT], env=env, capture_output=True,
                              text=True, timeout=90, check=False)
    finally:
        pid_file = node_dir / "run" / "kubelet.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_kubelet_killed_once_is_reported_and_restarted(tmp_path: Path) -> None:
    result = _run(tmp_path, dies=1, loud=True)
    assert result.returncode == 0, result.stderr
    assert "kubelet (pid " in result.stderr and "was killed by SIGKILL" in result.stderr
    assert "fake kubelet: start 0 fails" in result.stderr  # the end of its log, shown
    assert "restart 1 of 2" in result.stderr and "restart 2 of 2" not in result.stderr
    assert "cluster: waited" in result.stderr
    logs = tmp_path / "node" / "logs"
    assert "start 0 fails" in (logs / "kubelet.log.1").read_text()  # the first log is kept
    assert (tmp_path / "node" / "starts").read_text().strip() == "2"


@pytest.mark.parametrize("loud", [True, False])
def test_a_kubelet_that_keeps_dying_fails_up_after_two_restarts(tmp_path: Path, loud: bool) -> None:
    result = _run(tmp_path, dies=5, loud=loud)
    assert result.returncode == 1
    assert "restart 2 of 2" in result.stderr
    assert "cluster: kubelet exited while waiting for the stand-in" in result.stderr.splitlines()[-1]
    assert result.stderr.count("was killed by SIGKILL") == 3
    if not loud:
        assert "kubelet wrote nothing to" in result.stderr
    assert (tmp_path / "node" / "starts").read_text().strip() == "3"

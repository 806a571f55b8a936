"""The recorder judges RecordURL itself, before it starts anything: a task that never passed
the adapter (a WebRecording made with kubectl, a task file written by hand) is refused the
same way. Real `webrecord recorder` processes; the forbidden address is loopback with loopback
refused, and the forbidden server must see no request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .egress_servers import HitServer

pytestmark = pytest.mark.timeout(120)


def _run_recorder(tmp_path: Path, url: str, allow_loopback: bool) -> dict:
    task = {"taskId": "wr-attack", "spec": {"recordUrl": url, "maxDurationLimit": 5}}
    # Written as a file, not through the models: what a hand-made task file would hold.
    (tmp_path / "task.json").write_text(json.dumps(task))
    env = {**os.environ, "WEBRECORD_EGRESS_ALLOW_LOOPBACK": str(allow_loopback).lower()}
    proc = subprocess.run(
        [sys.executable, "-m", "webrecord.cli", "recorder", "--task", str(tmp_path / "task.json"),
         "--work-dir", str(tmp_path / "work")],
        env=env, capture_output=True, text=True, timeout=90)
    status_file = tmp_path / "work" / "status.json"
    assert status_file.exists(), proc.stderr[-2000:]
    return json.loads(status_file.read_text())


def test_recorder_refuses_a_refused_address(tmp_path: Path, forbidden: HitServer) -> None:
    status = _run_recorder(tmp_path, f"http://127.0.0.1:{forbidden.port}/", allow_loopback=False)
    assert status["status"] == "finished"
    assert status["result"]["errorCode"] == "InvalidParam", status
    assert status["result"]["errorMessage"] == (
        f"RecordURL: host '127.0.0.1' resolves to 127.0.0.1, a loopback address")
    assert forbidden.hits == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "user:pw@127.0.0.1"])
def test_recorder_refuses_what_it_cannot_judge(tmp_path: Path, forbidden: HitServer,
                                               host: str) -> None:
    # Even with loopback allowed: the task file itself is refused (exit 2, nothing runs).
    task = {"taskId": "wr-attack",
            "spec": {"recordUrl": f"http://{host}:{forbidden.port}/", "maxDurationLimit": 5}}
    (tmp_path / "task.json").write_text(json.dumps(task))
    proc = subprocess.run(
        [sys.executable, "-m", "webrecord.cli", "recorder", "--task", str(tmp_path / "task.json"),
         "--work-dir", str(tmp_path / "work")],
        env={**os.environ, "WEBRECORD_EGRESS_ALLOW_LOOPBACK": "true"},
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "spec.recordUrl: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert forbidden.hits == []

"""`webrecord recorder --standby`: a warm slot started before its task, claimed once over its
control endpoint, then running the task exactly as `--task` does (real Xvfb, PulseAudio,
Chromium, ffmpeg)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from .media import assert_av, mean_volume_db
from .test_cli import _stop

CLI = [sys.executable, "-m", "webrecord.cli"]
AUTH = {"Authorization": "Bearer s3cret"}
EXIT_UNUSABLE = 3


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        assert proc.poll() is None, f"slot exited early ({proc.returncode}): {proc.stderr.read()}"
        time.sleep(0.05)
    raise AssertionError(f"{path} not written")


def _wait_status(path: Path, value: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            status = json.loads(path.read_text())
            if status["status"] == value:
                return status
        time.sleep(0.05)
    raise AssertionError(f"status {value} not reached: {path.read_text() if path.exists() else None}")


def _slot(tmp_path: Path, width: int = 640, height: int = 360, lifeline: bool = False,
          **env: str) -> tuple[subprocess.Popen, str]:
    (tmp_path / "token").write_text("s3cret\n")
    argv = [*CLI, "recorder", "--standby", "--work-dir", str(tmp_path / "slot"),
            "--token-file", str(tmp_path / "token"), "--port-file", str(tmp_path / "port"),
            "--width", str(width), "--height", str(height)]
    if lifeline:
        argv.append("--lifeline-stdin")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if lifeline else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    port = _wait_file(tmp_path / "port", proc)
    return proc, f"http://127.0.0.1:{port}"


def _task(task_id: str, url: str, width: int = 640, height: int = 360, **spec) -> dict:
    return {"taskId": task_id, "createTime": int(time.time()),
            "spec": {"recordUrl": url, "width": width, "height": height, **spec}}


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_claimed_slot_records_its_task_and_serves_no_second(tmp_path, page_server):
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc, base = _slot(tmp_path, WEBRECORD_OUTPUT_DIR=str(outdir))
    task_dir = tmp_path / "task"
    url = f"{page_server}/recorder_sound.html"
    try:
        # Idle: alive, nothing to report, every route but /healthz behind the token.
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"ok": True}
        r = requests.get(f"{base}/status", headers=AUTH, timeout=5)
        assert r.status_code == 409 and r.json()["errorCode"] == "NotClaimed"
        claim = {"task": _task("task-a", url), "workDir": str(task_dir / "work"),
                 "statusFile": str(task_dir / "status.json")}
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = requests.post(f"{base}/claim", json=claim, headers=headers, timeout=5)
            assert r.status_code == 401, r.text
        # Bad claims name the field and leave the slot unclaimed.
        for bad, field in (({"task": _task("t", url, width=9999)}, "task: spec.width: must be <= 2560"),
                           ({"task": _task("t", url), "workDir": "rel/dir"}, "workDir: must be an absolute path"),
                           ({"task": _task("t", url), "env": {"WEBRECORD_OUTPUT_DIR": "/"}},
                            "env.WEBRECORD_OUTPUT_DIR: not a per-task setting"),
                           ({"workDir": "/tmp"}, "task: is required")):
            r = requests.post(f"{base}/claim", json=bad, headers=AUTH, timeout=5)
            assert r.status_code == 400 and field in r.json()["errorMessage"], (bad, r.text)
        r = requests.post(f"{base}/claim", json=claim, headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["taskId"] == "task-a" and r.json()["status"] in ("normal", "recording")
        # One task per slot: any further claim is refused, whatever it carries.
        r = requests.post(f"{base}/claim", json={**claim, "task": _task("task-b", url)},
                          headers=AUTH, timeout=5)
        assert r.status_code == 409 and r.json()["errorCode"] == "AlreadyClaimed"
        assert "task-a" in r.json()["errorMessage"]
        _wait_status(task_dir / "status.json", "recording")
        time.sleep(1.5)
        r = requests.post(f"{base}/control", json={"action": "Pause", "seq": 1}, headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "paused", r.text
        r = requests.post(f"{base}/control", json={"action": "Resume", "seq": 2}, headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "recording", r.text
        time.sleep(1.5)
        r = requests.post(f"{base}/control", json={"action": "Stop", "seq": 3}, headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
        assert proc.wait(60) == 0, proc.stderr.read()  # the process ends with its one task
    finally:
        _stop(proc)
    final = json.loads((task_dir / "status.json").read_text())
    assert final["status"] == "finished" and "errorCode" not in final["result"], final
    assert final["taskId"] == "task-a" and final["lastActionSeq"] == 3
    video = final["result"]["videos"][0]
    delivered = [p for p in outdir.rglob("*") if p.name == video["filename"]]
    assert delivered and delivered[0].stat().st_size == video["fileSize"]
    info = assert_av(delivered[0], 640, 360)
    assert 2.0 <= info["duration"] <= 6.0, info
    assert mean_volume_db(delivered[0]) > -30  # the page's sound reached the slot's sink
    assert list((task_dir / "work" / "segments").glob("seg_*.ts"))
    assert not (tmp_path / "slot" / "profile").exists()  # the temporary profile is gone


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_claim_of_another_size_gets_a_display_of_that_size(tmp_path, page_server):
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc, base = _slot(tmp_path, 480, 270, WEBRECORD_OUTPUT_DIR=str(outdir))
    try:
        claim = {"task": _task("task-r", f"{page_server}/recorder_sound.html", 640, 360,
                               maxDurationLimit=2),
                 "env": {"WEBRECORD_START_PAUSED": "false"}}
        r = requests.post(f"{base}/claim", json=claim, headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        _stop(proc)
    final = json.loads((tmp_path / "slot" / "status.json").read_text())
    assert final["status"] == "finished" and "errorCode" not in final["result"], final
    path = next(outdir.rglob(final["result"]["videos"][0]["filename"]))
    assert_av(path, 640, 360)


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_slot_whose_chromium_dies_while_idle_exits_unusable(tmp_path):
    proc, base = _slot(tmp_path)
    try:
        chromium = [p for p in _tree(proc.pid) if p.name() in ("chromium", "chrome")
                    and "--type=" not in " ".join(p.cmdline())]
        assert chromium, [(p.pid, p.name()) for p in _tree(proc.pid)]
        tree = _tree(proc.pid)
        chromium[0].kill()
        assert proc.wait(30) == EXIT_UNUSABLE, proc.stderr.read()
        with pytest.raises(requests.ConnectionError):  # nobody can claim it any more
            requests.post(f"{base}/claim", json={}, headers=AUTH, timeout=2)
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, alive
    finally:
        _stop(proc)


@pytest.mark.browser
@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["lifeline", "sigterm"])
def test_idle_slot_ends_with_its_spawner_and_on_sigterm(tmp_path, how):
    proc, base = _slot(tmp_path, lifeline=how == "lifeline")
    try:
        tree = _tree(proc.pid)
        assert len(tree) >= 4, tree  # the worker, the X server, PulseAudio, Chromium at least
        if how == "lifeline":
            proc.stdin.close()  # what the kernel does when the spawner dies, even killed hard
        else:
            proc.terminate()
        assert proc.wait(30) == 0, proc.stderr.read()
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, alive
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/healthz", timeout=2)
    finally:
        _stop(proc)

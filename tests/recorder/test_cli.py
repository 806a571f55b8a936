"""`webrecord record` and `webrecord recorder` as a user and a supervisor run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .media import assert_av, mean_volume_db

CLI = [sys.executable, "-m", "webrecord.cli"]
URL = "http://127.0.0.1:9/page.html"
KEY = "00112233445566778899aabbccddeeff"


def run_cli(*args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("args, message", [
    (["record", "--width", "3000", URL], "--width: must be <= 2560"),
    (["record", "--height", "-1", URL], "--height: must be >= 0"),
    (["record", "--duration", "40000", URL], "--duration: must be <= 36000"),
    (["record", "ftp://example.com/"], "URL: must be an http:// or https:// URL"),
    (["record", URL, "--muxer", "hls", "--encrypt-key", "abc"],
     "--encrypt-key: must be 32 hexadecimal digits"),
    (["record", URL, "--encrypt-key", KEY], "--encrypt-key: encryptKey requires muxer 'hls'"),
    (["record"], "URL: is required"),
    (["record", URL, "--manual-start-timeout", "0"], "--manual-start-timeout: must be > 0"),
    (["record", URL, "-o", "/no/such/dir/x.mp4"], "--output: directory /no/such/dir does not exist"),
])
def test_invalid_record_options_name_the_field(args, message):
    done = run_cli(*args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_recorder_task_names_the_field(tmp_path):
    missing = run_cli("recorder", "--task", str(tmp_path / "nope.json"), "--work-dir", str(tmp_path))
    assert missing.returncode == 2 and "--task:" in missing.stderr and "Traceback" not in missing.stderr
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"taskId": "t1", "spec": {"recordUrl": URL, "width": 9999}}))
    bad = run_cli("recorder", "--task", str(task), "--work-dir", str(tmp_path))
    assert bad.returncode == 2, bad
    assert "spec.width: must be <= 2560" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_record_demo_stops_cleanly_on_ctrl_c(tmp_path):
    out = tmp_path / "demo.mp4"
    proc = subprocess.Popen([*CLI, "record", "--demo", "--width", "640", "--height", "360",
                             "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # progress: one line a second when not a tty
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("recording") and "recorded 00:03" in line:
                break
        assert any(line.startswith("recording") for line in lines), lines
        assert any("segments 1" in line and " KB" in line for line in lines), lines
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    record = json.loads(stdout.strip().splitlines()[-1])
    assert record["status"] == "finished" and record["path"] == str(out)
    video = record["videos"][0]
    assert video["filename"] == "demo.mp4" and video["fileSize"] == out.stat().st_size
    info = assert_av(out, 640, 360)
    assert abs(info["duration"] - video["fileDuration"]) < 0.01
    assert info["duration"] >= 2.5
    assert mean_volume_db(out) > -30
    assert not [p for p in tmp_path.iterdir() if p.name != "demo.mp4"]  # work dir removed


def _wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.1)
    raise AssertionError(f"{path} not written")


def _status(path: Path) -> dict:
    return json.loads(path.read_text())


def _wait_status(path: Path, value: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            st = _status(path)
            if st["status"] == value:
                return st
        time.sleep(0.1)
    raise AssertionError(f"status {value} not reached: {_status(path) if path.exists() else None}")


def _start_recorder(tmp_path: Path, url: str, **env) -> tuple[subprocess.Popen, Path, str]:
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"taskId": "task-1", "createTime": int(time.time()),
                                "spec": {"recordUrl": url, "width": 640, "height": 360}}))
    (tmp_path / "token").write_text("s3cret\n")
    work = tmp_path / "work"
    proc = subprocess.Popen(
        [*CLI, "recorder", "--task", str(task), "--work-dir", str(work),
         "--token-file", str(tmp_path / "token"), "--port-file", str(tmp_path / "port")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env})
    port = _wait_file(tmp_path / "port")
    return proc, work / "status.json", f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_recorder_control_endpoint_and_delivery(tmp_path, page_server):
    outdir = tmp_path / "out"
    outdir.mkdir()
    segstore = tmp_path / "segstore"
    proc, status_file, base = _start_recorder(
        tmp_path, f"{page_server}/recorder_sound.html", WEBRECORD_OUTPUT_DIR=str(outdir),
        WEBRECORD_SEGMENT_DIR=str(segstore))
    auth = {"Authorization": "Bearer s3cret"}
    try:
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"ok": True}
        assert requests.get(f"{base}/status", timeout=5).status_code == 401
        assert requests.post(f"{base}/control", json={"action": "Stop"},
                             headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        _wait_status(status_file, "recording")
        st = requests.get(f"{base}/status", headers=auth, timeout=5).json()
        assert st["taskId"] == "task-1" and st["status"] == "recording" and st["startTime"]
        time.sleep(1.5)
        r = requests.post(f"{base}/control", json={"action": "Pause", "seq": 1}, headers=auth, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "paused"
        segments_at_pause = r.json()["segments"]  # rotation may have cut one before the Pause
        # StorageType cfs with WEBRECORD_SEGMENT_DIR: each closed segment is queued for the store
        # at once and copied in the background (a copy may still run as the reply arrives).
        expected = [f"seg_{i:04d}.ts" for i in range(segments_at_pause)]
        deadline = time.monotonic() + 10
        while (stored := sorted(p.name for p in (segstore / "task-1").glob("seg_*.ts"))) != expected \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored == expected, stored
        r = requests.post(f"{base}/control", json={"action": "Pause", "seq": 1}, headers=auth, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "paused"  # retry: no 409
        assert _status(status_file)["status"] == "paused"
        r = requests.post(f"{base}/control", json={"action": "Resume", "seq": 2}, headers=auth, timeout=10)
        assert r.json()["status"] == "recording" and r.json()["segments"] == segments_at_pause + 1
        r = requests.post(f"{base}/control", json={"action": "Resume", "seq": 3}, headers=auth, timeout=10)
        assert r.status_code == 409 and r.json()["errorCode"] == "InvalidAction"
        r = requests.post(f"{base}/control", json={"action": "Jump"}, headers=auth, timeout=10)
        assert r.status_code == 400 and "action" in r.json()["errorMessage"]
        r = requests.post(f"{base}/control", data="{", headers=auth, timeout=10)
        assert r.status_code == 400
        r = requests.post(f"{base}/control", json={"action": "Refresh", "seq": 4}, headers=auth, timeout=20)
        assert r.status_code == 200 and r.json()["lastActionSeq"] == 4
        time.sleep(1.5)
        r = requests.post(f"{base}/control", json={"action": "Stop", "seq": 5}, headers=auth, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "canceled"
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        _stop(proc)
    final = _status(status_file)
    assert final["status"] == "finished", final
    assert "errorCode" not in final["result"], final
    assert final["finishTime"] >= final["stopTime"] >= final["startTime"] >= final["createTime"]
    video = final["result"]["videos"][0]
    delivered = [p for p in outdir.rglob("*") if p.name == video["filename"]]
    assert delivered and delivered[0].stat().st_size == video["fileSize"]
    info = assert_av(delivered[0], 640, 360)
    assert 2.0 <= info["duration"] <= 5.0 and abs(info["duration"] - video["fileDuration"]) < 0.05
    # Delivered: the stored segments are no longer needed and are gone.
    assert not (segstore / "task-1").exists(), list((segstore / "task-1").iterdir())


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_recorder_cancel_ends_finished_without_video(tmp_path, page_server):
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc, status_file, base = _start_recorder(
        tmp_path, f"{page_server}/recorder_sound.html", WEBRECORD_OUTPUT_DIR=str(outdir))
    try:
        _wait_status(status_file, "recording")
        r = requests.post(f"{base}/control", json={"action": "Cancel", "seq": 1},
                          headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "canceled"
        assert proc.wait(30) == 0
    finally:
        _stop(proc)
    final = _status(status_file)
    assert final["status"] == "finished" and final["result"]["errorCode"] == "Canceled"
    assert not final["result"].get("videos") and not list(outdir.iterdir())


@pytest.mark.browser
@pytest.mark.timeout(60)
def test_recorder_sigterm_stops_and_delivers(tmp_path, page_server):
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc, status_file, _ = _start_recorder(
        tmp_path, f"{page_server}/recorder_sound.html", WEBRECORD_OUTPUT_DIR=str(outdir))
    try:
        _wait_status(status_file, "recording")
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)  # what Kubernetes sends on pod deletion
        assert proc.wait(30) == 0
    finally:
        _stop(proc)
    final = _status(status_file)
    assert final["status"] == "finished" and "errorCode" not in final["result"], final
    assert final["result"]["videos"][0]["fileDuration"] >= 1.0

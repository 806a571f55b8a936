"""A recorder that dies mid-task is replaced by a new one that resumes from the stored segments."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

# The moto S3 server fixtures of the delivery tests (tests/ is on sys.path).
from delivery.conftest import aws_env, bucket, moto_endpoint, s3_client  # noqa: F401, F811

from .conftest import marked_processes
from .media import assert_av
from .test_cli import _status, _wait_file, _wait_status

CLI = [sys.executable, "-m", "webrecord.cli"]
AUTH = {"Authorization": "Bearer s3cret"}


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                          "-of", "json", str(path)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return float(json.loads(out)["format"]["duration"])


class Recorder:
    """One `webrecord recorder` run of the task in `task_file`, with its own work dir."""

    def __init__(self, root: Path, name: str, task_file: Path, env: dict[str, str]) -> None:
        self.work = root / name
        port_file = root / f"{name}.port"
        self.log = root / f"{name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [*CLI, "recorder", "--task", str(task_file), "--work-dir", str(self.work),
                 "--token-file", str(root / "token"), "--port-file", str(port_file)],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **env},
                start_new_session=True)
        self.status_file = self.work / "status.json"
        self.base = f"http://127.0.0.1:{_wait_file(port_file, 60)}"

    def control(self, action: str, seq: int) -> dict:
        r = requests.post(f"{self.base}/control", json={"action": action, "seq": seq},
                          headers=AUTH, timeout=20)
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def kill_everything(mark: str) -> None:
    """SIGKILL every process this test started so far (the recorder, the worker it forks into
    its own session, Xvfb, PulseAudio, Chromium, ffmpeg): a pod that died, nothing runs on."""
    runtime_dirs = set()  # PulseAudio's private dir: its owner no longer lives to remove it
    for pid, _ in marked_processes(mark):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        runtime_dirs |= {v[len(b"PULSE_RUNTIME_PATH="):].decode() for v in environ
                         if v.startswith(b"PULSE_RUNTIME_PATH=")}
    deadline = time.monotonic() + 20
    while left := marked_processes(mark):
        assert time.monotonic() < deadline, f"still running after SIGKILL: {left}"
        for pid, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    for d in runtime_dirs:
        shutil.rmtree(d, ignore_errors=True)


class StoredSegments:
    """What the task's segment store holds: a mounted directory (cfs) or a bucket prefix (cos)."""

    def __init__(self, root: Path, endpoint: str | None = None, bucket_name: str | None = None):
        self.root, self.endpoint, self.bucket = root, endpoint, bucket_name
        self.prefix = "webrecord-segments/task-r/"

    def names(self) -> list[str]:
        if self.bucket is None:
            return sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []
        listing = s3_client(self.endpoint).list_objects_v2(Bucket=self.bucket, Prefix=self.prefix)
        return sorted(o["Key"][len(self.prefix):] for o in listing.get("Contents", []))

    def local(self, name: str, scratch: Path) -> Path:
        if self.bucket is None:
            return self.root / name
        scratch.mkdir(exist_ok=True)
        s3_client(self.endpoint).download_file(self.bucket, self.prefix + name, str(scratch / name))
        return scratch / name

    def wait(self, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while name not in self.names():  # both stores publish a segment whole or not at all
            assert time.monotonic() < deadline, f"{name} not stored"
            time.sleep(0.2)


def resume_scenario(tmp_path: Path, page_server: str, mark: str, storage_type: str,
                    env: dict[str, str], stored: StoredSegments) -> None:
    """Recorder 1 records ~3 s, closes a segment (stored), records on and is SIGKILLed with
    everything it started; recorder 2 (fresh work dir) resumes, records ~3 s and stops."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps({
        "taskId": "task-r", "createTime": int(time.time()),
        "spec": {"recordUrl": f"{page_server}/recorder_sound.html", "width": 640, "height": 360,
                 "storageType": storage_type}}))
    (tmp_path / "token").write_text("s3cret\n")
    # Segments are cut here by Pause and by the kill only (timed rotation, which would add a cut
    # whenever the wall clock passes a multiple of 10 s, has its own tests in test_rotation.py).
    env = {**env, "WEBRECORD_OUTPUT_DIR": str(outdir), "WEBRECORD_SEGMENT_SECONDS": "3600"}

    first = Recorder(tmp_path, "work1", task_file, env)
    try:
        _wait_status(first.status_file, "recording", 60)
        time.sleep(3)
        assert first.control("Pause", 1)["status"] == "paused"  # closes seg_0000: stored
        stored.wait("seg_0000.ts")
        assert first.control("Resume", 2)["status"] == "recording"
        time.sleep(1)  # the segment in progress is lost with the recorder
        first_start = _status(first.status_file)["startTime"]
        kill_everything(mark)
        first.proc.wait(10)
    finally:
        first.stop()
        kill_everything(mark)
    assert first.proc.returncode == -signal.SIGKILL
    assert stored.names() == ["seg_0000.ts"]
    part1 = ffprobe_duration(stored.local("seg_0000.ts", tmp_path / "scratch"))
    assert 2.0 <= part1 <= 4.5, part1

    second = Recorder(tmp_path, "work2", task_file, env)  # a new pod: fresh work dir
    try:
        st = _wait_status(second.status_file, "recording", 60)
        assert st["segments"] == 2 and st["recordedSeconds"] >= part1 - 0.01, st
        time.sleep(3)
        assert second.control("Stop", 1)["status"] == "canceled"
        assert second.proc.wait(60) == 0, second.log.read_text()[-3000:]
    finally:
        second.stop()
    final = _status(second.status_file)
    assert final["status"] == "finished", final
    assert "errorCode" not in final["result"], final
    assert final["segments"] == 2, final
    # The earlier startTime lived in the lost work dir: the resumed task starts when resumed.
    assert final["finishTime"] >= final["stopTime"] >= final["startTime"] >= first_start
    log = second.log.read_text()
    assert "resumed with 1 stored segments" in log, log[-3000:]
    # The new recorder's segment is numbered after the stored one; once the video was
    # delivered the stored segments are deleted (bounded growth).
    assert "seg_0001.ts" in log and stored.names() == [], stored.names()

    video = final["result"]["videos"][0]
    delivered = [p for p in outdir.rglob("*") if p.name == video["filename"]]
    assert delivered and delivered[0].stat().st_size == video["fileSize"]
    info = assert_av(delivered[0], 640, 360)
    assert abs(info["duration"] - video["fileDuration"]) < 0.05
    part2 = info["duration"] - part1
    assert 2.0 <= part2 <= 5.5, (info, part1)
    assert final["recordedSeconds"] == pytest.approx(info["duration"], abs=0.7), final


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_restarted_recorder_resumes_from_cfs_segments(tmp_path, page_server, no_leftover_processes):
    # cfs: a filesystem both recorders mount.
    segstore = tmp_path / "segstore"
    resume_scenario(tmp_path, page_server, no_leftover_processes, "cfs",
                    {"WEBRECORD_SEGMENT_DIR": str(segstore)}, StoredSegments(segstore / "task-r"))


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_restarted_recorder_resumes_from_cos_segments(tmp_path, page_server, moto_endpoint,
                                                      bucket, no_leftover_processes):
    # cos: each closed segment uploaded to the bucket (moto server); the task has no Output.Cos,
    # so the video itself is delivered to WEBRECORD_OUTPUT_DIR.
    env = {"WEBRECORD_SEGMENT_BUCKET": bucket, "WEBRECORD_S3_ENDPOINT_URL": moto_endpoint}
    resume_scenario(tmp_path, page_server, no_leftover_processes, "cos", env,
                    StoredSegments(tmp_path / "unused", moto_endpoint, bucket))

"""Queueing (at most N recorders, FIFO) and a restart of the server mid-recording, with real
recorders recording a local page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from webrecord.api.protocol import actions as pm
from webrecord.adapter.backends.local import _task_pids
from webrecord.adapter.store import RunState, TaskStore

from .conftest import KEYS, Client, LiveServer
from .helpers import describe as _describe
from .helpers import play, video_path, wait_for

pytestmark = pytest.mark.browser


@pytest.mark.timeout(240)
def test_queue_fifo_and_cancel(make_server, page_server: str) -> None:
    server: LiveServer = make_server(max_concurrent=1, max_queued=1)
    url = f"{page_server}/recorder_sync.html"
    first = server.call("Start", {"RecordURL": url, "Width": 640, "Height": 360}).body["TaskID"]
    # The documentation's full Start example (Cos, Vod, HLS with a key) is accepted; it waits in
    # the queue behind the first task, so it is never run against the example's hosts.
    example = server.post_raw(json.dumps(pm.EXAMPLES["Start"]).encode())
    assert example.status == 200, example.body
    second = example.body["TaskID"]
    full = server.call("Start", {"RecordURL": url})
    assert (full.status, full.body["ErrorCode"]) == (429, "LimitExceeded")
    assert full.body["ErrorMessage"] == (
        "all 1 recorders are busy and 1 tasks are already queued; retry when some finish"
    )
    queued = _describe(server, second)
    assert queued["Status"] == "normal" and "StartTime" not in queued
    assert server.request("GET", "/healthz").body["queued"] == 1

    # A Pause while queued is kept: the recording will start paused.
    assert server.call("Pause", {"TaskID": second}).status == 200
    refused = server.call("Refresh", {"TaskID": second})
    assert (refused.status, refused.body["ErrorCode"]) == (409, "InvalidAction")
    assert refused.body["ErrorMessage"] == (
        "Refresh is not allowed while the task is queued for a free recorder "
        "(only Pause, Stop and Cancel apply)"
    )
    async def stored_row():  # read on the server's own thread (its SQLite connection)
        return server.backend.store.get(second)

    stored = server.run(stored_row())
    assert stored is not None and stored.spec.output.video.muxer == "hls"
    assert stored.spec.output.cos is not None and stored.spec.output.cos.bucket == "records-1250000000"
    assert server.call("Cancel", {"TaskID": second}).status == 200
    canceled = _describe(server, second)
    assert canceled["Status"] == "finished"
    assert canceled["Result"]["ErrorCode"] == "Canceled" and canceled["Result"]["Videos"] == []
    assert "StartTime" not in canceled and canceled["CancelTime"] <= canceled["FinishTime"]

    wait_for(lambda: _describe(server, first), lambda d: d["Status"] == "recording", 90, "recording")
    time.sleep(1.0)
    assert server.call("Cancel", {"TaskID": first}).status == 200
    done = wait_for(lambda: _describe(server, first), lambda d: d["Status"] == "finished", 60, "finished")
    assert done["Result"]["Videos"] == []
    assert done["Result"]["ErrorCode"] == "Canceled"
    assert "CancelTime" in done
    listed = server.call("List", {"Limit": 1}).body
    assert listed["TotalCount"] == 2 and len(listed["Tasks"]) == 1
    assert {t["TaskID"] for t in server.call("List", {}).body["Tasks"]} == {first, second}


class ServeProcess:
    """`python -m webrecord.adapter serve` as a real separate process that a test can kill."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.keys = root / "keys.yaml"
        self.keys.write_text("".join(f"{k}: {v}\n" for k, v in KEYS.items()))
        self.proc: subprocess.Popen | None = None
        self.client: Client | None = None

    def start(self) -> Client:
        port_file = self.root / "port"
        port_file.unlink(missing_ok=True)
        self.log = open(self.root / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webrecord.adapter", "serve", "--port", "0", "--port-file",
             str(port_file), "--state-dir", str(self.state), "--max-concurrent", "1",
             "--auth-keys", str(self.keys)],
            stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert self.proc.poll() is None, (self.root / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        self.client = Client("127.0.0.1", int(port_file.read_text()))
        return self.client

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash, an OOM kill, a node reboot of the adapter)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()

    def recorder_pid(self, task_id: str) -> int:
        store = TaskStore(self.state / "tasks.sqlite")
        try:
            row = store.get(task_id)
            assert row is not None and row.state is RunState.RUNNING and row.pid
            return row.pid
        finally:
            store.close()

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if (self.state / "tasks.sqlite").exists():
            store = TaskStore(self.state / "tasks.sqlite")
            pids = [r.pid for r in store.in_state(RunState.RUNNING) if r.pid]
            store.close()
            for pid in pids:
                _kill_group(pid, signal.SIGKILL)
        for task_file in self.state.glob("tasks/*/task.json"):
            for pid in _task_pids(task_file):
                _kill_group(pid, signal.SIGKILL)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _recorded_seconds(state: Path, task_id: str) -> float:
    """recordedSeconds as the recorder's own status endpoint reports it now."""
    directory = state / "tasks" / task_id
    port = (directory / "port").read_text().strip()
    token = (directory / "token").read_text().strip()
    reply = requests.get(f"http://127.0.0.1:{port}/status", timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
    return float(reply.json()["recordedSeconds"])


def _recorded_or_zero(state: Path, task_id: str) -> float:
    try:
        return _recorded_seconds(state, task_id)
    except (OSError, ValueError, requests.RequestException):
        return 0.0  # between recorders: no port file or nobody listening yet


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.mark.timeout(420)
def test_restart_mid_recording(serve: ServeProcess, page_server: str) -> None:
    key = "AKIDbob"
    url = f"{page_server}/recorder_sync.html"
    client = serve.start()
    a = client.call("Start", {"RecordURL": url, "Width": 640, "Height": 360}, key=key).body["TaskID"]
    b = client.call("Start", {"RecordURL": url, "Width": 640, "Height": 360}, key=key).body["TaskID"]
    rec = wait_for(lambda: _describe(client, a, key), lambda d: d["Status"] == "recording", 90, "A recording")
    assert _describe(client, b, key)["Status"] == "normal"  # queued behind A
    recorder_a = serve.recorder_pid(a)

    # The adapter dies mid-recording; the recorder keeps recording.
    serve.kill()
    time.sleep(1.0)
    assert not _gone(recorder_a, timeout=0.5)
    client = serve.start()

    again = _describe(client, a, key)
    assert again["Status"] == "recording" and again["StartTime"] == rec["StartTime"]
    assert client.call("Pause", {"TaskID": a}, key=key).status == 200
    assert _describe(client, a, key)["Status"] == "paused"
    assert client.call("Resume", {"TaskID": a}, key=key).status == 200
    time.sleep(1.0)
    assert client.call("Stop", {"TaskID": a}, key=key).status == 200
    done = wait_for(lambda: _describe(client, a, key), lambda d: d["Status"] == "finished", 90, "A finished")
    assert done["Result"]["ErrorCode"] == "", done
    assert play(video_path(done["Result"]["Videos"][0])) > 10

    # The queued task starts once A's slot is free, still in FIFO order after the restart.
    wait_for(lambda: _describe(client, b, key), lambda d: d["Status"] == "recording", 90, "B recording")
    recorder_b = serve.recorder_pid(b)

    # Now the adapter dies, and B's recorder dies while the adapter is down (every process of
    # it: the recorder forks its worker into another session, which would otherwise stop
    # cleanly and still deliver). The restarted adapter starts a new recorder in B's work dir,
    # which resumes from B's segments (the one in progress included: flushed as written).
    time.sleep(3.0)
    before_kill = _recorded_seconds(serve.state, b)
    serve.kill()
    pids = _task_pids(serve.state / "tasks" / b / "task.json")
    assert recorder_b in pids and len(pids) >= 2
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert all(_gone(pid) for pid in pids)
    client = serve.start()
    wait_for(lambda: serve.recorder_pid(b), lambda pid: pid not in pids, 60, "a new recorder")
    wait_for(lambda: _recorded_or_zero(serve.state, b),
             lambda seconds: seconds > before_kill + 0.3, 90, "B recording again")
    wait_for(lambda: _describe(client, b, key), lambda d: d["Status"] == "recording", 10,
             "Describe: B recording")
    time.sleep(2.0)
    assert client.call("Stop", {"TaskID": b}, key=key).status == 200
    done_b = wait_for(lambda: _describe(client, b, key), lambda d: d["Status"] == "finished", 90,
                      "B finished")
    assert done_b["Result"]["ErrorCode"] == "", done_b
    [video_b] = done_b["Result"]["Videos"]
    print(f"B: {before_kill:.1f} s recorded before the kill, video {video_b['FileDuration']:.1f} s")
    assert video_b["FileDuration"] >= before_kill + 1.0, (before_kill, video_b)
    assert play(video_path(video_b)) > 10

    # A third task; the adapter dies and only the recorder process it started is killed. The
    # recorder's worker (its own session) stops cleanly: the restarted adapter follows it (or
    # reads its final status) and reports the delivered video, not a lost recorder.
    c = client.call("Start", {"RecordURL": url, "Width": 640, "Height": 360}, key=key).body["TaskID"]
    wait_for(lambda: _describe(client, c, key), lambda d: d["Status"] == "recording", 90, "C recording")
    time.sleep(1.0)
    recorder_c = serve.recorder_pid(c)
    serve.kill()
    os.kill(recorder_c, signal.SIGKILL)
    client = serve.start()
    finished = wait_for(lambda: _describe(client, c, key), lambda d: d["Status"] == "finished", 90,
                        "C finished")
    assert finished["Result"]["ErrorCode"] == "", finished
    assert play(video_path(finished["Result"]["Videos"][0])) > 5

    # Every task still answers Describe after the restarts.
    assert {t["TaskID"] for t in client.call("List", {}, key=key).body["Tasks"]} == {a, b, c}

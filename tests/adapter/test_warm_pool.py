"""The local backend's warm pool through a real `webrecord serve` process: a Start claims a
ready slot (standby recorder: real Xvfb, PulseAudio, Chromium), a Start with none ready runs
cold, used and dead slots are replaced, and no idle slot outlives the adapter."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import requests

from webrecord.adapter.backends.processes import pids_naming

from .helpers import ServeProcess, video_path
from recorder.media import assert_av

SLOT_ENV = {"WEBRECORD_ADAPTER_WARM_SLOTS": "1", "WEBRECORD_ADAPTER_WARM_SLOT_WIDTH": "640",
            "WEBRECORD_ADAPTER_WARM_SLOT_HEIGHT": "360"}


def _call(serve: ServeProcess, action: str, data: dict) -> dict:
    reply = requests.post(f"http://127.0.0.1:{serve.port}/", json={"Action": action, "Data": data},
                          timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _health(serve: ServeProcess) -> dict:
    return requests.get(f"http://127.0.0.1:{serve.port}/healthz", timeout=10).json()


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _ready_slot(serve: ServeProcess, state: Path, not_in: set[str] = frozenset()) -> str:
    """The name of the one ready slot (a new one when `not_in` names old ones)."""
    def ready() -> str | None:
        if _health(serve)["warmSlots"]["ready"] < 1:
            return None
        fresh = [d.name for d in (state / "slots").iterdir()
                 if (d / "port").exists() and not (d / "claimed").exists() and d.name not in not_in]
        return fresh[0] if fresh else None
    return _until(ready, 90, "a ready warm slot")


def _slot_tree(state: Path, slot: str) -> list[psutil.Process]:
    needle = str(state / "slots" / slot / "work")
    roots = [p for p in psutil.process_iter(["cmdline"]) if needle in " ".join(p.info["cmdline"] or [])]
    tree = {p.pid: p for p in roots}
    for root in roots:
        try:
            tree.update({c.pid: c for c in root.children(recursive=True)})
        except psutil.Error:
            pass
    return list(tree.values())


def _serve(root: Path, state: Path | None = None) -> ServeProcess:
    root.mkdir(parents=True, exist_ok=True)
    return ServeProcess(root, "--no-auth", "--state-dir", str(state or root / "state"),
                        env={**SLOT_ENV, "WEBRECORD_EGRESS_ALLOW_LOOPBACK": "true"})


def _finished(serve: ServeProcess, task: str) -> dict:
    return _until(lambda: (d := _call(serve, "Describe", {"TaskID": task}))["Status"] == "finished" and d,
                  90, f"{task} finished")


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_start_claims_the_ready_slot_the_next_runs_cold_and_the_pool_refills(tmp_path, page_server):
    state = tmp_path / "state"
    serve = _serve(tmp_path)
    try:
        slot = _ready_slot(serve, state)
        slot_pid = min(p.pid for p in _slot_tree(state, slot))
        url = f"{page_server}/recorder_sound.html"
        start = {"RecordURL": url, "Width": 640, "Height": 360, "MaxDurationLimit": 2}
        warm = _call(serve, "Start", start)["TaskID"]
        cold = _call(serve, "Start", start)["TaskID"]  # the one slot is taken: cold spawn
        warm_dir, cold_dir = state / "tasks" / warm, state / "tasks" / cold
        assert (warm_dir / "slot").read_text() == str(state / "slots" / slot / "port")
        assert not (cold_dir / "slot").exists()
        # The claimed slot is the task's recorder: same pid, same files as a cold one.
        assert json.loads((warm_dir / "status.json").read_text())["taskId"] == warm
        assert (warm_dir / "token").read_text() == (state / "slots" / slot / "token").read_text()
        assert int((warm_dir / "port").read_text()) > 0
        assert slot_pid in {p.pid for p in _slot_tree(state, slot)}
        for task in (warm, cold):
            final = _finished(serve, task)
            assert final["Result"]["ErrorCode"] == "", final
            info = assert_av(video_path(final["Result"]["Videos"][0]), 640, 360)
            assert 1.5 <= info["duration"] <= 4.0, info
        assert "slot claimed" in (warm_dir / "recorder.log").read_text()  # its log moved along
        # Refilled with a new slot; the used one is gone with its process and directory.
        fresh = _ready_slot(serve, state, not_in={slot})
        assert fresh != slot
        _until(lambda: not (state / "slots" / slot).exists(), 30, "the used slot's dir removed")
        assert not psutil.pid_exists(slot_pid) or psutil.Process(slot_pid).status() == psutil.STATUS_ZOMBIE
        assert _health(serve)["warmSlots"] == {"size": 1, "ready": 1, "starting": 0}
    finally:
        serve.stop()


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_idle_slot_that_dies_is_replaced(tmp_path):
    state = tmp_path / "state"
    serve = _serve(tmp_path)
    try:
        slot = _ready_slot(serve, state)
        tree = _slot_tree(state, slot)
        chromium = [p for p in tree if p.name() in ("chromium", "chrome")
                    and "--type=" not in " ".join(p.cmdline())]
        assert chromium, [(p.pid, p.name()) for p in tree]
        chromium[0].kill()
        fresh = _ready_slot(serve, state, not_in={slot})
        assert fresh != slot
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert not alive, alive
        assert not (state / "slots" / slot).exists()
        assert "warm slot discarded" in serve.log_text()
    finally:
        serve.stop()


@pytest.mark.browser
@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["shutdown", "killed"])
def test_no_slot_process_outlives_the_adapter(tmp_path, how):
    state = tmp_path / "state"
    serve = _serve(tmp_path)
    try:
        slot = _ready_slot(serve, state)
        tree = _slot_tree(state, slot)
        assert len(tree) >= 5, tree  # supervisor, worker, the X server, PulseAudio, Chromium...
        os.kill(serve.proc.pid, how)
        serve.proc.wait(60)
        _, alive = psutil.wait_procs(tree, timeout=20)
        assert not alive, [(p.pid, p.name()) for p in alive]
        assert not _slot_tree(state, slot)
    finally:
        serve.stop()



@pytest.mark.browser
@pytest.mark.timeout(300)
def test_claimed_slot_outlives_the_adapter_and_is_replaced_cold_when_it_dies(tmp_path, page_server):
    state = tmp_path / "state"
    first = _serve(tmp_path / "a", state)
    second = None
    try:
        slot = _ready_slot(first, state)
        task = _call(first, "Start", {"RecordURL": f"{page_server}/recorder_sync.html",
                                      "Width": 640, "Height": 360})["TaskID"]
        _until(lambda: _call(first, "Describe", {"TaskID": task})["Status"] == "recording", 30,
               "recording")
        recorder = set(pids_naming(str(state / "slots" / slot / "port")))  # supervisor, worker
        assert len(recorder) == 2, recorder
        os.kill(first.proc.pid, signal.SIGKILL)  # its lifeline closes: claimed, the slot stays
        first.proc.wait(30)
        time.sleep(2)
        assert set(pids_naming(str(state / "slots" / slot / "port"))) == recorder
        second = _serve(tmp_path / "b", state)
        assert _call(second, "Describe", {"TaskID": task})["Status"] == "recording"
        assert "re-attached to running recorder" in second.log_text()
        # The slot dies mid-recording: a cold recorder resumes the task in its work dir.
        for proc in _slot_tree(state, slot):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _until(lambda: not (state / "tasks" / task / "slot").exists()
               and _call(second, "Describe", {"TaskID": task})["Status"] == "recording"
               and (state / "tasks" / task / "port").exists(), 90, "a cold replacement recording")
        time.sleep(2)
        assert _call(second, "Stop", {"TaskID": task})["TaskID"] == task
        final = _finished(second, task)
        assert final["Result"]["ErrorCode"] == "", final
        assert_av(video_path(final["Result"]["Videos"][0]), 640, 360)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        for pid in pids_naming(str(state)):  # nothing of this test may outlive it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

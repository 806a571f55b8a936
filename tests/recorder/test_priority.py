"""A starting recorder's sessions run at a low CPU weight until its capture begins (real Xvfb,
PulseAudio and Chromium; the kernel's own autogroup files)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import psutil
import pytest

from webrecord.api.models import Action, RecordingSpec, RecordingTask
from webrecord.egress.policy import EgressSettings
from webrecord.recorder.session import Session
from webrecord.recorder.priority import StartupPriority, autogroups_in_use
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.stage import Stage

from .conftest import chromium_browser_pids
from .test_session import running, wait_for


def group_nice(pid: int) -> tuple[str, int]:
    """(autogroup name, nice) of pid, from /proc/PID/autogroup ("/autogroup-123 nice 0")."""
    text = Path(f"/proc/{pid}/autogroup").read_text()
    match = re.match(r"(\S+) nice (-?\d+)", text)
    assert match, text
    return match.group(1), int(match.group(2))


def test_a_process_that_shares_our_session_is_never_lowered():
    """Writing its autogroup would lower ours too (and our shell's): only session leaders."""
    child = subprocess.Popen(["sleep", "30"])  # same session as the test
    try:
        before = group_nice(child.pid) if autogroups_in_use() else None
        priority = StartupPriority(9)
        priority.lower(child.pid)
        assert priority.lowered == []
        if before is not None:
            assert group_nice(child.pid) == before
    finally:
        child.kill()
        child.wait()


@pytest.mark.browser
@pytest.mark.timeout(90)
async def test_a_stage_starts_at_low_weight_and_gets_it_back_for_the_capture(tmp_path):
    (tmp_path / "logs").mkdir()
    stage = Stage(RecorderSettings(startup_nice=7), EgressSettings(enabled=False), 640, 360,
                  tmp_path / "logs", tmp_path / "profile")
    ours = group_nice(psutil.Process().pid) if autogroups_in_use() else None
    try:
        await stage.start()
        assert stage.display is not None and stage.audio is not None
        assert stage.display.proc is not None and stage.audio.proc is not None
        chromium = chromium_browser_pids()
        assert len(chromium) == 1, chromium
        parts = {"Xvfb": stage.display.proc.pid, "PulseAudio": stage.audio.proc.pid,
                 "Chromium": chromium[0]}
        if ours is None:  # no autogroups here (systemd slices, a pod): nothing to weigh
            assert stage.priority.nice == 0 and stage.priority.lowered == []
            return
        assert {name: group_nice(pid)[1] for name, pid in parts.items()} == \
            {name: 7 for name in parts}
        # pytest is not a session leader: its group (and its shell's) is left alone.
        assert group_nice(psutil.Process().pid) == ours
        await stage.priority.restore()
        assert {name: group_nice(pid)[1] for name, pid in parts.items()} == \
            {name: 0 for name in parts}
        assert stage.priority.lowered == []
    finally:
        await stage.close()


@pytest.mark.browser
@pytest.mark.timeout(90)
async def test_a_claimed_standby_stage_gets_its_weight_back_before_the_page_loads(tmp_path,
                                                                                  page_server):
    """A standby slot starts (and idles) at the low weight: background work of the pool. Once a
    task claims it, its start is that task's: back to full weight before the RecordURL loads
    (checked while a ManualStart page waits, before any capture)."""
    (tmp_path / "logs").mkdir()
    settings = RecorderSettings(startup_nice=7, segment_seconds=3600)
    stage = Stage(settings, EgressSettings(allow_loopback=True), 640, 360, tmp_path / "logs",
                  tmp_path / "profile")
    await stage.start()
    held = list(stage.priority.lowered)
    task = RecordingTask(task_id="claimed", spec=RecordingSpec(
        record_url=f"{page_server}/recorder_hooks.html", width=640, height=360,
        manual_start=True, max_duration_limit=20))
    session = Session(task, tmp_path / "work", settings, stage=stage,
                      egress=EgressSettings(allow_loopback=True))
    async with running(session) as run:
        await wait_for(lambda: "startRecord" in (session.status.message or ""))
        assert session.captures == []
        if autogroups_in_use():
            alive = [pid for pid in held if psutil.pid_exists(pid)]  # not the sound probe
            assert len(alive) >= 3 and all(group_nice(pid)[1] == 0 for pid in alive), held
        assert stage.priority.lowered == []
        await session.control(Action.STOP)
        await asyncio.wait_for(run, 60)

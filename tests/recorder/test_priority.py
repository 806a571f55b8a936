"""A starting recorder's sessions run at a low CPU weight until its capture begins (a real X server,
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
from webrecord.recorder.priority import StartupPriority, autogroups_in_use, in_root_cpu_cgroup
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.stage import Stage

from .conftest import chromium_browser_pids
from .test_session import running, wait_for


def group_nice(pid: int) -> tuple[str, int] | None:
    """(autogroup name, nice) of pid, from /proc/PID/autogroup ("/autogroup-123 nice 0"); None
    for the boot-time default group, which the kernel shows as an empty file (CI runs in it:
    its processes never made a session of their own)."""
    text = Path(f"/proc/{pid}/autogroup").read_text()
    if not text:
        return None
    match = re.match(r"(\S+) nice (-?\d+)\n", text)
    assert match, text
    return match.group(1), int(match.group(2))


def nice_of(pid: int) -> int:
    """The autogroup nice of a session leader (each has a group of its own)."""
    group = group_nice(pid)
    assert group is not None, f"pid {pid} is in the default group"
    return group[1]


@pytest.mark.parametrize(("cgroups", "root_subtree", "expected"), [
    ("0::/\n", "", True),                                           # v2, root
    ("0::/user.slice/session-1.scope\n", "memory pids\n", True),     # v2, cpu not handed down
    ("0::/kubepods/pod1/c1\n", "cpuset cpu io memory\n", False),    # v2, a pod
    ("2:cpuacct:/\n1:cpu:/\n0::/\n", "", True),                       # v1, root
    ("4:memory:/x\n1:cpu,cpuacct:/\n", "", True),                     # v1, only memory nested
    ("1:cpu,cpuacct:/kubepods/pod1\n0::/\n", "", False),              # v1, a pod
    ("garbage\n1:cpu:/\n", "", True),                                  # a line it cannot read
])
def test_autogroups_count_only_in_the_root_cpu_cgroup(cgroups, root_subtree, expected):
    assert in_root_cpu_cgroup(cgroups, root_subtree) is expected


def test_a_process_that_shares_our_session_is_never_lowered():
    """Writing its autogroup would lower ours too (and our shell's): only session leaders."""
    child = subprocess.Popen(["sleep", "30"])  # same session as the test
    try:
        before = group_nice(child.pid)
        priority = StartupPriority(9)
        priority.lower(child.pid)
        assert priority.lowered == []
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
    ours = group_nice(psutil.Process().pid)
    try:
        await stage.start()
        assert stage.display is not None and stage.audio is not None
        assert stage.display.proc is not None and stage.audio.proc is not None
        chromium = chromium_browser_pids()
        assert len(chromium) == 1, chromium
        parts = {"X server": stage.display.proc.pid, "PulseAudio": stage.audio.proc.pid,
                 "Chromium": chromium[0]}
        if not autogroups_in_use():  # no autogroups here (systemd slices, a pod): nothing to weigh
            assert stage.priority.nice == 0 and stage.priority.lowered == []
            return
        assert {name: nice_of(pid) for name, pid in parts.items()} == {name: 7 for name in parts}
        # pytest is not a session leader: its group (and its shell's) is left alone.
        assert group_nice(psutil.Process().pid) == ours
        await stage.priority.restore()
        assert {name: nice_of(pid) for name, pid in parts.items()} == {name: 0 for name in parts}
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
            assert len(alive) >= 3 and all(nice_of(pid) == 0 for pid in alive), held
        assert stage.priority.lowered == []
        await session.control(Action.STOP)
        await asyncio.wait_for(run, 60)

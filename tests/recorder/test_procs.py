"""recorder.procs with real processes: own session, parent-death signal without preexec_fn,
pass_fds, and terminate() reaching descendants that left the process group."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from webrecord.recorder import procs


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.timeout(30)
async def test_spawn_new_session_and_pass_fds(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    try:
        proc = await procs.spawn(["sh", "-c", f"echo ready > /dev/fd/{write_fd}; exec sleep 30"],
                                 pass_fds=(write_fd,), stdin=subprocess.DEVNULL)
    finally:
        os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            assert await asyncio.to_thread(pipe.readline) == b"ready\n"
        assert os.getsid(proc.pid) == proc.pid and os.getpgid(proc.pid) == proc.pid
        # setpriv exec'd into sh, which exec's sleep
        await asyncio.to_thread(_wait_for, lambda: psutil.Process(proc.pid).name() == "sleep")
    finally:
        assert await procs.terminate(proc, timeout=2.0) == -signal.SIGTERM


@pytest.mark.timeout(30)
async def test_missing_program_raises_at_spawn() -> None:
    with pytest.raises(FileNotFoundError):
        await procs.spawn(["webrecord-no-such-program"])


@pytest.mark.timeout(30)
def test_child_dies_when_its_parent_is_killed_hard(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import asyncio, pathlib, sys\n"
        "from webrecord.recorder import procs\n"
        "async def main():\n"
        "    p = await procs.spawn(['sleep', '60'])\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(p.pid))\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")])
    try:
        _wait_for(pid_file.exists)
        child = int(pid_file.read_text())
        _wait_for(lambda: psutil.Process(child).name() == "sleep")
        parent.kill()  # no cleanup runs in the parent: only the kernel's signal can stop it
        parent.wait(10)
        _wait_for(lambda: _gone(child))
    finally:
        parent.kill()
        parent.wait(10)
        if pid_file.exists():
            procs.kill_all([p for p in psutil.process_iter() if p.pid == int(pid_file.read_text())])


@pytest.mark.timeout(30)
async def test_terminate_reaches_a_descendant_in_its_own_session(tmp_path: Path) -> None:
    pid_file = tmp_path / "escaped.pid"
    proc = await procs.spawn(["sh", "-c", f"setsid sleep 60 & echo $! > {pid_file}; wait"])
    escaped = 0
    try:
        await asyncio.to_thread(_wait_for, pid_file.exists)
        await asyncio.to_thread(_wait_for, lambda: pid_file.read_text().strip() != "")
        escaped = int(pid_file.read_text())
        await asyncio.to_thread(_wait_for, lambda: psutil.Process(escaped).name() == "sleep")
        assert os.getsid(escaped) != proc.pid  # out of reach of killpg
        await procs.terminate(proc, timeout=2.0)
        await asyncio.to_thread(_wait_for, lambda: _gone(escaped))
    finally:
        await procs.terminate(proc, timeout=1.0)
        if escaped and not _gone(escaped):
            os.kill(escaped, signal.SIGKILL)

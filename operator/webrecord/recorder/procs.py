"""Child processes: each in its own process group, tied to our life, always reaped.

Why process groups: Chromium, ffmpeg and PulseAudio fork helpers; killing the group is the
only way to be sure nothing survives (and psutil finds the descendants that left the group).
Why a parent-death signal: if this Python process is killed hard, the kernel still takes the
children down with it.

Why not `preexec_fn`: it runs Python between fork and exec in a process with threads (asyncio's
executor, boto3's pools), where a lock another thread held at fork time deadlocks the child.
`start_new_session=True` is done by the subprocess module itself, and the parent-death signal
by util-linux's `setpriv --pdeathsig`, which sets it and execs the real program.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import shutil
import signal
from collections.abc import Sequence
from typing import Any

import psutil

from webrecord.egress.childenv import minimal_env

_PR_SET_PDEATHSIG = 1

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-glibc
    _libc = None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux only); for a
    process that forked itself (no exec follows), where no preexec hook is involved."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def with_parent_death(argv: Sequence[str], sig: str = "KILL") -> list[str]:
    """argv run through `setpriv --pdeathsig`: the child gets `sig` when the thread that started
    it ends. Without setpriv (not Linux/util-linux) argv runs as it is."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", sig, "--", *argv] if setpriv else list(argv)


async def spawn(argv: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
    """Start argv in a new session (its own process group) that dies with us. Without an
    `env` the child gets the minimal one (never the recorder's secrets); file descriptors
    to keep go in `pass_fds`."""
    kwargs.setdefault("env", minimal_env())
    # Resolved here with the child's PATH, as subprocess would: a missing program still raises
    # FileNotFoundError at spawn rather than becoming setpriv's exit code.
    program = shutil.which(argv[0], path=kwargs["env"].get("PATH", os.defpath))
    if program is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    return await asyncio.create_subprocess_exec(*with_parent_death([program, *argv[1:]]),
                                                start_new_session=True, **kwargs)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def descendants(pid: int) -> list[psutil.Process]:
    """All processes below `pid` (empty when it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_all(processes: Sequence[psutil.Process]) -> None:
    """SIGKILL each one still running (psutil checks the pid was not reused since)."""
    for proc in processes:
        try:
            proc.kill()
        except psutil.Error:
            pass


async def terminate(proc: asyncio.subprocess.Process | None, timeout: float = 3.0,
                    sig: int = signal.SIGTERM) -> int | None:
    """Signal the process group, wait up to `timeout`, then SIGKILL; returns the exit code.
    Descendants that moved to a session of their own are killed too."""
    if proc is None:
        return None
    tree = descendants(proc.pid)
    if proc.returncode is None:
        kill_group(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    # Helpers the leader forked may still be alive in its group, or outside it.
    kill_group(proc.pid, signal.SIGKILL)
    kill_all(tree)
    return proc.returncode

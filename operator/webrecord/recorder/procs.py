"""Child processes: each in its own process group, tied to our life, always reaped.

Why process groups: Chromium, ffmpeg and PulseAudio fork helpers; killing the group is the
only way to be sure nothing survives. Why PR_SET_PDEATHSIG: if this Python process is killed
hard, the kernel still takes the children down with it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from collections.abc import Sequence
from typing import Any

from webrecord.egress.childenv import minimal_env

_PR_SET_PDEATHSIG = 1

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-glibc
    _libc = None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (Linux only)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _child_setup() -> None:
    os.setsid()
    die_with_parent(signal.SIGKILL)


async def spawn(argv: Sequence[str], **kwargs: Any) -> asyncio.subprocess.Process:
    """Start argv in a new session (its own process group) that dies with us. Without an
    `env` the child gets the minimal one (never the recorder's secrets)."""
    kwargs.setdefault("env", minimal_env())
    return await asyncio.create_subprocess_exec(*argv, preexec_fn=_child_setup, **kwargs)


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def terminate(proc: asyncio.subprocess.Process | None, timeout: float = 3.0,
                    sig: int = signal.SIGTERM) -> int | None:
    """Signal the process group, wait up to `timeout`, then SIGKILL; returns the exit code."""
    if proc is None:
        return None
    if proc.returncode is None:
        kill_group(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    # Helpers the leader forked may still be alive in its group.
    kill_group(proc.pid, signal.SIGKILL)
    return proc.returncode

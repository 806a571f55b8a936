"""Finding and ending the local backend's recorder processes (cold recorders and warm slots):
by a string only their command line holds, and by process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import psutil


def running(proc: psutil.Process) -> bool:
    """Still running: a zombie has finished, only its parent has not reaped it yet."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive_naming(pid: int, needle: str) -> bool:
    """True when `pid` runs and its command line holds `needle` (guards against pid reuse)."""
    try:
        proc = psutil.Process(pid)
        return running(proc) and needle in "\0".join(proc.cmdline())
    except psutil.Error:
        return False


def pids_naming(needle: str) -> list[int]:
    """Live processes whose command line holds `needle` (a recorder and its fork)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if needle in "\0".join(proc.info["cmdline"] or ()) and running(proc):
                found.append(proc.pid)
    return found


def pid_exists(pid: int) -> bool:
    try:
        return running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


async def terminate_pids(pids: set[int], grace: float = 10.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after `grace` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + grace
    remaining = set(pids)
    while remaining and asyncio.get_running_loop().time() < deadline:
        remaining = {p for p in remaining if pid_exists(p)}
        await asyncio.sleep(0.1)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

"""Recorder test fixtures: every test runs its recorder in-process or as a subprocess and must
leave no X server, PulseAudio, Chromium or ffmpeg behind (checked after each test)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

MARK = "WEBRECORD_TEST_MARK"


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def marked_processes(mark: str) -> list[tuple[int, str]]:
    """Processes whose environment carries our mark (children inherit it), and their
    descendants (Chromium's renderers hide their environment), except us. Zombies excluded."""
    needle = f"{MARK}={mark}".encode()
    marked: set[int] = set()
    parents: dict[int, int] = {}
    comms: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            parents[pid] = int(fields[1])
            with open(f"/proc/{pid}/comm") as f:
                comms[pid] = f.read().strip()
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    marked.add(pid)
        except OSError:
            continue
    found = set(marked)
    for pid in parents:
        seen, cur = 0, parents.get(pid, 0)
        while cur > 1 and seen < 64:
            if cur in marked:
                found.add(pid)
                break
            cur, seen = parents.get(cur, 0), seen + 1
    return sorted((pid, comms.get(pid, "?")) for pid in found)


def chromium_browser_pids() -> list[int]:
    """Chromium's browser processes below this one (Playwright starts each in its own session;
    its zygotes, renderers and GPU process stay in that session)."""
    import psutil
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.name() == "chromium" and os.getsid(proc.pid) == proc.pid:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[str]:
    """Mark everything this test starts; afterwards nothing marked may still run."""
    mark = uuid.uuid4().hex
    previous = os.environ.get(MARK)
    os.environ[MARK] = mark
    try:
        yield mark
    finally:
        if previous is None:
            os.environ.pop(MARK, None)
        else:
            os.environ[MARK] = previous
    deadline = time.monotonic() + 10
    left = marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked_processes(mark)
    for pid, _ in left:  # do not let a failure here leak into other tests
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes left running: {left}"


@pytest.fixture(autouse=True)
def loopback_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test pages are served on 127.0.0.1: allow loopback, as the local backend does."""
    monkeypatch.setenv("WEBRECORD_EGRESS_ALLOW_LOOPBACK", "true")

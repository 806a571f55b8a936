"""A starting recorder yields the CPU to recordings that already capture.

A cold start costs 2-3 CPU s (Python and Playwright's driver, Chromium, the first page load)
within 2-3 s. On a small machine that burst came out of the recordings already capturing: the
first of three 720p30 recordings started together on 2 cores lost up to 5% of its frames in
its first seconds, while the other two were still starting.

Linux schedules by autogroup (one per session, `sched_autogroup_enabled`) on hosts without
systemd's per-service cgroups: a per-process nice then only orders threads inside their own
session. Each child of a recorder is a session of its own (procs.spawn), and so is the recorder
itself when started by `record`, the local backend or a standby slot; their weight is set with
/proc/PID/autogroup, which any process may lower for its own groups. Raising it back to 0 is
allowed too (only a negative nice needs CAP_SYS_NICE).

Where there are no autogroups (systemd slices, a pod's cgroup) this does nothing: there the
cgroup's CPU weight decides, and a pod has the node to itself as far as its requests go.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from webrecord.logs import event
from webrecord.recorder.procs import descendants

log = logging.getLogger(__name__)

AUTOGROUP_SWITCH = Path("/proc/sys/kernel/sched_autogroup_enabled")
OWN_CGROUPS = Path("/proc/self/cgroup")
CGROUP2_ROOT_SUBTREE = Path("/sys/fs/cgroup/cgroup.subtree_control")
# Without CAP_SYS_ADMIN the kernel takes one autogroup change per 100 ms, machine-wide.
_RETRIES, _RETRY_WAIT = 10, 0.1


def autogroups_in_use() -> bool:
    """The switch is on and this process sits in the root CPU cgroup: the kernel bypasses
    autogroups for a task in any other (a pod, a systemd slice with CPU accounting)."""
    try:
        return (AUTOGROUP_SWITCH.read_text().strip() == "1"
                and in_root_cpu_cgroup(OWN_CGROUPS.read_text(), _cgroup2_root_subtree()))
    except OSError:
        return False


def _cgroup2_root_subtree() -> str:
    try:
        return CGROUP2_ROOT_SUBTREE.read_text()
    except OSError:
        return ""


def in_root_cpu_cgroup(cgroups: str, cgroup2_root_subtree: str) -> bool:
    """From /proc/PID/cgroup ("ID:CONTROLLERS:PATH" lines): a cgroup v1 hierarchy that holds
    "cpu" decides by its path; with cgroup v2 alone, a path below the root counts only if the
    root hands the cpu controller down to it."""
    unified_path = None
    for line in cgroups.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if "cpu" in controllers.split(","):
            return path == "/"
        if controllers == "":
            unified_path = path
    if unified_path is None or unified_path == "/":
        return True
    return "cpu" not in cgroup2_root_subtree.split()


def _is_session_leader(pid: int) -> bool:
    """Only a session leader's autogroup is its own: writing another's would also move its
    parent's session (for a recorder run from a shell: the user's shell)."""
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def _write_nice(pid: int, nice: int) -> int:
    """0, or the errno of the failed write."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return 0
    except OSError as exc:
        return exc.errno or errno.EIO


class StartupPriority:
    """The session groups of one recorder's start, held at `nice` until restore()."""

    def __init__(self, nice: int) -> None:
        self.nice = nice if nice > 0 and autogroups_in_use() else 0
        self.lowered: list[int] = []

    def lower(self, pid: int) -> None:
        """Hold pid's session at the start-up nice (a no-op for one that is not a leader)."""
        if not self.nice or pid in self.lowered or not _is_session_leader(pid):
            return
        if _write_nice(pid, self.nice) == 0:
            self.lowered.append(pid)

    def lower_new(self, root: int | None = None) -> None:
        """Every session below root (default: this process) not held yet: Chromium makes its
        own session when Playwright starts it."""
        for child in descendants(root or os.getpid()):
            self.lower(child.pid)

    @contextlib.asynccontextmanager
    async def watching(self, every: float = 0.05) -> AsyncIterator[None]:
        """lower_new() every `every` s while the body runs: a browser is caught within its
        first moments instead of after its whole start (each look reads every process's
        /proc entry, 1-3 ms)."""
        if not self.nice:
            yield
            return

        async def watch() -> None:
            while True:
                self.lower_new()
                await asyncio.sleep(every)

        task = asyncio.get_running_loop().create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.lower_new()

    async def restore(self) -> None:
        """Every held session back to nice 0 (the capture runs from now on)."""
        held, self.lowered = self.lowered, []
        for pid in held:
            for _ in range(_RETRIES):
                failed = _write_nice(pid, 0)
                if failed != errno.EAGAIN:
                    break
                await asyncio.sleep(_RETRY_WAIT)
            if failed not in (0, errno.ENOENT, errno.ESRCH):
                event(log, "start-up priority not restored", logging.WARNING, pid=pid,
                      error=os.strerror(failed))

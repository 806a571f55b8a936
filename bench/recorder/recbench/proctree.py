"""CPU accounting and cleanup of process trees (Linux /proc).

Two views of the same cost:
- TreeSampler walks /proc every `interval` seconds and remembers utime+stime of every process
  in the tree (root and all descendants, plus orphans re-parented to us). The CPU used between
  two instants is the sum of per-process deltas, so a steady-state window can be measured while
  the recording runs; a process that exits loses at most its last interval.
- children_cpu(): getrusage(RUSAGE_CHILDREN) of this process. With this process a child
  subreaper, every descendant ends up reaped by us or by an ancestor that we reap, so the delta
  around a run is the exact total of the tree, start-up and shutdown included.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import signal
import threading
import time
from collections.abc import Iterable

CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_CHILD_SUBREAPER = 36

Key = tuple[int, int]  # (pid, start time in ticks): pids are reused, this pair is not


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, start ticks, utime+stime ticks, state letter) of pid, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    # rest[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
    try:
        return int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12]), rest[0].decode()
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def snapshot() -> dict[int, tuple[int, int, int, str]]:
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                procs[int(name)] = st
    return procs


_shared_lock = threading.Lock()
_shared: tuple[float, dict[int, tuple[int, int, int, str]]] | None = None


def shared_snapshot(max_age: float) -> tuple[float, dict[int, tuple[int, int, int, str]]]:
    """(monotonic time, snapshot()) taken at most max_age s ago. Samplers that wake together
    share one walk of /proc: a walk costs 2-3 ms of CPU, taken from the machine being measured
    (three recordings at once were sampled by three walks 5 times a second)."""
    global _shared
    with _shared_lock:
        now = time.monotonic()
        if _shared is None or now - _shared[0] > max_age:
            _shared = (now, snapshot())
        return _shared


def descendants(roots: Iterable[int], procs: dict[int, tuple[int, int, int, str]] | None = None) -> set[int]:
    procs = snapshot() if procs is None else procs
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [r for r in roots if r in procs]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


# Top-level processes the benchmark launched as separate measured runs: a sampler never adopts
# another run's process as an orphan of its own tree (concurrent recordings).
LAUNCHED: set[int] = set()


class TreeSampler:
    """Samples the CPU time of a process tree in a background thread."""

    def __init__(self, root_pid: int, interval: float = 0.2, adopt_orphans: bool = True) -> None:
        self.roots = {root_pid}
        self.interval = interval
        self.adopt_orphans = adopt_orphans
        self.samples: list[tuple[float, dict[Key, int]]] = []
        self.seen: dict[Key, list[str]] = {}  # every process of the tree with its command line
        self._sightings: dict[Key, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = os.getpid()
        self._mine_before = {pid for pid, st in snapshot().items() if st[0] == self._me}

    def add_root(self, pid: int) -> None:
        self.roots.add(pid)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        # Wake on the interval's multiples of the monotonic clock, as every other sampler with
        # the same interval does, so that they share one walk.
        while not self._stop.wait(self.interval - time.monotonic() % self.interval):
            self.sample(max_age=self.interval / 2)

    def sample(self, max_age: float = 0.0) -> None:
        now, procs = shared_snapshot(max_age)
        roots = set(self.roots)
        if self.adopt_orphans:
            # Orphans of the tree are re-parented to us (subreaper): our children that were not
            # there before the run and are not the page server or the sampler's own helpers.
            roots |= {pid for pid, st in procs.items()
                      if st[0] == self._me and pid not in self._mine_before
                      and (pid not in LAUNCHED or pid in self.roots)}
        ticks: dict[Key, int] = {}
        for pid in descendants(roots, procs):
            _, start, cpu, _ = procs[pid]
            key = (pid, start)
            ticks[key] = cpu
            # A child's command line is its parent's until it execs (and Chromium's children
            # rewrite theirs): read it again on the first few sightings.
            seen = self._sightings.get(key, 0)
            if seen < 4:
                self._sightings[key] = seen + 1
                self.seen[key] = _cmdline(pid) or self.seen.get(key, [])
        self.samples.append((now, ticks))

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds of the tree between monotonic instants t0 and t1 (nearest samples inside)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return 0.0
        base = inside[0][1]
        last: dict[Key, int] = {}
        for _, ticks in inside:
            last.update(ticks)
        return sum(v - base.get(k, 0) for k, v in last.items()) / CLK_TCK

    def by_process(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds between t0 and t1 per kind of process (binary name; Chromium by --type)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        base = inside[0][1]
        last: dict[Key, int] = {}
        for _, ticks in inside:
            last.update(ticks)
        out: dict[str, float] = {}
        for key, value in last.items():
            name = _kind(self.seen.get(key, []))
            out[name] = out.get(name, 0.0) + (value - base.get(key, 0)) / CLK_TCK
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """(CPU seconds, wall seconds) between the first and last sample inside [t0, t1]."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return 0.0, 0.0
        return self.cpu_between(t0, t1), inside[-1][0] - inside[0][0]

    def keys(self) -> list[Key]:
        return list(self.seen)

    def commands(self, match: str) -> list[list[str]]:
        return [argv for argv in self.seen.values() if argv and match in os.path.basename(argv[0])]


def _kind(argv: list[str]) -> str:
    """A short name for a process: the binary, or chromium:<type> for Chromium's children
    (which rewrite their command line into one space-separated string)."""
    if not argv:
        return "?"
    joined = " ".join(argv)
    m = re.search(r"--type=(\S+)", joined)
    if m:
        kind = m.group(1)
        sub = re.search(r"--utility-sub-type=(\S+)", joined)
        if sub:
            kind += ":" + sub.group(1).rsplit(".", 1)[-1]
        return f"chromium:{kind}"
    name = os.path.basename(argv[0].split(" ", 1)[0])
    if name.startswith("python"):
        return "python"
    return name


def kill_tree(pids: Iterable[int], timeout: float = 5.0) -> None:
    """SIGTERM the processes and all their descendants, SIGKILL what is left after timeout."""
    targets = descendants(pids)
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {p for p in targets if _alive(p)}
        if not alive:
            break
        reap(alive)
        time.sleep(0.05)
    for pid in descendants(targets) | targets:
        _signal(pid, signal.SIGKILL)
    reap(targets)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    st = None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            st = f.read()
    except OSError:
        return False
    state = st[st.rfind(b")") + 2:st.rfind(b")") + 3]
    return state != b"Z"


def reap(pids: Iterable[int]) -> None:
    """waitpid(WNOHANG) the given pids that are our children (others are ignored)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def my_children() -> set[int]:
    me = os.getpid()
    return {pid for pid, st in snapshot().items() if st[0] == me}


def kill_keys(keys: Iterable[Key]) -> int:
    """SIGKILL the processes (pid, start) still alive and reap those that are our children."""
    procs = snapshot()
    alive = [pid for pid, start in keys if pid in procs and procs[pid][1] == start
             and procs[pid][3] != "Z"]
    for pid in alive:
        _signal(pid, signal.SIGKILL)
    me = os.getpid()
    for pid, start in keys:
        st = procs.get(pid)
        if st is not None and st[1] == start and st[0] == me:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return len(alive)


def reap_orphans(keys: Iterable[Key], timeout: float = 10.0) -> set[int]:
    """Wait until none of the given processes (pid, start) is left, reaping those re-parented to
    us (orphans of a measured tree); SIGKILL the ones still running after timeout. Returns the
    killed pids. The start time guards against pids reused by unrelated processes."""
    me = os.getpid()
    starts = dict(keys)
    wanted = set(starts)
    deadline = time.monotonic() + timeout
    killed: set[int] = set()
    while wanted:
        procs = snapshot()
        for pid in list(wanted):
            st = procs.get(pid)
            if st is None or st[1] != starts[pid]:
                wanted.discard(pid)
            elif st[0] == me:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid  # someone else (a Popen) reaped it
                if done:
                    wanted.discard(pid)
        if not wanted:
            break
        now = time.monotonic()
        if now > deadline + 5:
            break  # killed and still not gone (a zombie whose parent never reaps it): give up
        if now > deadline:
            for pid in wanted - killed:
                _signal(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.02)
    return killed

"""The local backend's warm pool: `webrecord recorder --standby` processes kept ready so that a
Start claims one (docs/contracts.md section 1, "Standby") instead of starting Xvfb, PulseAudio,
Chromium and Python from nothing.

Layout under the state dir:

    slots/<slot id>/token        the slot's control token (0600), the claimed task's too
                   /port         written by the slot once it can be claimed
                   /recorder.log the slot's stdout and stderr (moved to the task dir on claim)
                   /claimed      present once a task claimed it
                   /work/        the slot's own logs and temporary Chromium profile

Each slot runs with `--lifeline-stdin` on a pipe this process holds: when the adapter dies,
even killed hard, the kernel closes the pipe and every idle slot exits. A claimed slot ignores
it and outlives a restart like any recorder. A slot that dies idle is discarded and replaced
(with a growing pause when slots keep failing to start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from webrecord import logs
from webrecord.adapter.backends.processes import descendants, pid_exists, pids_naming, terminate_pids
from webrecord.files import write_private

log = logging.getLogger(__name__)

_READY_SECONDS = 60.0  # a slot not claimable by then is discarded
_BACKOFF_MAX = 60.0


@dataclass(eq=False)
class Slot:
    directory: Path
    token: str
    proc: asyncio.subprocess.Process
    port: int | None = None
    claimed: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def needle(self) -> str:
        """A string only this slot's recorder (supervisor and worker) has on its command line
        (not its work dir: Chromium's profile lives there)."""
        return str(self.directory / "port")

    @property
    def idle(self) -> bool:
        return self.port is not None and not self.claimed and self.proc.returncode is None


class WarmPool:
    def __init__(self, root: Path, size: int, command: list[str], env: dict[str, str],
                 width: int, height: int, wanted: Callable[[int], int]) -> None:
        self.root = root
        self.size = size
        self.command = command
        self.env = env
        self.width, self.height = width, height
        # wanted(idle or starting slots) -> how many slots the machine has room for now.
        self.wanted = wanted
        self.slots: list[Slot] = []
        self._tasks: set[asyncio.Task] = set()
        self._failures = 0
        self._closing = False
        self._refilling = False

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._clear_leftovers)
        self.refill()

    def _clear_leftovers(self) -> None:
        """Slots of an earlier run: idle ones (its lifeline gone, they are exiting) are killed
        and removed; claimed ones stay until their recorder has gone."""
        for directory in self.root.iterdir():
            pids = pids_naming(str(directory / "work"))
            if (directory / "claimed").exists() and pids:
                continue
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
            shutil.rmtree(directory, ignore_errors=True)

    async def close(self) -> None:
        """Kill every idle or starting slot (claimed ones are recordings: they stay)."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for slot in [s for s in self.slots if not s.claimed]:
            await _kill(slot)
            shutil.rmtree(slot.directory, ignore_errors=True)
        self.slots.clear()

    # ---------------------------------------------------------------- slots

    def refill(self) -> None:
        """Start slots in the background up to the size the machine has room for."""
        if self._closing or self._refilling:
            return
        self._refilling = True
        self._spawn_task(self._refill())

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refill(self) -> None:
        try:
            while not self._closing:
                waiting = [s for s in self.slots if not s.claimed]
                if len(waiting) >= min(self.size, self.wanted(len(waiting))):
                    return
                if self._failures:
                    await asyncio.sleep(min(_BACKOFF_MAX, 2 ** (self._failures - 1)))
                    if self._closing:
                        return
                await self._start_slot()
        finally:
            self._refilling = False

    async def _start_slot(self) -> None:
        directory = self.root / secrets.token_hex(8)
        (directory / "work").mkdir(parents=True)
        token = secrets.token_urlsafe(32)
        write_private(directory / "token", token)
        argv = [*self.command, "--standby", "--lifeline-stdin",
                "--work-dir", str(directory / "work"),
                "--control-host", "127.0.0.1", "--control-port", "0",
                "--port-file", str(directory / "port"), "--token-file", str(directory / "token"),
                "--width", str(self.width), "--height", str(self.height)]
        try:
            with open(directory / "recorder.log", "ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.PIPE, stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT, env=self.env, cwd=str(directory),
                    start_new_session=True)  # a claimed slot outlives a restart of the server
        except OSError as exc:
            logs.event(log, "warm slot did not start", logging.ERROR, error=str(exc))
            shutil.rmtree(directory, ignore_errors=True)
            self._failures += 1
            return
        slot = Slot(directory, token, proc)
        self.slots.append(slot)
        logs.event(log, "warm slot starting", slot=directory.name, pid=proc.pid)
        self._spawn_task(self._watch(slot))

    async def _watch(self, slot: Slot) -> None:
        """Ready when the port file appears; discarded (and replaced) when it dies idle."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _READY_SECONDS
        port_file = slot.directory / "port"
        while slot.proc.returncode is None and loop.time() < deadline:
            with contextlib.suppress(OSError, ValueError):
                slot.port = int(port_file.read_text().strip())
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(slot.proc.wait()), 0.05)
        if slot.port is not None and slot.proc.returncode is None:
            self._failures = 0
            slot.ready.set()
            logs.event(log, "warm slot ready", slot=slot.directory.name, pid=slot.proc.pid,
                       port=slot.port)
        else:
            self._failures += 1
        code = await slot.proc.wait() if slot.port is not None else None
        if slot.claimed:  # a recording now: the backend watches it; its slot dir goes after
            await slot.proc.wait()
            shutil.rmtree(slot.directory, ignore_errors=True)
            return
        if self._closing:
            return
        logs.event(log, "warm slot discarded", logging.WARNING, slot=slot.directory.name,
                   code=code if code is not None else slot.proc.returncode,
                   reason="exited while idle" if slot.port is not None else "never became ready")
        await _kill(slot)
        self._drop(slot)
        self.refill()

    def _drop(self, slot: Slot) -> None:
        with contextlib.suppress(ValueError):
            self.slots.remove(slot)
        shutil.rmtree(slot.directory, ignore_errors=True)

    # ---------------------------------------------------------------- claims

    def take(self) -> Slot | None:
        """A ready slot, now reserved for one claim (None: none ready); refills behind it."""
        for slot in self.slots:
            if slot.idle:
                slot.claimed = True
                write_private(slot.directory / "claimed", "1")
                self.refill()
                return slot
        return None

    async def claim(self, slot: Slot, http: aiohttp.ClientSession, body: dict[str, Any]
                    ) -> dict[str, Any] | None:
        """POST /claim; the task's status, or None after killing a slot that did not take it
        (the caller starts the task cold)."""
        try:
            async with http.post(f"http://127.0.0.1:{slot.port}/claim", json=body,
                                 headers={"Authorization": f"Bearer {slot.token}"},
                                 timeout=aiohttp.ClientTimeout(total=30)) as reply:
                payload = await reply.json(content_type=None)
                if reply.status == 200 and isinstance(payload, dict):
                    return payload
                why = f"HTTP {reply.status}: {payload}"
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            why = type(exc).__name__
        logs.event(log, "warm slot refused the claim; starting cold", logging.WARNING,
                   slot=slot.directory.name, reason=why)
        await _kill(slot)
        self._drop(slot)
        return None

    # ---------------------------------------------------------------- reporting

    def idle_count(self) -> int:
        return sum(1 for s in self.slots if not s.claimed)

    def health(self) -> dict[str, int]:
        ready = sum(1 for s in self.slots if s.idle)
        return {"size": self.size, "ready": ready, "starting": self.idle_count() - ready}


async def _kill(slot: Slot) -> None:
    """SIGTERM the slot's group (it tears its stage down), SIGKILL what is left after 5 s."""
    tree = {slot.proc.pid, *descendants(slot.proc.pid)}
    if slot.proc.returncode is None:
        await terminate_pids({slot.proc.pid}, grace=5.0)
    tree.update(pids_naming(str(slot.directory / "work")))  # the recorder and its Chromium
    await terminate_pids({p for p in tree if pid_exists(p)}, grace=2.0)
    await slot.proc.wait()

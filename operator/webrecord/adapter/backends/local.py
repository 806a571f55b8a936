"""The embedded backend: recorders as subprocesses on this machine, task state in SQLite.

Layout under `state_dir`:

    tasks.sqlite                 the task table (adapter.store)
    output/                      finished videos (WEBRECORD_OUTPUT_DIR for the recorder, cfs case)
    tasks/<task_id>/task.json    the RecordingTask the recorder reads
                   /token        the control endpoint's bearer token (0600)
                   /port         the control port, written by the recorder
                   /status.json  the recorder's RecorderStatus, rewritten on every change
                   /recorder.log the recorder's stdout and stderr
                   /work/        segments and final files

A finished task's directory and row are pruned `retention_seconds` after its finishTime (at
startup and every `retention_check_seconds`); queued and running tasks never are.

Admission by measured cost (webrecord.api.cost): a queued task starts when the running
recordings plus it fit the CPU and memory budget (at most `max_concurrent` at once); until then
it waits (FIFO, persisted, up to `max_queued`) with the reason in its status message. Recorders run in their own session so they outlive a restart of the server: on
`open()` a task whose recorder still runs (pid alive and its command line names the task) is
watched again, one whose recorder is gone is finished from its last status file (or marked
`RecorderLost`), and queued tasks start as slots free up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_incrementing

from webrecord import logs
from webrecord.adapter.backends.base import (
    ActionNotAllowed,
    Backend,
    BackendUnavailable,
    CapacityExceeded,
    TaskNotFound,
    UPDATE_LIVE,
    TaskPage,
    check_action,
    check_live_update,
)
from webrecord.adapter.backends.pool import WarmPool
from webrecord.adapter.backends.processes import alive_naming, pids_naming, terminate_pids
from webrecord.adapter.settings import AdapterSettings
from webrecord.adapter.store import RunState, TaskRow, TaskStore
from webrecord.api.models import (
    Action,
    ErrorCode,
    LiveOutput,
    Phase,
    RecorderStatus,
    RecordingTask,
    Result,
)
from webrecord.api.cost import Cost, CostModel
from webrecord.api.resource import status_from_json
from webrecord.files import contained, write_private
from webrecord.recorder.handover import resume_env
from webrecord.recorder.encoding import encoding_for
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

_CONTROL_ATTEMPTS = 3
_PORT_WAIT_SECONDS = 20.0
_EXIT_WAIT_SECONDS = 30.0
_START_PAUSED = "start-paused"  # marker in the task dir: Pause came while the task was queued
_SLOT = "slot"  # marker in the task dir: a warm slot runs it (holds the slot's needle)


class _NoAnswer(Exception):
    """The recorder did not answer a control (connection refused, timeout, garbled reply)."""


class _ControlNotDelivered(Exception):
    """The control cannot reach the recorder and a retry will not change that."""


def create(settings: AdapterSettings) -> "LocalBackend":
    return LocalBackend(settings)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, settings: AdapterSettings) -> None:
        self.settings = settings
        self.root = Path(settings.state_dir).resolve()
        self.output_dir = self.root / "output"
        self.store = TaskStore(self.root / "tasks.sqlite")
        self._lock = asyncio.Lock()  # one scheduling decision at a time (pump, queued cancel)
        self._watchers: dict[str, asyncio.Task] = {}
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._http: aiohttp.ClientSession | None = None
        self._closing = False
        self._pruner: asyncio.Task | None = None
        self.budget = settings.budget()
        self.costs = CostModel()
        self._recorder = RecorderSettings()  # the recorders read the same environment (fps)
        self.pool: WarmPool | None = None
        if settings.warm_slots:
            self.pool = WarmPool(self.root / "slots", settings.warm_slots, self._command(),
                                 self._recorder_env(), settings.warm_slot_width,
                                 settings.warm_slot_height, self._slots_wanted)

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=5))
        for row in self.store.in_state(RunState.RUNNING):
            pid = row.pid if row.pid and alive_naming(row.pid, self._needle(row.task_id)) else None
            pid = pid or self._survivor(row.task_id)
            if pid:
                logs.event(log, "re-attached to running recorder", task_id=row.task_id, pid=pid)
                self._watch(row.task_id, pid, None)
            else:
                self._watchers[row.task_id] = asyncio.create_task(
                    self._recorder_gone(row, "recorder process ended while the server was down"))
        queued = self.store.count(RunState.QUEUED)
        if queued:
            logs.event(log, "resuming queued tasks", queued=queued)
        await self._pump()
        if self.pool is not None:
            await self.pool.open()
        if self.settings.retention_seconds:
            self._pruner = asyncio.create_task(self._prune_loop())

    async def close(self) -> None:
        self._closing = True
        if self._pruner is not None:
            self._pruner.cancel()
        for watcher in list(self._watchers.values()):
            watcher.cancel()
        for watcher in list(self._watchers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        if self.pool is not None:
            await self.pool.close()  # idle slots are no recordings: they never outlive us
        if self.settings.stop_recorders_on_exit:
            await self.terminate_all()
        if self._http is not None:
            await self._http.close()
        self.store.close()

    async def terminate_all(self, grace: float = 10.0) -> None:
        """Stop every recorder this state dir knows (tests, `stop_recorders_on_exit`)."""
        rows = self.store.in_state(RunState.RUNNING)
        pids = [row.pid for row in rows if row.pid]
        pids += [p.pid for p in self._procs.values()]
        for row in rows:
            pids += pids_naming(self._needle(row.task_id))
        await terminate_pids(set(pids), grace)

    # ------------------------------------------------------------ Backend

    async def start(self, task: RecordingTask, owner: str) -> RecorderStatus:
        slot_free = self.store.count(RunState.RUNNING) < self.settings.max_concurrent
        if not slot_free and self.store.count(RunState.QUEUED) >= self.settings.max_queued:
            raise CapacityExceeded(
                f"all {self.settings.max_concurrent} recorders are busy and "
                f"{self.settings.max_queued} tasks are already queued; retry when some finish"
            )
        directory = self.task_dir(task.task_id)
        (directory / "work").mkdir(parents=True, exist_ok=True)
        # The task may hold an EncryptKey: readable by this user only, from its creation.
        write_private(directory / "task.json", task.model_dump_json(by_alias=True, exclude_none=True))
        status = RecorderStatus(
            task_id=task.task_id, status=Phase.NORMAL, create_time=task.create_time,
            message="queued",
        )
        self.store.insert(task.task_id, owner, task.spec, status, task.create_time or logs.now())
        logs.event(log, "task queued", task_id=task.task_id)
        await self._pump()
        return self._status_of(task.task_id)

    async def describe(self, task_id: str, owner: str) -> RecorderStatus:
        found = self.store.get_status(task_id)
        if found is None or found[0] != owner:
            raise TaskNotFound(f"Data.TaskID: no task {task_id!r} for this ApiAppKey")
        return found[1]

    async def list(self, owner: str, offset: int, limit: int) -> TaskPage:
        tasks, total = self.store.page(owner, offset, limit)
        return TaskPage(tasks=tasks, total=total, offset=offset, limit=limit)

    async def control(self, task_id: str, owner: str, action: Action) -> RecorderStatus:
        row = self._owned(task_id, owner)
        if row.state is RunState.QUEUED:
            return await self._control_queued(row, action)
        check_action(action, self._latest(row).status)
        if row.state is RunState.DONE:  # pragma: no cover - check_action refuses finished tasks
            raise ActionNotAllowed(f"{action.value}: the task has finished", row.status.status)
        seq = self.store.next_seq(task_id)
        status = await self._send_control(row, action, seq)
        return self._after_send(task_id, status)

    async def set_live(self, task_id: str, owner: str, outputs: list[LiveOutput]) -> RecorderStatus:
        row = self._owned(task_id, owner)
        # A queued task is `normal` and a finished one `finished`: both refused here.
        check_live_update(self._latest(row).status)
        if row.state is not RunState.RUNNING:  # pragma: no cover - refused above
            raise ActionNotAllowed(f"{UPDATE_LIVE}: no recorder runs the task", row.status.status)
        live = [o.wire() for o in outputs]
        status = await self._send(row, UPDATE_LIVE, "PUT", "/live", {"live": live})
        self._keep_live(task_id, outputs)
        return self._after_send(task_id, status)

    def _latest(self, row: TaskRow) -> RecorderStatus:
        """The status to judge a control against: the stored one may be up to one poll old
        (the page itself can pause or resume through window.pauseRecord()), so a running
        recorder's own latest status file wins."""
        if row.state is RunState.RUNNING:
            fresh = status_from_json(_read_bytes(self.task_dir(row.task_id) / "status.json"))
            if fresh is not None:
                return fresh
        return row.status

    def _after_send(self, task_id: str, status: RecorderStatus) -> RecorderStatus:
        current = self.store.get(task_id)
        if current is not None and current.state is RunState.RUNNING:
            self.store.set_status(task_id, self._complete(status, current))
        return self._status_of(task_id)

    def _keep_live(self, task_id: str, outputs: list[LiveOutput]) -> None:
        """The new list in the task file too: a recorder that replaces a lost one (resuming
        from the segments) reads it there and streams to the receivers of now, not of Start."""
        path = self.task_dir(task_id) / "task.json"
        task = RecordingTask.model_validate_json(path.read_bytes())
        task.spec.output.live = outputs or None
        write_private(path, task.model_dump_json(by_alias=True, exclude_none=True))

    def metric_collectors(self) -> list[Any]:
        from webrecord.metrics import FunctionGauge, PhaseGauge

        return [PhaseGauge(self.store.by_phase),
                FunctionGauge("webrecord_queue_length", "Tasks waiting for a recorder slot",
                              lambda: self.store.count(RunState.QUEUED))]

    async def health(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "running": self.store.count(RunState.RUNNING),
            "queued": self.store.count(RunState.QUEUED),
            "maxConcurrent": self.settings.max_concurrent,
            "capacity": self._capacity(),
            **({"warmSlots": self.pool.health()} if self.pool is not None else {}),
        }

    def _capacity(self) -> dict[str, float]:
        used = self._used(self.store.in_state(RunState.RUNNING))
        return {"cpuCores": round(self.budget.cpu_cores, 2), "cpuCoresUsed": round(used.cpu_cores, 2),
                "memoryMiB": round(self.budget.memory_mib), "memoryMiBUsed": round(used.memory_mib)}

    async def prune(self, now: int | None = None) -> list[str]:
        """Remove tasks finished more than `retention_seconds` ago: directory, then row (a
        row left by a crash in between is pruned next time). Returns their ids."""
        if not self.settings.retention_seconds:
            return []
        before = (logs.now() if now is None else now) - self.settings.retention_seconds
        pruned = []
        for task_id in self.store.finished_before(before):
            if task_id in self._watchers and not self._watchers[task_id].done():
                continue  # its watcher is still winding down (reaping the process)
            await asyncio.to_thread(shutil.rmtree, self.task_dir(task_id), True)
            if self.store.delete_finished(task_id):
                pruned.append(task_id)
                self._watchers.pop(task_id, None)
        if pruned:
            logs.event(log, "finished tasks pruned", count=len(pruned),
                       retention_s=self.settings.retention_seconds)
        return pruned

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:  # noqa: BLE001 - try again next period
                logs.event(log, "pruning failed", logging.WARNING, error=str(exc))
            await asyncio.sleep(self.settings.retention_check_seconds)

    # ------------------------------------------------------------ helpers

    def task_dir(self, task_id: str) -> Path:
        return contained(self.root / "tasks", task_id)

    def _owned(self, task_id: str, owner: str) -> TaskRow:
        row = self.store.get(task_id)
        if row is None or row.owner != owner:
            raise TaskNotFound(f"Data.TaskID: no task {task_id!r} for this ApiAppKey")
        return row

    def _status_of(self, task_id: str) -> RecorderStatus:
        found = self.store.get_status(task_id)
        assert found is not None
        return found[1]

    async def _control_queued(self, row: TaskRow, action: Action) -> RecorderStatus:
        async with self._lock:
            current = self.store.get(row.task_id)
            assert current is not None
            if current.state is not RunState.QUEUED:  # started meanwhile: retry as running
                pass
            elif action in (Action.STOP, Action.CANCEL):
                now = logs.now()
                code = ErrorCode.CANCELED if action is Action.CANCEL else ErrorCode.NOTHING_RECORDED
                status = current.status.model_copy(
                    update={
                        "status": Phase.FINISHED,
                        "cancel_time": now if action is Action.CANCEL else None,
                        "stop_time": now if action is Action.STOP else None,
                        "finish_time": now,
                        "message": "stopped before it started",
                        "result": Result(
                            error_code=code,
                            error_message=f"{action.value} before the recorder started",
                        ),
                    }
                )
                self.store.set_status(row.task_id, status, RunState.DONE)
                logs.event(log, "queued task ended", task_id=row.task_id, action=action.value)
                return status
            elif action is Action.PAUSE:
                # Kept for the recorder: it starts paused (recorder/handover.py).
                write_private(self.task_dir(row.task_id) / _START_PAUSED, "1")
                status = current.status.model_copy(update={
                    "message": "queued; paused before the first frame: the recording starts paused",
                    "last_action_seq": self.store.next_seq(row.task_id)})
                self.store.set_status(row.task_id, status)
                return status
            elif action is Action.RESUME and (self.task_dir(row.task_id) / _START_PAUSED).exists():
                (self.task_dir(row.task_id) / _START_PAUSED).unlink()
                status = current.status.model_copy(update={
                    "message": "queued", "last_action_seq": self.store.next_seq(row.task_id)})
                self.store.set_status(row.task_id, status)
                return status
            else:
                raise ActionNotAllowed(
                    f"{action.value} is not allowed while the task is queued for a free recorder "
                    "(only Pause, Stop and Cancel apply)",
                    Phase.NORMAL,
                )
        return await self.control(row.task_id, row.owner, action)

    async def _send_control(self, row: TaskRow, action: Action, seq: int) -> RecorderStatus:
        return await self._send(row, action.value, "POST", "/control",
                                {"action": action.value, "seq": seq})

    async def _send(self, row: TaskRow, what: str, method: str, path: str,
                    body: dict[str, Any]) -> RecorderStatus:
        """Send a control (POST /control) or the live list (PUT /live) to the recorder:
        _CONTROL_ATTEMPTS tries while it does not answer (waits 0.2 s, 0.4 s); a refusal (409)
        or another HTTP answer is final. Both are idempotent (a control carries its seq)."""
        directory = self.task_dir(row.task_id)
        token = (directory / "token").read_text().strip()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(_CONTROL_ATTEMPTS),
            wait=wait_incrementing(start=0.2, increment=0.2),
            retry=retry_if_exception_type(_NoAnswer), reraise=True)
        try:
            return await retrying(self._send_once, row.task_id, token, what, method, path, body)
        except (_NoAnswer, _ControlNotDelivered) as exc:
            last_error = str(exc)
        logs.event(log, "control not delivered", logging.WARNING, task_id=row.task_id,
                   action=what, seq=body.get("seq"), error=last_error)
        raise BackendUnavailable(f"{what}: could not reach the recorder ({last_error}); retry")

    async def _send_once(self, task_id: str, token: str, what: str, method: str, path: str,
                         body: dict[str, Any]) -> RecorderStatus:
        """One try; raises _NoAnswer (retried), _ControlNotDelivered or ActionNotAllowed."""
        port = await self._control_port(task_id)
        if port is None:
            raise _ControlNotDelivered("the recorder has not opened its control port")
        try:
            assert self._http is not None
            async with self._http.request(method, f"http://127.0.0.1:{port}{path}", json=body,
                                          headers={"Authorization": f"Bearer {token}"}) as reply:
                payload = await reply.json(content_type=None)
                if reply.status == 200:
                    return RecorderStatus.model_validate(payload)
                if reply.status == 409:
                    message = str(payload.get("errorMessage") or "action does not fit the status")
                    raise ActionNotAllowed(f"{what}: {message}")
                # 400/401 will not get better by retrying
                raise _ControlNotDelivered(f"recorder answered HTTP {reply.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise _NoAnswer(type(exc).__name__) from exc

    async def _control_port(self, task_id: str) -> int | None:
        port_file = self.task_dir(task_id) / "port"
        deadline = asyncio.get_running_loop().time() + _PORT_WAIT_SECONDS
        while True:
            with contextlib.suppress(OSError, ValueError):
                return int(port_file.read_text().strip())
            row = self.store.get(task_id)
            if row is None or row.state is not RunState.RUNNING:
                return None
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.1)

    def _used(self, running: list[TaskRow]) -> Cost:
        """What the running recordings and the idle warm slots use (an idle slot at its
        measured idle cost; a claimed one is a running recording, counted at the task's)."""
        idle = self.pool.idle_count() if self.pool is not None else 0
        return sum((self._cost(r) for r in running), self.costs.idle_slot() * idle)

    def _slots_wanted(self, waiting: int) -> int:
        """How many warm slots are worth keeping now, `waiting` of them idle or starting: no
        more than recordings could still start (max_concurrent), and a new one only while a
        recording of the slots' size would still be admitted beside the running recordings
        and the waiting slots."""
        running = self.store.in_state(RunState.RUNNING)
        room = max(0, self.settings.max_concurrent - len(running))
        width, height = self.settings.warm_slot_width, self.settings.warm_slot_height
        recording = self.costs.of(width, height, self._recorder.fps_for(width, height))
        if waiting < room and not self.budget.admits(self._used(running), len(running), recording):
            return waiting
        return room

    def _cost(self, row: TaskRow) -> Cost:
        enc = encoding_for(self._recorder, row.spec)  # the task's frame rate, or the default
        return self.costs.of(row.spec.width, row.spec.height, enc.fps, enc.audio_only)

    async def _pump(self) -> None:
        """Start queued tasks (FIFO) while the budget admits the next one; a task that must
        wait says why in its status message (Describe stays `normal`)."""
        if self._closing:
            return
        async with self._lock:
            while self.store.count(RunState.RUNNING) < self.settings.max_concurrent:
                queued = self.store.in_state(RunState.QUEUED)
                if not queued:
                    break
                running = self.store.in_state(RunState.RUNNING)
                used = self._used(running)
                head = queued[0]
                if not self.budget.admits(used, len(running), self._cost(head)):
                    self._say_waiting(head, self.budget.why_waiting(used, len(running), self._cost(head)))
                    break
                await self._spawn(head)
            else:
                for row in self.store.in_state(RunState.QUEUED)[:1]:
                    self._say_waiting(row, f"queued: all {self.settings.max_concurrent} "
                                           "recorders are busy")

    def _say_waiting(self, row: TaskRow, why: str) -> None:
        if row.status.message != why:
            self.store.set_status(row.task_id, row.status.model_copy(update={"message": why}))
            logs.event(log, "task waits for capacity", task_id=row.task_id, reason=why)

    async def _spawn(self, row: TaskRow, resume: dict[str, str] | None = None) -> None:
        """Start the task's recorder; `resume`: env of a replacement (the work dir and status
        file of the lost one stay, so it resumes from the segments and keeps startTime)."""
        directory = self.task_dir(row.task_id)
        for name in ("port",) if resume is not None else ("port", "status.json"):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        if resume is None and self.pool is not None and await self._claim_slot(row):
            return
        with contextlib.suppress(FileNotFoundError):
            (directory / _SLOT).unlink()  # a replacement of a claimed slot runs cold
        token_file = directory / "token"
        write_private(token_file, secrets.token_urlsafe(32))
        command = self._command() + [
            "--task", str(directory / "task.json"),
            "--work-dir", str(directory / "work"),
            "--control-host", "127.0.0.1",
            "--control-port", "0",
            "--port-file", str(directory / "port"),
            "--token-file", str(token_file),
            "--status-file", str(directory / "status.json"),
        ]
        env = self._recorder_env()
        if resume is None and (directory / _START_PAUSED).exists():
            resume = resume_env("paused")  # paused while it was queued
        env.update(resume or {})
        try:
            with open(directory / "recorder.log", "ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *command, stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(directory),
                    start_new_session=True,  # outlives a restart of the server
                )
        except OSError as exc:
            logs.event(log, "recorder did not start", logging.ERROR, task_id=row.task_id, error=str(exc))
            self._finish(row, row.status, ErrorCode.RECORDER_LOST, f"recorder did not start: {exc.strerror}")
            return
        self._procs[row.task_id] = proc
        self.store.set_running(row.task_id, proc.pid)
        self.store.set_status(row.task_id, row.status.model_copy(update={"message": "starting"}))
        logs.event(log, "recorder started", task_id=row.task_id, pid=proc.pid)
        self._watch(row.task_id, proc.pid, proc)

    def _command(self) -> list[str]:
        return list(self.settings.recorder_command) or [sys.executable, "-m", "webrecord.cli", "recorder"]

    def _recorder_env(self) -> dict[str, str]:
        """Every recorder's environment (cold or warm slot): nothing in it is per task."""
        env = dict(os.environ)
        env.setdefault("WEBRECORD_OUTPUT_DIR", str(self.output_dir))
        # The recorder judges RecordURL again (and its egress proxy every connection) with the
        # address policy this server applied at Start.
        env.setdefault("WEBRECORD_EGRESS_ALLOW_LOOPBACK", str(self.settings.loopback_allowed()).lower())
        env.setdefault("WEBRECORD_EGRESS_DENY_PRIVATE", str(self.settings.url_deny_private).lower())
        return env

    async def _claim_slot(self, row: TaskRow) -> bool:
        """Hand the task to a ready warm slot; False when none is ready or it refused (the
        caller starts the task cold). Same files as a cold recorder: token, port, status."""
        assert self.pool is not None and self._http is not None
        slot = self.pool.take()
        if slot is None:
            return False
        directory = self.task_dir(row.task_id)
        task = RecordingTask.model_validate_json((directory / "task.json").read_text())
        env = resume_env("paused") if (directory / _START_PAUSED).exists() else {}
        write_private(directory / "token", slot.token)
        write_private(directory / _SLOT, slot.needle)  # before the claim: a restart finds it
        with contextlib.suppress(OSError):  # the slot keeps writing to it, under its new name
            if not (directory / "recorder.log").exists():
                os.replace(slot.directory / "recorder.log", directory / "recorder.log")
        reply = await self.pool.claim(slot, self._http, {
            "task": task.model_dump(mode="json", by_alias=True, exclude_none=True),
            "workDir": str(directory / "work"), "statusFile": str(directory / "status.json"),
            "env": env})
        if reply is None:
            (directory / _SLOT).unlink()
            return False
        write_private(directory / "port", str(slot.port))
        self._procs[row.task_id] = slot.proc
        self.store.set_running(row.task_id, slot.proc.pid)
        self.store.set_status(row.task_id, row.status.model_copy(
            update={"message": "starting (warm slot)"}))
        logs.event(log, "recorder started", task_id=row.task_id, pid=slot.proc.pid, warm=True)
        self._watch(row.task_id, slot.proc.pid, slot.proc)
        return True

    def _watch(self, task_id: str, pid: int, proc: asyncio.subprocess.Process | None) -> None:
        self._watchers[task_id] = asyncio.create_task(self._watch_loop(task_id, pid, proc))

    async def _watch_loop(self, task_id: str, pid: int, proc: asyncio.subprocess.Process | None) -> None:
        """Mirror the status file into the store until the task finishes or the recorder dies."""
        status_file = self.task_dir(task_id) / "status.json"
        last_raw = b""
        try:
            while True:
                exited = (proc.returncode is not None) if proc else not alive_naming(pid, self._needle(task_id))
                raw = _read_bytes(status_file)
                if raw and raw != last_raw:
                    last_raw = raw
                    status = status_from_json(raw)
                    row = self.store.get(task_id)
                    stale = (
                        status is not None and row is not None
                        and status.status is not Phase.FINISHED
                        and status.last_action_seq < row.status.last_action_seq
                    )  # written before a control whose reply we already stored
                    if status is not None and row is not None and not stale:
                        status = self._complete(status, row)
                        if status.status is Phase.FINISHED:
                            self.store.set_status(task_id, status, RunState.DONE)
                            logs.event(log, "task finished", task_id=task_id,
                                       error=status.result.error_code)
                            break
                        self.store.set_status(task_id, status)
                if exited:
                    # The recorder forks its worker into its own session; if only the process we
                    # started is gone, the worker may still be finishing: follow it.
                    survivor = self._survivor(task_id)
                    if survivor:
                        if proc is not None:
                            asyncio.create_task(self._reap(task_id, proc))
                        pid, proc = survivor, None
                        continue
                    raw = _read_bytes(status_file)
                    status = status_from_json(raw)
                    if status is not None and status.status is Phase.FINISHED and raw != last_raw:
                        continue  # finished just now: record it through the normal path
                    row = self.store.get(task_id)
                    if row is not None:
                        code = proc.returncode if proc else None
                        await self._recorder_gone(row, f"recorder exited (code {code}) before finishing")
                    break
                if proc is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(proc.wait()), self.settings.status_poll_seconds)
                else:
                    await asyncio.sleep(self.settings.status_poll_seconds)
        finally:
            if self._watchers.get(task_id) is asyncio.current_task():  # not a restart's watcher
                self._watchers.pop(task_id, None)
        if proc is not None:
            asyncio.create_task(self._reap(task_id, proc))
        await self._pump()

    async def _reap(self, task_id: str, proc: asyncio.subprocess.Process) -> None:
        try:
            await asyncio.wait_for(proc.wait(), _EXIT_WAIT_SECONDS)
        except asyncio.TimeoutError:
            logs.event(log, "recorder did not exit after finishing; killing it", logging.WARNING,
                       task_id=task_id, pid=proc.pid)
            await terminate_pids({proc.pid}, grace=5.0)
        finally:
            self._procs.pop(task_id, None)

    def _survivor(self, task_id: str) -> int | None:
        pids = pids_naming(self._needle(task_id))
        return min(pids) if pids else None

    def _needle(self, task_id: str) -> str:
        """What only the task's recorder processes have on their command line: the task file
        (cold), or the work dir of the warm slot that claimed it (its `_SLOT` marker)."""
        directory = self.task_dir(task_id)
        with contextlib.suppress(OSError):
            return (directory / _SLOT).read_text().strip() or str(directory / "task.json")
        return str(directory / "task.json")

    def _complete(self, status: RecorderStatus, row: TaskRow) -> RecorderStatus:
        """Fill what the recorder may not know (create time, restarts) from our row."""
        if status.create_time is None:
            status = status.model_copy(update={"create_time": row.created})
        if status.restarts < row.status.restarts:
            status = status.model_copy(update={"restarts": row.status.restarts})
        if status.task_id != row.task_id:
            status = status.model_copy(update={"task_id": row.task_id})
        return status

    async def _recorder_gone(self, row: TaskRow, reason: str) -> None:
        """The recorder process ended before finishing: start a new one that resumes from the
        task's segments (bounded, with backoff), or end the task with RecorderLost."""
        status = status_from_json(_read_bytes(self.task_dir(row.task_id) / "status.json"))
        if status is not None and status.status is Phase.FINISHED:
            self._finish_from_files(row, reason)
            return
        current = self._complete(status, row) if status is not None else row.status
        restarts = row.status.restarts
        if self._closing or restarts >= self.settings.max_restarts:
            self._finish_from_files(row, f"{reason}; no restarts left ({restarts} of "
                                         f"{self.settings.max_restarts} used)")
            return
        with contextlib.suppress(FileNotFoundError):
            (self.task_dir(row.task_id) / "port").unlink()  # controls wait for the new one
        wait = min(60.0, self.settings.restart_backoff_seconds * 2 ** restarts)
        logs.event(log, "recorder lost; restarting it", logging.WARNING, task_id=row.task_id,
                   reason=reason, restarts=restarts + 1, wait_s=wait)
        current = current.model_copy(update={
            "restarts": restarts + 1,
            "message": f"{reason}; restart {restarts + 1} of {self.settings.max_restarts}"})
        self.store.set_status(row.task_id, current)
        await asyncio.sleep(wait)
        row = self.store.get(row.task_id)
        if row is None or row.state is not RunState.RUNNING or self._closing:
            return
        await self._spawn(row, resume_env(current.status.value))

    def _finish_from_files(self, row: TaskRow, lost_reason: str) -> None:
        status = status_from_json(_read_bytes(self.task_dir(row.task_id) / "status.json"))
        if status is not None:
            status = self._complete(status, row)
            if status.status is Phase.FINISHED:
                self.store.set_status(row.task_id, status, RunState.DONE)
                return
        self._finish(row, status or row.status, ErrorCode.RECORDER_LOST, lost_reason)

    def _finish(self, row: TaskRow, status: RecorderStatus, code: ErrorCode, message: str) -> None:
        now = logs.now()
        final = status.model_copy(
            update={
                "status": Phase.FINISHED,
                "finish_time": now,
                "stop_time": status.stop_time or (now if status.start_time else None),
                "message": message,
                "result": Result(error_code=code, error_message=message, videos=status.result.videos),
            }
        )
        self.store.set_status(row.task_id, self._complete(final, row), RunState.DONE)
        logs.event(log, "task ended without a recorder result", logging.WARNING,
                   task_id=row.task_id, error=code.value, reason=message)


def _task_pids(task_file: Path) -> list[int]:
    """Live processes whose command line names this task file (a cold recorder and its fork)."""
    return pids_naming(str(task_file))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""

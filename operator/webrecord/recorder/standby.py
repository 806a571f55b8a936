"""`webrecord recorder --standby`: a warm slot. It starts the stage (display, sound server,
egress proxy, Chromium on a blank page with a fresh profile; recorder/stage.py) and the
control endpoint before any task exists, then waits for one authenticated `POST /claim`
carrying the task (docs/contracts.md section 1). The claimed task runs exactly as
`webrecord recorder --task` runs it (runtask.run_task); the process exits after it, so a slot
never serves a second task.

While idle the slot ends itself when it can no longer serve (Chromium, Xvfb or PulseAudio
died: exit EXIT_UNUSABLE, the spawner replaces it), on SIGTERM/SIGINT (exit 0), and with
`--lifeline-stdin` when its stdin reaches end of file (the spawner that holds the pipe's other
end is gone, even killed hard: no idle slot outlives it)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from webrecord.api.models import RecordingTask
from webrecord.egress.policy import EgressSettings
from webrecord.files import try_write_atomic
from webrecord.logs import event
from webrecord.recorder.control import ControlServer, error_reply
from webrecord.recorder.errors import RecorderError
from webrecord.recorder.runtask import run_task
# Imported while idle, not at the claim: the session, and the segment store with boto3
# (measured: 0.18-0.5 s between the claim and the page's navigation otherwise).
from webrecord.recorder.session import Session  # noqa: F401
from webrecord.storage import segments  # noqa: F401
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.stage import Stage
from webrecord.recorder.supervise import install_stop_signals
from webrecord.recorder.validation import validation_message

log = logging.getLogger(__name__)

# Exit code of a slot that could not start or lost a part while idle: discard and replace it.
EXIT_UNUSABLE = 3
# Per-task settings a claim may carry (what spawners pass a replacement recorder through its
# environment: recorder/handover.py); anything else of the environment is the slot's own.
CLAIM_ENV = frozenset({"WEBRECORD_START_PAUSED", "WEBRECORD_RESUME_STOPPED"})
_SESSION_WAIT_SECONDS = 60.0


class ClaimError(Exception):
    """A claim body that breaks a rule: the message names the field."""


@dataclass
class Claim:
    task: RecordingTask
    work_dir: Path
    status_file: Path | None
    env: dict[str, str]


def _path(body: dict[str, Any], key: str) -> Path | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not os.path.isabs(value) or "\0" in value:
        raise ClaimError(f"{key}: must be an absolute path")
    return Path(value)


def parse_claim(body: Any, default_work_dir: Path) -> Claim:
    """The claim body `{"task": RecordingTask, "workDir"?, "statusFile"?, "env"?}`, checked."""
    if not isinstance(body, dict):
        raise ClaimError("body: must be a JSON object")
    unknown = sorted(set(body) - {"task", "workDir", "statusFile", "env"})
    if unknown:
        raise ClaimError(f"{unknown[0]}: unknown field (allowed: task, workDir, statusFile, env)")
    if "task" not in body:
        raise ClaimError("task: is required")
    try:
        task = RecordingTask.model_validate(body["task"])
    except ValidationError as exc:
        raise ClaimError(f"task: {validation_message(exc)}") from None
    env = body.get("env") or {}
    if not isinstance(env, dict):
        raise ClaimError("env: must be an object of strings")
    for key, value in env.items():
        if key not in CLAIM_ENV:
            raise ClaimError(f"env.{key}: not a per-task setting (allowed: {', '.join(sorted(CLAIM_ENV))})")
        if not isinstance(value, str):
            raise ClaimError(f"env.{key}: must be a string")
    try:
        RecorderSettings(**{k.removeprefix("WEBRECORD_").lower(): v for k, v in env.items()})
    except ValidationError as exc:
        raise ClaimError(f"env: {validation_message(exc)}") from None
    return Claim(task, _path(body, "workDir") or default_work_dir, _path(body, "statusFile"), env)


class Standby:
    def __init__(self, work_dir: Path, width: int, height: int, token: str | None,
                 control_host: str, control_port: int, port_file: Path | None,
                 lifeline_stdin: bool = False, status_file: Path | None = None) -> None:
        self.work_dir = work_dir.resolve()
        self.status_file = status_file  # the claimed task's, unless the claim names one
        self.width, self.height = width, height
        self.token = token
        self.control_host, self.control_port = control_host, control_port
        self.port_file = port_file
        self.lifeline_stdin = lifeline_stdin
        self.server: ControlServer | None = None
        self._claimed: asyncio.Future[Claim] | None = None
        self._ended = asyncio.Event()  # idle end: a signal, the lifeline, a dead part
        self._why = ""

    def _end(self, why: str) -> None:
        if not self._ended.is_set():
            self._why = why
            self._ended.set()

    # ---- the claim ----------------------------------------------------------------------
    async def _claim_route(self, request: web.Request) -> web.Response:
        assert self._claimed is not None and self.server is not None
        if self._claimed.done():
            return error_reply(409, "AlreadyClaimed",
                          f"this slot serves task {self._claimed.result().task.task_id}; "
                          "a slot serves one task only")
        if self._ended.is_set():
            return error_reply(503, "SlotUnusable", f"this slot cannot serve: {self._why}")
        try:
            claim = parse_claim(json.loads(await request.read() or b"null"), self.work_dir)
        except ValueError:
            return error_reply(400, "InvalidParam", "body: must be a JSON object")
        except ClaimError as exc:
            return error_reply(400, "InvalidParam", str(exc))
        if self._claimed.done():  # another claim won while this body was read
            return error_reply(409, "AlreadyClaimed", "a slot serves one task only")
        self._claimed.set_result(claim)
        event(log, "slot claimed", task=claim.task.task_id, work_dir=str(claim.work_dir))
        # Answer once the task's session serves /status and /control on this endpoint.
        deadline = asyncio.get_running_loop().time() + _SESSION_WAIT_SECONDS
        while self.server.session is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        if self.server.session is None:
            return error_reply(503, "SlotUnusable", "the claimed task did not start")
        return web.json_response(self.server.session.live_status().wire())

    # ---- the run ------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._claimed = loop.create_future()
        install_stop_signals(lambda sig: self._end(f"signal {sig}"))
        if self.lifeline_stdin:
            _watch_stdin(loop, lambda: self._end("stdin closed: the spawner is gone"))
        log_dir = self.work_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        settings = RecorderSettings()
        # The default frame rate for this size: a task asking for another restarts the display.
        stage = Stage(settings, EgressSettings(), self.width, self.height, log_dir,
                      self.work_dir / "profile", refresh=settings.fps_for(self.width, self.height))
        try:
            await stage.start(on_crash=lambda what: self._end(f"Chromium {what} went away"))
        except RecorderError as exc:
            event(log, "standby could not start", logging.ERROR, error=exc.message)
            return EXIT_UNUSABLE
        watchers = [loop.create_task(self._watch_part(p.proc, name)) for name, p in
                    (("the X server", stage.display), ("PulseAudio", stage.audio)) if p and p.proc]
        self.server = ControlServer(None, self.token, self.control_host, self.control_port,
                                    routes={"/claim": self._claim_route})
        try:
            port = await self.server.start()
            if self.port_file is not None:
                try_write_atomic(self.port_file, str(port))  # written = ready to be claimed
            event(log, "standby ready", port=port, width=self.width, height=self.height)
            ended = loop.create_task(self._ended.wait())
            await asyncio.wait({self._claimed, ended}, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
        finally:
            for watcher in watchers:
                watcher.cancel()
        if not self._claimed.done():
            self._claimed.cancel()
            event(log, "standby ends without a task", reason=self._why)
            await stage.close()
            await self.server.stop()
            return 0 if self._why.startswith(("signal", "stdin")) else EXIT_UNUSABLE
        claim = self._claimed.result()
        os.environ.update(claim.env)  # read by the task's RecorderSettings
        return await run_task(claim.task, claim.work_dir, claim.status_file or self.status_file,
                              self.token,
                              self.control_host, port, None, stage=stage, server=self.server)

    async def _watch_part(self, proc: asyncio.subprocess.Process, name: str) -> None:
        code = await proc.wait()
        self._end(f"{name} exited (code {code})")


def _watch_stdin(loop: asyncio.AbstractEventLoop, on_eof: Any) -> None:
    """`on_eof()` in the loop once stdin reaches end of file (a thread: stdin may be a file or
    a pipe, which the loop's readers do not all take)."""
    def read() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        loop.call_soon_threadsafe(on_eof)
    threading.Thread(target=read, name="lifeline", daemon=True).start()

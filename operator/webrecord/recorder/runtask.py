"""`webrecord recorder`: one task, driven through the control endpoint, its status in a file
(docs/contracts.md section 1): resume from stored segments, record, hand over on SIGTERM or
deliver."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from webrecord.api.models import Action, RecorderStatus, RecordingTask
from webrecord.files import try_write_atomic
from webrecord.logs import event
from webrecord.recorder.finish import deliver_packaged, delivered, purge_segments, where_kept
from webrecord.recorder.livehls import start_live_hls
from webrecord.recorder.resume import (
    open_segment_store,
    previous_start_time,
    resume_from_store,
    sigterm_suspends,
)
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.supervise import install_stop_signals

if TYPE_CHECKING:
    from webrecord.recorder.control import ControlServer
    from webrecord.recorder.stage import Stage

log = logging.getLogger(__name__)

# The task was handed over (SIGTERM, segments stored): not finished, not a crash.
EXIT_SUSPENDED = 75


async def run_task(task: RecordingTask, work_dir: Path, status_file: Path | None,
                   token: str | None, control_host: str, control_port: int,
                   port_file: Path | None, stage: Stage | None = None,
                   server: ControlServer | None = None) -> int:
    """Run `task` to its end; the process's exit code (0 finished, EXIT_SUSPENDED handed
    over). A claimed standby slot passes its started `stage` and its listening `server`."""
    from webrecord.recorder.control import ControlServer
    from webrecord.recorder.session import Session

    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    status_file = status_file or work_dir / "status.json"

    def save(status: RecorderStatus) -> None:
        try_write_atomic(status_file, json.dumps(status.wire()))

    previous_start = previous_start_time(status_file, task.task_id)  # before we overwrite it
    store = open_segment_store(task, work_dir)
    settings = RecorderSettings()
    session = Session(task, work_dir, settings, on_status=save,
                      on_segment=store.put if store is not None else None, stage=stage)
    if store is not None and not await resume_from_store(session, store, settings,
                                                         previous_start):
        await asyncio.to_thread(store.close)
        store = None
        session.on_segment = None
    session.live_hls = start_live_hls(session, task, work_dir, settings)
    save(session.live_status())
    if server is None:
        server = ControlServer(session, token, control_host, control_port)
        port = await server.start()
    else:
        server.session, port = session, server.port
    if port_file:
        try_write_atomic(port_file, str(port))
    suspends = sigterm_suspends(settings, store, work_dir)

    def on_signal(sig: int) -> None:
        if sig == signal.SIGTERM and suspends:
            session.suspend()
        else:
            session.request(Action.STOP)

    install_stop_signals(on_signal)
    try:
        status = await session.run()
        if session.live_hls is not None:
            # Its backlog, then #EXT-X-ENDLIST (not when handed over: the task goes on).
            await session.live_hls.finish(ended=not session.suspended)
            status = session.live_status()
        if session.suspended:
            failures = await asyncio.to_thread(store.wait, 120) if store is not None else {}
            event(log, "task handed over", logging.WARNING, task=task.task_id,
                  segments=session.status.segments, seconds=session.status.recorded_seconds,
                  not_stored=failures or None)
            save(session.status)
            return EXIT_SUSPENDED
        if store is not None:
            # Every closed segment safely stored before the task reports a result.
            failures = await asyncio.to_thread(store.wait, 120)
            if failures:
                event(log, "segments not stored", logging.WARNING, failures=failures)
        result = where_kept(await deliver_packaged(task, session, status), store, suspends)
        if store is not None and suspends and delivered(result):
            await purge_segments(store, task.task_id)
        session.finish(result)
        event(log, "task finished", task=task.task_id,
              error_code=result.error_code.value if result.error_code else None)
        return 0
    finally:
        if session.live_hls is not None:
            session.live_hls.cancel()
        await server.stop()
        if store is not None:
            await asyncio.to_thread(store.close)

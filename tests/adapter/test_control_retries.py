"""The local backend's controls to a recorder: retried while it does not answer (3 tries,
waits 0.2 s then 0.4 s), never retried once it answered. A real HTTP server on loopback plays
the recorder's control endpoint."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from webrecord.adapter.backends.base import ActionNotAllowed, BackendUnavailable
from webrecord.adapter.backends.local import LocalBackend
from webrecord.adapter.settings import AdapterSettings
from webrecord.api.models import Action, RecorderStatus, RecordingSpec

TASK = "ctl-task"


async def _backend(tmp_path: Path, port: int) -> LocalBackend:
    backend = LocalBackend(AdapterSettings(state_dir=tmp_path / "state", auth_enabled=False))
    await backend.open()
    backend.store.insert(TASK, "owner", RecordingSpec(record_url="https://example.com/"),
                         RecorderStatus(task_id=TASK), int(time.time()))
    backend.store.set_running(TASK, 0)  # running, with no process of its own to watch or stop
    directory = backend.task_dir(TASK)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text("t0ken")
    (directory / "port").write_text(str(port))
    return backend


async def _recorder(replies: list[int]) -> tuple[TestServer, int, list[dict]]:
    """A control endpoint answering `replies` in turn (0: drop the connection)."""
    seen: list[dict] = []

    async def control(request: web.Request) -> web.StreamResponse:
        seen.append(await request.json())
        code = replies[min(len(seen), len(replies)) - 1]
        if code == 0:
            request.transport.close()  # no answer at all
            return web.Response()
        if code == 200:
            return web.json_response({"taskId": TASK, "status": "paused"})
        return web.json_response({"errorCode": "InvalidAction", "errorMessage": "not now"},
                                 status=code)

    app = web.Application()
    app.router.add_post("/control", control)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, server.port, seen


@pytest.mark.timeout(60)
async def test_no_answer_is_tried_three_times_with_growing_waits(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = await _backend(tmp_path, port)
    try:
        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match="Pause: could not reach the recorder"):
            await backend._send_control(backend.store.get(TASK), Action.PAUSE, 1)
        assert 0.6 <= time.monotonic() - began < 10  # waited 0.2 + 0.4 s between the 3 tries
    finally:
        await backend.close()


@pytest.mark.timeout(60)
async def test_dropped_connections_then_an_answer(tmp_path: Path) -> None:
    server, port, seen = await _recorder([0, 0, 200])
    backend = await _backend(tmp_path, port)
    try:
        status = await backend._send_control(backend.store.get(TASK), Action.PAUSE, 7)
        assert status.status.value == "paused"
        assert seen == [{"action": "Pause", "seq": 7}] * 3  # same seq: the recorder dedupes
    finally:
        await backend.close()
        await server.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("code, error", [(409, ActionNotAllowed), (401, BackendUnavailable)])
async def test_an_answer_is_final(tmp_path: Path, code: int, error: type) -> None:
    server, port, seen = await _recorder([code, 200])
    backend = await _backend(tmp_path, port)
    try:
        with pytest.raises(error, match="not now" if code == 409 else "HTTP 401"):
            await backend._send_control(backend.store.get(TASK), Action.RESUME, 2)
        assert len(seen) == 1
    finally:
        await backend.close()
        await server.close()

"""A real adapter server on loopback, run in a thread with its own event loop, and a small
synchronous HTTP client, so tests (hypothesis included) can talk to it over real sockets."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from webrecord.adapter import auth
from webrecord.adapter.backends.local import LocalBackend
from webrecord.adapter.server import AdapterRunner, build_app
from webrecord.adapter.settings import AdapterSettings

# The warm pool has its own tests (test_warm_pool.py); elsewhere its idle Chromium would only
# take the 2 cores' time from the recordings under test.
os.environ.setdefault("WEBRECORD_ADAPTER_WARM_SLOTS", "0")

KEYS = {"AKIDalice": "alice-secret-0123456789", "AKIDbob": "bob-secret-9876543210"}


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes
    headers: dict[str, str]


@dataclass
class Client:
    """A synchronous client of an adapter at host:port (in-process or a `serve` subprocess)."""

    host: str
    port: int

    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                timeout: float = 30.0) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            return Reply(resp.status, parsed, raw, {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def post_raw(self, body: bytes, headers: dict | None = None) -> Reply:
        merged = {"content-type": "application/json"}
        merged.update({k.lower(): v for k, v in (headers or {}).items()})
        return self.request("POST", "/", body, merged)

    def call(self, action: str, data: Any = None, key: str | None = None) -> Reply:
        """POST one Action; signed with `key` from KEYS when given."""
        envelope: dict[str, Any] = {"Action": action}
        if data is not None:
            envelope["Data"] = data
        body = json.dumps(envelope).encode()
        # A signed random `source` header makes byte-identical controls sent within one X-Date
        # second distinct requests (otherwise the second is refused as a replay).
        headers = (
            auth.sign_headers(key, KEYS[key], body, extra_signed={"source": uuid.uuid4().hex})
            if key else {}
        )
        return self.post_raw(body, headers)


@dataclass
class LiveServer(Client):
    backend: LocalBackend
    settings: AdapterSettings
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine on the server's loop (e.g. backend calls)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def start_live_server(settings: AdapterSettings) -> tuple[LiveServer, Callable[[], None]]:
    ready = threading.Event()
    state: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        state["loop"] = loop
        stop = asyncio.Event()
        state["stop"] = stop

        async def serve() -> None:
            backend = LocalBackend(settings)
            authenticator = None
            if settings.auth_enabled:
                authenticator = auth.Authenticator(KEYS, max_skew=settings.auth_max_skew_seconds)
            app = build_app(settings, backend, authenticator)
            runner = AdapterRunner(app, settings.header_timeout_seconds)
            site = web.TCPSite(await runner.setup(), "127.0.0.1", 0)
            await site.start()
            state["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            state["backend"] = backend
            ready.set()
            try:
                await stop.wait()
            finally:
                await backend.terminate_all(grace=10.0)
                await runner.cleanup()
                # Connection handlers still parked on keep-alive: end them before the loop closes.
                pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # surfaced to the test through `state`
            state["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not ready.wait(30) or "error" in state:
        raise RuntimeError(f"adapter did not start: {state.get('error')}")
    server = LiveServer("127.0.0.1", state["port"], state["backend"], settings, state["loop"])

    def stop() -> None:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(60)

    return server, stop


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Factory: make_server(**settings) -> a LiveServer; all are stopped (recorders too) after."""
    stops: list[Callable[[], None]] = []

    def factory(**overrides: Any) -> LiveServer:
        values: dict[str, Any] = {
            "state_dir": tmp_path / f"state{len(stops)}",
            "auth_enabled": False,
            "header_timeout_seconds": 15.0,
        }
        values.update(overrides)
        server, stop = start_live_server(AdapterSettings(**values))
        stops.append(stop)
        return server

    yield factory
    for stop in reversed(stops):
        stop()


@pytest.fixture
def server(make_server: Callable[..., LiveServer]) -> LiveServer:
    """Auth off (local use), local backend in a temporary state dir."""
    return make_server()


@pytest.fixture
def signed_server(make_server: Callable[..., LiveServer]) -> LiveServer:
    """Auth on with the KEYS above."""
    return make_server(auth_enabled=True)

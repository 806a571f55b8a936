"""The control endpoint of a running recorder (docs/contracts.md section 1).

GET /healthz and GET /metrics (Prometheus; no auth: numbers only, no task data), GET /status,
POST /control {"action", "seq"}, PUT /live {"live": [{"url"}, ...]} (extension: the live
receivers, the whole list); Bearer token auth. A standby slot (recorder/standby.py) serves
it before it has a task (`session` None: /status and /control answer 409) plus its own routes.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from pydantic import ValidationError

from webrecord import metrics
from webrecord.api.models import Action, OutputSpec
from webrecord.logs import event
from webrecord.recorder.errors import InvalidAction
from webrecord.recorder.session import Session

log = logging.getLogger(__name__)

_ACTIONS = ", ".join(a.value for a in Action)
_OPEN_PATHS = frozenset({"/healthz", "/metrics"})


def error_reply(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"errorCode": code, "errorMessage": message}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlServer:
    def __init__(self, session: Session | None, token: str | None, host: str = "127.0.0.1",
                 port: int = 0, routes: dict[str, Handler] | None = None) -> None:
        self.session = session
        self.routes = routes or {}  # extra POST routes (behind the token)
        self.token = token or None
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        if self.token is None:
            event(log, "control endpoint without token: local use only", logging.WARNING)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", metrics.handler(self._registry()))
        app.router.add_get("/status", self._status)
        app.router.add_post("/control", self._control)
        for path, handler in self.routes.items():
            app.router.add_post(path, handler)
        app.router.add_put("/live", self._live)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in _OPEN_PATHS and self.token is not None:
            header = request.headers.get("Authorization", "")
            given = header[7:].strip() if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return error_reply(401, "Unauthorized", "Authorization: Bearer <token> missing or wrong")
        return await handler(request)

    def _registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics.Chain(metrics.RECORDER))
        registry.register(metrics.SessionGauges(
            lambda: self.session.live_status() if self.session is not None else None))
        return registry

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def _no_task(self) -> web.Response:
        return error_reply(409, "NotClaimed", "this standby recorder has no task yet (POST /claim)")

    async def _status(self, _request: web.Request) -> web.Response:
        if self.session is None:
            return self._no_task()
        return web.json_response(self.session.live_status().wire())

    async def _control(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return error_reply(400, "InvalidParam", "body: must be a JSON object")
        if not isinstance(body, dict):
            return error_reply(400, "InvalidParam", "body: must be a JSON object")
        try:
            action = Action(body.get("action"))
        except ValueError:
            return error_reply(400, "InvalidParam", f"action: must be one of {_ACTIONS}")
        if self.session is None:
            return self._no_task()
        seq = body.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            return error_reply(400, "InvalidParam", "seq: must be a non-negative integer")
        try:
            status = await self.session.control(action, seq)
        except InvalidAction as exc:
            return error_reply(409, "InvalidAction", str(exc))
        event(log, "control applied", action=action.value, seq=seq, status=status.status.value)
        return web.json_response(status.wire())

    async def _live(self, request: web.Request) -> web.Response:
        """The live receivers become exactly the given list (idempotent: the operator sends
        the spec's list after each change)."""
        try:
            body = await request.json()
        except ValueError:
            return error_reply(400, "InvalidParam", "body: must be a JSON object")
        if not isinstance(body, dict) or set(body) - {"live"}:
            return error_reply(400, "InvalidParam", 'body: must be {"live": [{"url": ...}, ...]}')
        try:
            outputs = OutputSpec.model_validate({"live": body.get("live")}).live or []
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            rule = (first.get("ctx") or {}).get("error") or first["msg"]
            return error_reply(400, "InvalidParam", f"{where}: {rule}")
        if self.session is None:
            return self._no_task()
        try:
            status = await self.session.set_live(outputs)
        except InvalidAction as exc:
            return error_reply(409, "InvalidAction", str(exc))
        event(log, "live outputs set", count=len(outputs))
        return web.json_response(status.wire())

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.port
        event(log, "control endpoint listening", host=self.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

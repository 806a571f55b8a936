"""The HTTP server: `POST /` (the Action protocol), `GET /healthz`, `GET /openapi.json`.

Every reply is JSON and carries a fresh RequestID (also in the `X-Request-ID` header). Errors
are `{"ErrorCode", "ErrorMessage", "RequestID"}` with an HTTP status matching the class of error;
an unexpected exception is logged with its trace and the RequestID, and the caller gets only
`InternalError` and the RequestID.

Limits against abusive clients: bodies above `max_body_bytes` are refused with RequestTooLarge
(from Content-Length before reading, or while reading); a body that does not arrive within
`body_timeout_seconds` gets RequestTimeout and the connection is closed; a connection that has not
completed a request's headers within `header_timeout_seconds` (of opening, or of the previous
reply) is closed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from webrecord import logs, metrics
from webrecord.api.protocol import actions as pm
from webrecord.adapter.auth import (
    Authenticator,
    SignedRequest,
    Verified,
    load_key_buckets,
    load_keys,
)
from webrecord.adapter.backends.base import (
    ANONYMOUS_OWNER,
    ActionNotAllowed,
    Backend,
    BackendError,
    BackendUnavailable,
    CapacityExceeded,
    TaskNotFound,
)
from webrecord.api.protocol.errors import INTERNAL_MESSAGE, AdapterErrorCode, ApiError
from webrecord.adapter.openapi import openapi_document
from webrecord.adapter.settings import AdapterSettings
from webrecord.adapter.ssrf import UrlPolicy
from webrecord.api.models import RecordingTask
from webrecord.api.protocol import describe_body
from webrecord.metrics import ADAPTER_IN_FLIGHT, ADAPTER_REQUEST_SECONDS, ADAPTER_REQUESTS

log = logging.getLogger(__name__)

BACKEND_KEY: web.AppKey[Backend] = web.AppKey("backend", Backend)
SETTINGS_KEY: web.AppKey[AdapterSettings] = web.AppKey("settings", AdapterSettings)
OPENAPI_KEY: web.AppKey[dict] = web.AppKey("openapi", dict)
DRAINING_KEY: web.AppKey[asyncio.Event] = web.AppKey("draining", asyncio.Event)

# Request-scoped values (aiohttp >= 3.13 prefers typed keys; older versions take strings).
_Key = getattr(web, "RequestKey", None)
REQUEST_ID = _Key("request_id", str) if _Key else "request_id"
ACTION = _Key("action", str) if _Key else "action"
CLOSE_CONNECTION = _Key("close_connection", bool) if _Key else "close_connection"

# Reads: not replay-checked (see adapter.auth).
_READ_ONLY = frozenset({pm.ActionName.DESCRIBE, pm.ActionName.LIST})

_BACKEND_ERRORS: dict[type[BackendError], AdapterErrorCode] = {
    TaskNotFound: AdapterErrorCode.TASK_NOT_FOUND,
    ActionNotAllowed: AdapterErrorCode.INVALID_ACTION,
    CapacityExceeded: AdapterErrorCode.LIMIT_EXCEEDED,
    BackendUnavailable: AdapterErrorCode.BACKEND_UNAVAILABLE,
}


def new_task_id() -> str:
    # A valid Kubernetes name and RecordingTask id: "wr-" + 96 random bits.
    return "wr-" + secrets.token_hex(12)


class ActionHandler:
    """POST /: authenticate, parse, dispatch to the backend, shape the reply."""

    def __init__(
        self,
        settings: AdapterSettings,
        backend: Backend,
        authenticator: Authenticator | None,
        url_policy: UrlPolicy,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.auth = authenticator
        self.urls = url_policy
        self.buckets = BucketRules(settings)

    async def handle(self, request: web.Request) -> web.Response:
        request_id: str = request[REQUEST_ID]
        body = await self._read_body(request)
        verified = self._authenticate(request, body)
        action, data = pm.parse_envelope(pm.parse_json(body))
        request[ACTION] = action.value
        owner = ANONYMOUS_OWNER
        if verified is not None:
            assert self.auth is not None
            owner = verified.key
            if action not in _READ_ONLY:
                self.auth.remember(verified)
        reply = await self._dispatch(action, data, owner)
        reply["RequestID"] = request_id
        return _json(reply, 200, request_id)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(
                AdapterErrorCode.REQUEST_TOO_LARGE, f"body: larger than {limit} bytes"
            )
        try:
            # asyncio.timeout, not wait_for: no extra task per request on the hot path.
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(AdapterErrorCode.REQUEST_TOO_LARGE, f"body: larger than {limit} bytes")
        except asyncio.TimeoutError:
            request[CLOSE_CONNECTION] = True
            raise ApiError(
                AdapterErrorCode.REQUEST_TIMEOUT,
                f"body: not received within {self.settings.body_timeout_seconds:g} seconds",
            )

    def _authenticate(self, request: web.Request, body: bytes) -> Verified | None:
        if self.auth is None:
            return None
        signed = SignedRequest(
            method=request.method,
            path=request.rel_url.path,
            query={k: v for k, v in request.rel_url.query.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        return self.auth.verify(signed)

    async def _dispatch(self, action: pm.ActionName, data: Any, owner: str) -> dict[str, Any]:
        try:
            if action is pm.ActionName.START:
                return await self._start(data, owner)
            if action is pm.ActionName.DESCRIBE:
                status = await self.backend.describe(data.TaskID, owner)
                return describe_body(status)
            if action is pm.ActionName.LIST:
                offset = data.Offset or 0
                limit = data.Limit or 20
                page = await self.backend.list(owner, offset, limit)
                return {
                    "TotalCount": page.total,
                    "Offset": offset,
                    "Limit": limit,
                    "Tasks": [describe_body(s) for s in page.tasks],
                }
            if action is pm.ActionName.UPDATE_LIVE:
                await self._check_live("Data.Live", data.Live)
                await self.backend.set_live(data.TaskID, owner, pm.to_live(data.Live))
                return {"TaskID": data.TaskID}
            await self.backend.control(data.TaskID, owner, pm.CONTROL_ACTIONS[action])
            return {"TaskID": data.TaskID}
        except BackendError as exc:
            code = next(c for t, c in _BACKEND_ERRORS.items() if isinstance(exc, t))
            raise ApiError(code, exc.message)

    async def _start(self, data: pm.StartData, owner: str) -> dict[str, Any]:
        spec = pm.to_spec(data)
        if spec.output.cos and spec.output.cos.bucket:
            self.buckets.check(owner, spec.output.cos.bucket)
        await self.urls.check("Data.RecordURL", spec.record_url)
        if spec.callback_url:
            await self.urls.check("Data.CallbackURL", spec.callback_url)
        await self._check_live("Data.Output.Live", data.Output.Live if data.Output else None)
        task = RecordingTask(task_id=new_task_id(), spec=spec, create_time=logs.now())
        await self.backend.start(task, owner)
        logs.event(log, "task created", task_id=task.task_id, owner=owner)
        return {"TaskID": task.task_id}


    async def _check_live(self, field: str, live: list[pm.LiveData] | None) -> None:
        """Each receiver's host, as at Start so in UpdateLive (Data.Live.1.Url: ...)."""
        for i, output in enumerate(live or []):
            await self.urls.check_live(f"{field}.{i}.Url", output.Url)


class BucketRules:
    """Which buckets each ApiAppKey may aim Output.Cos.Bucket at (see the adapter README)."""

    def __init__(self, settings: AdapterSettings) -> None:
        self.default = frozenset(settings.allowed_buckets) or None  # None: any bucket
        self.per_key = load_key_buckets(settings.auth_keys_file, settings.key_buckets_file) \
            if settings.auth_enabled else {}

    def check(self, owner: str, bucket: str) -> None:
        allowed = self.per_key.get(owner, self.default)
        if allowed is not None and bucket not in allowed:
            raise ApiError(
                AdapterErrorCode.INVALID_PARAM,
                f"Data.Output.Cos.Bucket: {bucket[:64]!r} is not among the buckets allowed "
                "for this ApiAppKey",
            )


def _json(body: dict[str, Any], status: int, request_id: str) -> web.Response:
    return web.json_response(body, status=status, headers={"X-Request-ID": request_id})


_HTTP_ERRORS = {
    404: (AdapterErrorCode.NOT_FOUND, "path: not found (the protocol is POST /)"),
    405: (AdapterErrorCode.METHOD_NOT_ALLOWED, "method: not allowed (the protocol is POST /)"),
    413: (AdapterErrorCode.REQUEST_TOO_LARGE, "body: too large"),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Fresh RequestID per request; every failure becomes the protocol's error body."""
    request_id = str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    started = time.monotonic()
    code = metrics.OK
    ADAPTER_IN_FLIGHT.inc()
    try:
        response = await handler(request)
    except ApiError as exc:
        code = exc.code.value
        response = _json(exc.body(request_id), exc.status, request_id)
        logs.event(log, "request refused", logging.INFO, request_id=request_id,
                   action=request.get(ACTION), error=exc.code.value, message=exc.message)
    except web.HTTPException as exc:
        code, message = _HTTP_ERRORS.get(
            exc.status, (AdapterErrorCode.INVALID_PARAM, f"request: {exc.reason}")
        )
        if exc.status >= 500:
            code, message = AdapterErrorCode.INTERNAL_ERROR, INTERNAL_MESSAGE
        err = ApiError(code, message)
        code = err.code.value
        response = _json(err.body(request_id), exc.status, request_id)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("internal error", extra={"fields": {"request_id": request_id}})
        err = ApiError(AdapterErrorCode.INTERNAL_ERROR, INTERNAL_MESSAGE)
        code = err.code.value
        response = _json(err.body(request_id), 500, request_id)
    finally:
        ADAPTER_IN_FLIGHT.dec()
    label = request.get(ACTION) or _route(request)
    ADAPTER_REQUESTS.labels(label, code).inc()
    ADAPTER_REQUEST_SECONDS.labels(label).observe(time.monotonic() - started)
    if request.get(CLOSE_CONNECTION):
        response.force_close()
    if log.isEnabledFor(logging.DEBUG):
        logs.event(log, "request", logging.DEBUG, request_id=request_id, path=request.path,
                   action=request.get(ACTION), status=response.status,
                   ms=round((time.monotonic() - started) * 1000, 2))
    return response


def _route(request: web.Request) -> str:
    """A bounded label for requests without an Action: the route's path, or `unmatched`."""
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical}" if resource is not None else "unmatched"


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the server answers. 200 even while the backend is unreachable (a restart
    would not bring the Kubernetes API back); `ready` says what /readyz would."""
    request_id = request[REQUEST_ID]
    try:
        details: dict[str, Any] = {**await request.app[BACKEND_KEY].health(), "ready": True}
    except BackendError as exc:
        details = {"backend": request.app[BACKEND_KEY].name, "ready": False, "reason": exc.message}
    return _json({"ok": True, **details, "RequestID": request_id}, 200, request_id)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 503 while the backend does not answer (kubernetes: the API server) or the
    server is draining after SIGTERM; 200 otherwise."""
    request_id = request[REQUEST_ID]
    if request.app[DRAINING_KEY].is_set():
        err = ApiError(AdapterErrorCode.BACKEND_UNAVAILABLE, "server: shutting down")
        return _json(err.body(request_id), 503, request_id)
    try:
        details = await request.app[BACKEND_KEY].health()
    except BackendError as exc:
        err = ApiError(AdapterErrorCode.BACKEND_UNAVAILABLE, exc.message)
        return _json(err.body(request_id), 503, request_id)
    return _json({"ok": True, **details, "RequestID": request_id}, 200, request_id)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


def build_app(
    settings: AdapterSettings,
    backend: Backend,
    authenticator: Authenticator | None = None,
) -> web.Application:
    """The aiohttp application. `authenticator=None` with `settings.auth_enabled` loads keys."""
    if settings.auth_enabled and authenticator is None:
        authenticator = make_authenticator(settings)
    if not settings.auth_enabled:
        authenticator = None
        logs.event(
            log,
            "AUTHENTICATION IS OFF: anyone who can reach this port can start recordings; "
            "use only on a trusted machine",
            logging.WARNING,
            host=settings.host,
            port=settings.port,
        )
    policy = UrlPolicy(
        allow=settings.url_allow,
        allow_loopback=settings.loopback_allowed(),
        deny_private=settings.url_deny_private,
        resolve_timeout=settings.url_resolve_timeout_seconds,
    )
    # client_max_size bounds what request.read() accepts; one extra KiB so our own check,
    # with the better message, triggers first on a declared Content-Length.
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[BACKEND_KEY] = backend
    app[SETTINGS_KEY] = settings
    app[OPENAPI_KEY] = openapi_document()
    app[DRAINING_KEY] = asyncio.Event()
    app.router.add_post("/", ActionHandler(settings, backend, authenticator, policy).handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.json", openapi)

    async def _open(_: web.Application) -> None:
        await backend.open()

    async def _close(_: web.Application) -> None:
        await backend.close()

    app.on_startup.append(_open)
    app.on_cleanup.append(_close)
    return app


def make_authenticator(settings: AdapterSettings) -> Authenticator:
    if settings.auth_keys_file is None and settings.auth_keys_dir is None:
        raise ValueError(
            "authentication is on but no keys are configured: set --auth-keys FILE "
            "(WEBRECORD_ADAPTER_AUTH_KEYS_FILE) or WEBRECORD_ADAPTER_AUTH_KEYS_DIR, or --no-auth"
        )
    keys = load_keys(settings.auth_keys_file, settings.auth_keys_dir)
    if not keys:
        raise ValueError("authentication is on but the key file/dir holds no keys")
    logs.event(log, "application keys loaded", count=len(keys))
    return Authenticator(
        keys,
        max_skew=settings.auth_max_skew_seconds,
        require_content_md5=settings.auth_require_content_md5,
        replay_cache_size=settings.auth_replay_cache_size,
    )


# ---------------------------------------------------------------- connections
#
# Slow clients are cut by aiohttp's own settings: `keepalive_timeout` (aiohttp >= 3.14.4 arms it
# when a connection opens and again after each reply, and closes the connection if no complete
# request has arrived by then: the header timeout), the body timeout in ActionHandler, and
# `lingering_time`. Malformed HTTP gets the protocol's JSON error from JsonErrorHandler, served
# through aiohttp's public low-level Server.


class JsonErrorHandler(web.RequestHandler):
    """aiohttp's connection handler, answering unparseable HTTP with the protocol's JSON."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """HTTP-level errors (bad request line, bad header) as the protocol's JSON, no trace."""
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error reply")
        request_id = str(uuid.uuid4())
        if status >= 500:
            log.error("internal error", exc_info=exc, extra={"fields": {"request_id": request_id}})
            err = ApiError(AdapterErrorCode.INTERNAL_ERROR, INTERNAL_MESSAGE)
        else:
            detail = getattr(exc, "message", None) or message or "malformed HTTP request"
            detail = str(detail).splitlines()[0][:120]
            logs.event(log, "malformed HTTP request", logging.INFO, request_id=request_id,
                       status=status, detail=detail)
            code = (
                AdapterErrorCode.REQUEST_TOO_LARGE if status == 413 else AdapterErrorCode.MALFORMED_REQUEST
            )
            err = ApiError(code, f"request: {detail}")
        response = _json(err.body(request_id), status, request_id)
        response.force_close()
        return response


class AdapterServer(web.Server):
    """aiohttp's low-level server whose connections are JsonErrorHandlers."""

    def __init__(self, handler: Any, *, request_factory: Any, **handler_args: Any) -> None:
        super().__init__(handler, request_factory=request_factory, **handler_args)
        self.handler_args = handler_args

    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(self, loop=asyncio.get_running_loop(), **self.handler_args)


class AdapterRunner:
    """Serves an Application with public parts of aiohttp: an AppRunner runs the app's startup
    and cleanup, a ServerRunner serves the app's handler through AdapterServer."""

    def __init__(self, app: web.Application, header_timeout: float, drain_seconds: float = 60.0,
                 **handler_args: Any) -> None:
        self._app_runner = web.AppRunner(app, handle_signals=False)
        self._drain_seconds = drain_seconds
        handler_args.setdefault("access_log", None)
        # No complete request within this of opening or of the previous reply: closed.
        handler_args.setdefault("keepalive_timeout", header_timeout)
        # After an early reply (413, 408) aiohttp keeps reading the unread body for this long so
        # the client sees the reply rather than a reset; the default 10 s favours slow clients.
        handler_args.setdefault("lingering_time", 2.0)
        self._handler_args = handler_args
        self.runner: web.ServerRunner | None = None

    async def setup(self) -> web.ServerRunner:
        """Start the app; returns the runner to put a site on (web.TCPSite(runner, ...))."""
        await self._app_runner.setup()
        app_server = self._app_runner.server
        assert app_server is not None
        server = AdapterServer(app_server.request_handler, request_factory=app_server.request_factory,
                               **self._handler_args)
        # cleanup() closes the listening sockets, then waits up to shutdown_timeout for the
        # requests in flight (aiohttp's graceful shutdown): the drain after SIGTERM.
        self.runner = web.ServerRunner(server, handle_signals=False,
                                       shutdown_timeout=self._drain_seconds)
        await self.runner.setup()
        return self.runner

    async def cleanup(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self._app_runner.cleanup()


async def serve(
    settings: AdapterSettings,
    backend: Backend,
    stop: asyncio.Event,
    port_file: Path | None = None,
) -> None:
    """Run until `stop` is set. Used by `webrecord serve`; `port_file` receives the bound port."""
    app = build_app(settings, backend)
    runner = AdapterRunner(app, settings.header_timeout_seconds, settings.drain_seconds)
    site = web.TCPSite(await runner.setup(), settings.host, settings.port)
    await site.start()
    address = _bound(site, settings.port)
    metrics_runner = None
    if settings.metrics_port is not None:
        metrics_runner = web.AppRunner(metrics_app(backend), access_log=None)
        await metrics_runner.setup()
        metrics_site = web.TCPSite(metrics_runner, settings.host, settings.metrics_port)
        await metrics_site.start()
        metrics_port = _bound(metrics_site, settings.metrics_port)[1]
        if port_file is not None:
            _write_port(port_file.with_name(port_file.name + ".metrics"), metrics_port)
        logs.event(log, "adapter metrics listening", host=settings.host, port=metrics_port)
    if port_file is not None:
        _write_port(port_file, address[1])
    logs.event(log, "adapter listening", host=address[0], port=address[1], backend=backend.name,
               auth=settings.auth_enabled)
    try:
        await stop.wait()
        app[DRAINING_KEY].set()
        logs.event(log, "adapter draining: no new connections, requests in flight finish",
                   drain_seconds=settings.drain_seconds)
    finally:
        await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
    logs.event(log, "adapter stopped")


def metrics_app(backend: Backend) -> web.Application:
    """GET /metrics: the process's adapter metrics plus this backend's gauges, on a port of its
    own (the API port faces callers; this one faces Prometheus and needs no signature)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.Chain(metrics.ADAPTER))
    for collector in backend.metric_collectors():
        registry.register(collector)
    app = web.Application()
    app.router.add_get("/metrics", metrics.handler(registry))
    return app


def _bound(site: web.TCPSite, port: int) -> tuple[str, int]:
    sockets = getattr(site._server, "sockets", None) or []  # noqa: SLF001 - the bound port
    return sockets[0].getsockname()[:2] if sockets else ("", port)


def _write_port(path: Path, port: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(str(port))
    tmp.replace(path)

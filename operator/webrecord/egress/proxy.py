"""The filtering proxy every Chromium connection goes through: SOCKS5, CONNECT only.

Chromium is started with `--proxy-server=socks5://127.0.0.1:PORT`. With SOCKS5 it hands the
proxy the host NAME (it resolves nothing itself), and every TCP connection it makes for a page
(navigations, redirects, subresources, iframes, workers, WebSockets, http and https alike) is
one CONNECT here. For each one the proxy resolves the host itself, judges every address with
the policy and connects to exactly the address it judged, or answers "not allowed by ruleset".
BIND and UDP ASSOCIATE are refused: nothing but TCP leaves through here, and Chromium is told
not to send UDP that bypasses the proxy (see webrecord.recorder.browser).

Why SOCKS5 and not an HTTP proxy library: only connections are judged, never content, so the
proxy needs no HTTP parsing at all (no absolute-URI rewriting, keep-alive or Upgrade handling),
and it runs in the recorder's own event loop with asyncio's resolver and streams, with no
blocking lookups or worker processes forked from the recorder (proxy.py's model).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass, field

from webrecord.egress.policy import EgressPolicy, IPAddress
from webrecord.egress.resolver import EgressRefused, judged_addresses
from webrecord.logs import event

log = logging.getLogger(__name__)

# RFC 1928 reply codes.
_OK, _FAILURE, _NOT_ALLOWED, _NET_UNREACHABLE, _HOST_UNREACHABLE = 0, 1, 2, 3, 4
_CONN_REFUSED, _TTL_EXPIRED, _CMD_UNSUPPORTED, _ATYP_UNSUPPORTED = 5, 6, 7, 8
_CHUNK = 64 * 1024


class _Bad(Exception):
    """A client that does not speak SOCKS5 CONNECT; `code` is the reply to send, if any."""

    def __init__(self, code: int | None) -> None:
        self.code = code


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    failed: int = 0
    refusals: list[str] = field(default_factory=list)  # the last few, for status and tests
    # "host:port" -> why its last connection did not happen (refused or failed): Chromium only
    # reports a SOCKS failure, this says what it was.
    problems: dict[str, str] = field(default_factory=dict)

    def note_problem(self, host: str, port: int, why: str) -> None:
        self.problems.pop(f"{host}:{port}", None)
        self.problems[f"{host}:{port}"] = why
        while len(self.problems) > 50:
            self.problems.pop(next(iter(self.problems)))


class EgressProxy:
    """A SOCKS5 server on a loopback port, one per recording, living in the caller's loop."""

    def __init__(self, policy: EgressPolicy, host: str = "127.0.0.1", port: int = 0) -> None:
        self.policy = policy
        self.host = host
        self.port = port
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"socks5://{self.host}:{self.port}"

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        event(log, "egress proxy started", url=self.url)
        return self.url

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> EgressProxy:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            host, port = await asyncio.wait_for(_handshake(reader, writer), 10)
            self.stats.connections += 1
            try:
                up_reader, upstream, address = await self._connect(host, port)
            except EgressRefused as exc:
                self._refused(host, port, exc)
                await _reply(writer, _NOT_ALLOWED)
                return
            except OSError as exc:
                self.stats.failed += 1
                self.stats.note_problem(host, port, _describe(exc))
                await _reply(writer, _error_code(exc))
                return
            await _reply(writer, _OK, upstream.get_extra_info("sockname"))
            await _pipe(reader, writer, up_reader, upstream)
        except _Bad as exc:
            if exc.code is not None:
                await _reply(writer, exc.code)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (upstream, writer):
                if w is not None:
                    w.close()

    async def _connect(self, host: str, port: int
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, IPAddress]:
        # The connection goes to an address judged here, never to the name (no second lookup).
        addresses = await judged_addresses(host, self.policy)
        error: OSError = OSError(f"cannot connect to {host}:{port}")
        for address in addresses:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection(str(address), port),
                    self.policy.settings.connect_timeout)
                return r, w, address
            except asyncio.TimeoutError:
                error = TimeoutError(f"connect to {address}:{port} timed out")
            except OSError as exc:
                error = exc
        raise error

    def _refused(self, host: str, port: int, exc: EgressRefused) -> None:
        self.stats.refused += 1
        self.stats.refusals = [*self.stats.refusals[-49:], f"{host}:{port}: {exc.reason}"]
        self.stats.note_problem(host, port, f"refused by the egress policy: {exc.reason}")
        event(log, "egress refused", logging.WARNING, host=host[:255], port=port,
              address=str(exc.address) if exc.address else None, reason=exc.reason)


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> tuple[str, int]:
    version, count = await reader.readexactly(2)
    methods = await reader.readexactly(count)
    if version != 5:
        raise _Bad(None)
    if 0 not in methods:  # only "no authentication": the port is on loopback, per task
        writer.write(b"\x05\xff")
        raise _Bad(None)
    writer.write(b"\x05\x00")
    version, command, _, atyp = await reader.readexactly(4)
    if atyp == 1:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif atyp == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    elif atyp == 3:
        (length,) = await reader.readexactly(1)
        host = (await reader.readexactly(length)).decode("idna", errors="strict")
    else:
        raise _Bad(_ATYP_UNSUPPORTED)
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    if version != 5 or command != 1:  # CONNECT only: no BIND, no UDP ASSOCIATE
        raise _Bad(_CMD_UNSUPPORTED)
    return host, port


async def _reply(writer: asyncio.StreamWriter, code: int,
                 bound: tuple[str, int] | tuple[str, int, int, int] | None = None) -> None:
    address, port = (bound[0], bound[1]) if bound else ("0.0.0.0", 0)
    packed = ipaddress.ip_address(address).packed
    atyp = 1 if len(packed) == 4 else 4
    writer.write(bytes((5, code, 0, atyp)) + packed + struct.pack("!H", port))
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass


def _describe(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (ERR_CONNECTION_REFUSED)"
    if isinstance(exc, TimeoutError):
        return f"connection timed out ({exc})"
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror or exc})"
    return exc.strerror or str(exc) or type(exc).__name__


def _error_code(exc: OSError) -> int:
    if isinstance(exc, TimeoutError):
        return _TTL_EXPIRED
    if isinstance(exc, ConnectionRefusedError):
        return _CONN_REFUSED
    if isinstance(exc, socket.gaierror):
        return _HOST_UNREACHABLE
    return _NET_UNREACHABLE if exc.errno in (101,) else _FAILURE


async def _pipe(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> None:
    """Copy both ways until both sides are done; a half-close is passed on."""
    await asyncio.gather(_copy(client_r, up_w), _copy(up_r, client_w))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()

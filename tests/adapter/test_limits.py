"""Oversized bodies and slow clients are cut off, over real sockets."""

from __future__ import annotations

import json
import socket
import time

import pytest

from .conftest import LiveServer

pytestmark = pytest.mark.timeout(60)


def _read_reply(sock: socket.socket) -> tuple[int, dict | None, bytes]:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if length is not None and len(rest) >= length:
                break
    if not data:
        return 0, None, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(rest), data
    except ValueError:
        return status, None, data


def test_declared_oversized_body_refused_before_reading(make_server) -> None:
    server: LiveServer = make_server(max_body_bytes=4096)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        # Only the headers are sent: the reply must come without waiting for 10 MB.
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000000\r\n\r\n")
        status, body, _ = _read_reply(sock)
    assert status == 413
    assert body["ErrorCode"] == "RequestTooLarge"
    assert body["ErrorMessage"] == "body: larger than 4096 bytes"


def test_chunked_oversized_body_refused(make_server) -> None:
    server: LiveServer = make_server(max_body_bytes=4096)
    payload = json.dumps({"Action": "Start", "Data": {"RecordURL": "http://a/" + "x" * 8000}}).encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(payload), 1000):
            part = payload[i : i + 1000]
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        status, body, _ = _read_reply(sock)
    assert status == 413
    assert body["ErrorCode"] == "RequestTooLarge"


def test_body_just_under_the_limit_is_parsed(make_server) -> None:
    server: LiveServer = make_server(max_body_bytes=4096)
    body = json.dumps({"Action": "List", "Data": {}}).encode()
    body += b" " * (4096 - len(body))
    reply = server.post_raw(body)
    assert reply.status == 200 and reply.body["TotalCount"] == 0


def test_slow_body_cut_off(make_server) -> None:
    server: LiveServer = make_server(body_timeout_seconds=1.0)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"Action\":")
        started = time.monotonic()
        status, body, raw = _read_reply(sock)
        elapsed = time.monotonic() - started
        assert sock.recv(1) == b""  # and the connection is closed
    assert status == 408
    assert body["ErrorCode"] == "RequestTimeout"
    assert body["ErrorMessage"] == "body: not received within 1 seconds"
    assert 0.8 < elapsed < 5


def test_slow_headers_cut_off(make_server) -> None:
    server: LiveServer = make_server(header_timeout_seconds=1.0)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # a header line every 0.2 s, never finishing
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed = True
                break
            finally:
                sock.setblocking(True)
        elapsed = time.monotonic() - started
    assert closed
    assert 0.8 < elapsed < 4


def test_idle_keepalive_connection_closed_but_active_one_served(make_server) -> None:
    server: LiveServer = make_server(header_timeout_seconds=1.0)
    body = b'{"Action": "List"}'
    request = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        for _ in range(3):  # requests within the timeout keep the connection
            sock.sendall(request)
            status, reply, _ = _read_reply(sock)
            assert status == 200 and reply["TotalCount"] == 0
            time.sleep(0.5)
        time.sleep(1.5)
        assert sock.recv(1) == b""


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"POST / HTTP/1.1\r\nHost: x\r\nBad\x01Header: 1\r\n\r\n",
     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"],
)
def test_invalid_http_gets_a_json_error(server: LiveServer, raw: bytes) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(raw)
        status, body, data = _read_reply(sock)
    assert status == 400
    assert body["ErrorCode"] == "MalformedRequest"
    assert body["ErrorMessage"].startswith("request: ")
    assert b"Traceback" not in data

"""Real servers on loopback for the delivery tests: a callback receiver, a moto S3 server, a
TCP proxy that can cut connections mid-upload."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from aiohttp import web
from botocore.config import Config

from webrecord.delivery.settings import DeliverySettings

from .moto_server import free_port, start_moto, stop_process  # noqa: F401 - used by the tests

TEST_KEY = "testing"


@pytest.fixture(autouse=True)
def _hermetic_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Delivery tests set their own settings: WEBRECORD_* from the caller's shell must not leak
    in (the names come from the settings class itself, so new fields are covered)."""
    for name in DeliverySettings.model_fields:
        monkeypatch.delenv(f"WEBRECORD_{name.upper()}", raising=False)
    # Failure paths end at once unless a test is about the retry window itself.
    monkeypatch.setenv("WEBRECORD_DELIVERY_RETRY_S", "0")
    # The callback receivers here are on 127.0.0.1; the egress policy refuses loopback unless
    # told (tests/attacks/test_egress_callback.py tests the refusals).
    monkeypatch.setenv("WEBRECORD_EGRESS_ALLOW_LOOPBACK", "true")


# ------------------------------------------------------------------ callback receiver


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float


@dataclass
class CallbackServer:
    """A real aiohttp server; `script` says how to answer each request in turn:
    an int = reply with that HTTP status, "slow" = answer 200 after `slow_s` (past the
    client's timeout), "drop" = close the connection. After the script: 200."""

    url: str = ""
    script: list = field(default_factory=list)
    slow_s: float = 3.0
    received: list[Received] = field(default_factory=list)
    tries: int = 0


@pytest.fixture
async def callback_server() -> CallbackServer:
    server = CallbackServer()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        step = server.script[server.tries] if server.tries < len(server.script) else 200
        server.tries += 1
        if step == "slow":
            await asyncio.sleep(server.slow_s)
            return web.Response(status=200)
        if step == "drop":
            request.transport.close()
            return web.Response(status=500)
        if step == 200:
            server.received.append(Received(body, dict(request.headers), time.monotonic()))
        return web.Response(status=int(step), text="ok" if step == 200 else "no")

    app = web.Application()
    app.router.add_post("/cb", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp has no getter
    server.url = f"http://127.0.0.1:{port}/cb"
    try:
        yield server
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ moto S3 server
# (start_moto, stop_process and free_port live in moto_server.py, shared with bench/delivery)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    proc, endpoint = start_moto()
    try:
        yield endpoint
    finally:
        stop_process(proc)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                 "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def s3_client(endpoint: str):
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=TEST_KEY, aws_secret_access_key=TEST_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


_bucket_counter = iter(range(1, 10**6))


@pytest.fixture
def bucket(moto_endpoint: str, aws_env: None) -> str:
    """A fresh, empty bucket on the moto server."""
    name = f"wr-test-{os.getpid()}-{next(_bucket_counter)}"
    s3_client(moto_endpoint).create_bucket(Bucket=name)
    return name


def fast_settings(**overrides) -> DeliverySettings:
    """Settings with short backoffs so failing paths stay quick."""
    values = dict(callback_backoff_s=0.05, callback_backoff_max_s=0.2, s3_max_attempts=2,
                  s3_connect_timeout_s=2, s3_read_timeout_s=10)
    values.update(overrides)
    return DeliverySettings(**values)


# ------------------------------------------------------------------ fault-injecting proxy


class CuttingProxy:
    """Loopback TCP proxy to `target`. While `broken`, it forwards at most `budget` client
    bytes in total and then closes every connection (a network that dies mid-upload)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.broken = False
        self.budget = 0
        self.forwarded = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while data := src.recv(65536):
                if counted and self.broken:
                    with self._lock:
                        self.forwarded += len(data)
                        over = self.forwarded > self.budget
                    if over:
                        self.cuts += 1
                        break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for s in self._conns:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def cutting_proxy(moto_endpoint: str) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    try:
        yield proxy
    finally:
        proxy.close()


def write_random(path: Path, size: int) -> Path:
    """Incompressible test data of `size` bytes (fast: one random block, varied per MB)."""
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < size:
            chunk = (i.to_bytes(8, "little") + block[8:])[: size - written]
            f.write(chunk)
            written += len(chunk)
            i += 1
    return path


# ------------------------------------------------------------------ real recordings


def make_mp4(path: Path, seconds: float = 2.0) -> Path:
    """A real H.264/AAC mp4 (test pattern + tone), as the recorder would produce."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=15:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path)],
        check=True, timeout=120,
    )
    return path


def make_hls(directory: Path, seconds: float = 4.0) -> Path:
    """A real HLS rendition: playlist + 1 s MPEG-TS segments; returns the playlist."""
    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "index.m3u8"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=15:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "15",
         "-c:a", "aac", "-shortest", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
         "-hls_segment_filename", str(directory / "seg_%03d.ts"), str(playlist)],
        check=True, timeout=120,
    )
    return playlist


@pytest.fixture(scope="session")
def sample_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("media") / "sample.mp4")


@pytest.fixture(scope="session")
def sample_hls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hls(tmp_path_factory.mktemp("media-hls"))

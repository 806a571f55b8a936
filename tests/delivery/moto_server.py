"""A real moto S3 server on loopback, shared by tests/delivery and bench/delivery (a plain
module, not a conftest, so the benchmark can import it too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_moto(extra_env: dict[str, str] | None = None,
               host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """A `moto_server` subprocess on a free port of `host` (loopback unless a test needs pods on
    a real node to reach it: then this machine's node address); returns (process, endpoint)."""
    port = free_port(host)
    env = dict(os.environ, **(extra_env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    endpoint = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return proc, endpoint
        except OSError:
            time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError("moto_server did not start within 30 s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

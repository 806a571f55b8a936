"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGES_DIR = Path(__file__).parent / "pages"
BENCH_PAGES_DIR = Path(__file__).parents[1] / "bench" / "recorder" / "pages"

# Failing uploads are retried for minutes in production (WEBRECORD_DELIVERY_RETRY_S); tests of
# failure paths would wait that long. Tests of the retry itself set it explicitly.
os.environ.setdefault("WEBRECORD_DELIVERY_RETRY_S", "0")

# The real Kubernetes control plane (control_plane, k8s_namespace fixtures): tests/controlplane/;
# a real one-node cluster that runs pods (node_cluster fixture): tests/node/.
pytest_plugins = ["controlplane.plugin", "node.plugin"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


def _serve_directory(directory: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving `directory`; yields its base URL (no slash)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def page_server() -> Iterator[str]:
    """tests/pages/ on a loopback HTTP server; its base URL."""
    yield from _serve_directory(PAGES_DIR)


@pytest.fixture(scope="session")
def bench_pages() -> Iterator[str]:
    """bench/recorder/pages on a loopback HTTP server (frames.html: a barcode of the rAF count)."""
    yield from _serve_directory(BENCH_PAGES_DIR)


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of the real `helm` binary (tests/operator/helm.sh builds it once from Go modules)."""
    script = Path(__file__).parent / "operator" / "helm.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, f"tests/operator/helm.sh failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip()

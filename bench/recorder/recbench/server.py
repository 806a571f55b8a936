"""A quiet static HTTP server on loopback for the benchmark pages."""

from __future__ import annotations

import functools
import http.server
import threading
import time
import urllib.parse
from pathlib import Path

PAGES = Path(__file__).resolve().parents[1] / "pages"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    beacons: dict[str, float]
    requests: list[tuple[float, str]]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        # The pages call /beacon?id=<run> on their first frame: the page is on screen.
        url = urllib.parse.urlsplit(self.path)
        self.requests.append((time.monotonic(), self.path))
        if url.path == "/beacon":
            run = urllib.parse.parse_qs(url.query).get("id", [""])[0]
            self.beacons.setdefault(run, time.monotonic())
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


class PageServer:
    def __init__(self, directory: Path = PAGES) -> None:
        self.beacons: dict[str, float] = {}
        self.requests: list[tuple[float, str]] = []  # (monotonic, path): diagnostics
        handler_cls = type("Handler", (_Quiet,), {"beacons": self.beacons, "requests": self.requests})
        handler = functools.partial(handler_cls, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "PageServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, page: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{page}"

    def wait_shown(self, run: str, timeout: float) -> float | None:
        """Monotonic time the page of `run` reported its first frame, None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run in self.beacons:
                return self.beacons[run]
            time.sleep(0.02)
        return None

"""Attack-suite fixtures: the adapter's real loopback servers (tests/adapter) and a loopback
"forbidden" HTTP server that counts the requests reaching it (test traffic never leaves this
machine: the forbidden address is a loopback one, with loopback refused)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from adapter.conftest import KEYS, make_server, server, signed_server  # noqa: F401 - fixtures


class Forbidden:
    """A real HTTP server on 127.0.0.1; `hits` counts every request it got."""

    def __init__(self) -> None:
        outer = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                outer.hits += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"<html>secret</html>")

            do_POST = do_GET  # noqa: N815

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def forbidden() -> Iterator[Forbidden]:
    srv = Forbidden()
    try:
        yield srv
    finally:
        srv.close()

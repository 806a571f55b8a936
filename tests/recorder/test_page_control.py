"""Page control (spec.page): a real HTTP server records what each request carried, a page
reports what it sees; real Chromium through the recorder's egress proxy."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from webrecord.api.models import ErrorCode, RecordingSpec, RecordingTask
from webrecord.recorder.session import Session
from webrecord.recorder.settings import RecorderSettings

from .media import frame_rgb

pytestmark = pytest.mark.browser

# Reports (POST /report) what the page sees; `injected` is what the caller's script set before
# this script ran. Left half red, right half blue, to check the layout fills the screen.
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<style>html,body{margin:0;height:100%%;overflow:hidden}
#l{position:fixed;left:0;top:0;width:50vw;height:100vh;background:#f00}
#r{position:fixed;right:0;top:0;width:50vw;height:100vh;background:#00f}</style></head>
<body><div id="l"></div><div id="r"></div><img src="%(third)s/pixel.png">
<script>
const seen = {ua: navigator.userAgent, dpr: devicePixelRatio, inner: innerWidth,
  injected: window.__injected || null, cookie: document.cookie,
  styled: getComputedStyle(document.body).outlineStyle};
fetch("/report", {method: "POST", body: JSON.stringify(seen)}).then(() => {
  console.log("START_RECORDING");
  setTimeout(() => console.log("END_RECORDING"), 2500);
});
</script></body></html>"""


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Serves PAGE; remembers each request's path and headers and each /report body."""

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.server.requests.append((self.path, dict(self.headers)))  # type: ignore[attr-defined]
        body = (PAGE % {"third": self.server.third}).encode()  # type: ignore[attr-defined]
        if self.path.startswith("/pixel"):
            body = b""
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if body else "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        self.server.reports.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()


def _serve(host: str, third: str = "") -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, 0), _Recorder)
    server.requests, server.reports, server.third = [], [], third  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def sites() -> Iterator[tuple[http.server.ThreadingHTTPServer, http.server.ThreadingHTTPServer]]:
    """The RecordURL's site on 127.0.0.1 and a third party on 127.0.0.2 (another host)."""
    third = _serve("127.0.0.2")
    site = _serve("127.0.0.1", third=f"http://127.0.0.2:{third.server_address[1]}")
    try:
        yield site, third
    finally:
        for server in (site, third):
            server.shutdown()
            server.server_close()


SCRIPT = "window.__injected = 'before the page';"


@pytest.mark.timeout(120)
async def test_page_control_reaches_the_page_and_only_its_site(tmp_path: Path, sites) -> None:
    site, third = sites
    url = f"http://127.0.0.1:{site.server_address[1]}/"
    spec = RecordingSpec(record_url=url, width=640, height=360, manual_start=True,
                         max_duration_limit=20, page={
        "user_agent": "webrecord-test/1.0", "device_scale_factor": 2,
        "headers": [{"name": "X-Caller-Token", "value": "t0k3n"}],
        "cookies": [{"name": "sid", "value": "abc", "http_only": True},
                    {"name": "pref", "value": "dark", "domain": "127.0.0.1"}],
        "scripts": [SCRIPT], "styles": ["body { outline: dotted }"]})
    session = Session(RecordingTask(task_id="pc", spec=spec), tmp_path / "work",
                      RecorderSettings(manual_start_timeout=30))
    status = await asyncio.wait_for(session.run(), 90)
    assert status.result.error_code is None, status.result

    page_requests = [h for path, h in site.requests if path == "/"]
    assert page_requests, site.requests
    headers = {k.lower(): v for k, v in page_requests[0].items()}
    assert headers["x-caller-token"] == "t0k3n"
    assert headers["user-agent"] == "webrecord-test/1.0"
    assert sorted(headers["cookie"].split("; ")) == ["pref=dark", "sid=abc"], headers
    # The third party got the page's request but none of the caller's header or cookies.
    assert third.requests, "the page's third-party image was not requested"
    for _, h in third.requests:
        lower = {k.lower() for k in h}
        assert "x-caller-token" not in lower and "cookie" not in lower, h

    [seen] = site.reports
    assert seen["ua"] == "webrecord-test/1.0"
    assert seen["dpr"] == 2 and seen["inner"] == 640, seen  # the layout keeps its size
    assert seen["injected"] == "before the page"  # the caller's script ran first
    assert seen["cookie"] == "pref=dark", seen  # the HttpOnly one stays out of the page
    assert seen["styled"] == "dotted", seen

    # START_RECORDING started it, END_RECORDING stopped it ~2.5 s later.
    assert 1.5 <= status.recorded_seconds <= 5, status.recorded_seconds
    frame = frame_rgb(session.packaged.path, 0.5).astype(int)
    left, right = frame[180, 100], frame[180, 540]  # the layout fills the recorded screen
    assert np.abs(left - [255, 0, 0]).max() < 40 and np.abs(right - [0, 0, 255]).max() < 40, \
        (left, right)


@pytest.mark.timeout(90)
async def test_console_signals_can_be_turned_off(tmp_path: Path, sites) -> None:
    site, _ = sites
    spec = RecordingSpec(record_url=f"http://127.0.0.1:{site.server_address[1]}/",
                         width=320, height=240, manual_start=True,
                         page={"console_signals": False})
    session = Session(RecordingTask(task_id="pc2", spec=spec), tmp_path / "work",
                      RecorderSettings(manual_start_timeout=5))
    status = await asyncio.wait_for(session.run(), 60)
    assert site.reports, "the page did not run"
    assert status.result.error_code == ErrorCode.MANUAL_START_TIMEOUT, status.result

"""Prometheus metrics of a real `webrecord serve` (local backend) and of its real recorder,
scraped during a recording and after it, checked against what happened: one Start, a
recording that reached `recording`, a Stop, the delivered file and the callback it sent."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Client
from .helpers import ServeProcess, play, sample, scrape, video_path, wait_for

pytestmark = pytest.mark.browser


class HeldCallback:
    """A loopback callback receiver that holds each callback until `release` is set, so the
    recorder sits in its callback phase (upload done) while the test scrapes it."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.bodies: list[bytes] = []
        held = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                held.bodies.append(body)
                held.arrived.set()
                held.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cb"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held_callback() -> Iterator[HeldCallback]:
    receiver = HeldCallback()
    yield receiver
    receiver.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[Client, str, Path]]:
    """`webrecord serve` as its own process: (API client, metrics base URL, state dir)."""
    state = tmp_path / "state"
    with ServeProcess(tmp_path, "--no-auth", "--metrics-port", "0", "--state-dir", str(state),
                      env={"WEBRECORD_ADAPTER_STOP_RECORDERS_ON_EXIT": "true"}) as served:
        yield (Client("127.0.0.1", served.port),
               f"http://127.0.0.1:{served.metrics_port}/metrics", state)


@pytest.mark.timeout(180)
def test_metrics_follow_a_real_recording(serve, page_server: str,
                                         held_callback: HeldCallback) -> None:
    client, metrics_url, state = serve
    before = scrape(metrics_url)
    assert sample(before, "webrecord_recordings", status="recording") == 0
    assert sample(before, "webrecord_queue_length") == 0

    start = client.call("Start", {"RecordURL": f"{page_server}/recorder_sync.html", "Width": 640,
                                  "Height": 360, "CallbackURL": held_callback.url})
    assert start.status == 200, start.body
    task_id = start.body["TaskID"]

    def describe() -> dict:
        return client.call("Describe", {"TaskID": task_id}).body

    wait_for(describe, lambda d: d["Status"] == "recording", 60, "recording")
    during = scrape(metrics_url)
    assert sample(during, "webrecord_recordings", status="recording") == 1
    assert sample(during, "webrecord_recordings", status="normal") == 0
    assert sample(during, "webrecord_adapter_requests_total", action="Start", code="ok") == 1
    assert sample(during, "webrecord_queue_wait_seconds_count") == 1

    # The recorder's own endpoint (its control port, no token needed for /metrics).
    recorder = f"http://127.0.0.1:{(state / 'tasks' / task_id / 'port').read_text()}/metrics"
    live = wait_for(lambda: {"m": scrape(recorder)},
                    lambda s: sample(s["m"], "webrecord_recorder_recorded_seconds") >= 2, 30,
                    "2 recorded seconds")["m"]
    assert sample(live, "webrecord_recorder_status", status="recording") == 1
    assert sample(live, "webrecord_recorder_status", status="paused") == 0
    assert sample(live, "webrecord_recorder_segments") >= 1
    assert sample(live, "webrecord_upload_bytes_total") == 0
    # ffmpeg's progress reports: frames flow at about the frame rate (30 fps), the encoder
    # keeps up with real time on this page.
    assert sample(live, "webrecord_recorder_frames_total") >= 15
    assert sample(live, "webrecord_recorder_encoder_speed_ratio") > 0.5

    assert client.call("Stop", {"TaskID": task_id}).status == 200
    # The recorder holds in its callback phase until released: the upload is over by then.
    assert held_callback.arrived.wait(60), "no callback arrived"
    holding = scrape(recorder)
    assert sample(holding, "webrecord_recorder_status", status="callback") == 1
    assert sample(holding, "webrecord_upload_seconds_total") > 0
    uploaded = sample(holding, "webrecord_upload_bytes_total")
    frames = sample(holding, "webrecord_recorder_frames_total")
    repeated = sample(holding, "webrecord_recorder_repeated_frames_total")
    held_callback.release.set()

    done = wait_for(describe, lambda d: d["Status"] == "finished", 60, "finished")
    assert not done["Result"].get("ErrorCode"), done
    (video,) = done["Result"]["Videos"]
    size = video_path(video).stat().st_size
    assert video["FileSize"] == size == uploaded
    # Every frame ffmpeg reported encoding is in the video (its last report comes at its exit).
    decoded = play(video_path(video))
    assert abs(decoded - frames) <= 1, (frames, decoded)
    assert 0 <= repeated < frames
    after = scrape(metrics_url)
    assert sample(after, "webrecord_recordings_finished_total", error_code="ok") == 1
    assert sample(after, "webrecord_delivered_bytes_total") == size
    assert sample(after, "webrecord_callbacks_total", outcome="ok") == 1
    assert ("webrecord_callbacks_total", frozenset({("outcome", "failed")})) not in after
    assert len(held_callback.bodies) == 1
    assert sample(after, "webrecord_start_latency_seconds_count") == 1
    assert sample(after, "webrecord_start_latency_seconds_sum") == (
        done["StartTime"] - done["CreateTime"])
    assert sample(after, "webrecord_recorder_restarts_total") == 0
    assert all(sample(after, "webrecord_recordings", status=s) == 0
               for s in ("normal", "recording", "paused", "canceled", "upload", "callback"))
    assert sample(after, "webrecord_adapter_requests_total", action="Stop", code="ok") == 1
    assert sample(after, "webrecord_adapter_requests_total", action="Describe", code="ok") >= 2
    # Unauthenticated scrapes never reach the API port: /metrics there is the protocol's 404.
    assert client.request("GET", "/metrics").status == 404

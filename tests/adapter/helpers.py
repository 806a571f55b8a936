"""Polling and media helpers shared by the adapter's end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from recorder.media import decode_errors


def describe(client: Any, task_id: str, key: str | None = None) -> dict:
    """Describe reply body of a task (asserting HTTP 200)."""
    reply = client.call("Describe", {"TaskID": task_id}, key=key)
    assert reply.status == 200, reply.body
    return reply.body


def wait_for(describe: Callable[[], dict], predicate: Callable[[dict], bool], timeout: float,
              what: str) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        last = describe()
        if predicate(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last Describe: {json.dumps(last)}")


def video_path(video: dict[str, Any]) -> Path:
    url = video["FileURL"]
    assert url.startswith("file://"), url
    return Path(unquote(urlsplit(url).path))


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return float(json.loads(out.stdout)["format"]["duration"])


def play(path: Path) -> int:
    """Decode every frame (what a player does); returns the number of video frames decoded."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames,codec_name,width,height", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    stream = json.loads(out.stdout)["streams"][0]
    assert not (errors := decode_errors(path)), errors
    return int(stream["nb_read_frames"])


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """GET a Prometheus endpoint; {(sample name, frozenset of label items): value}."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    reply = requests.get(url, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain"), reply.headers
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def sample(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """One sample's value; KeyError (with the names present) when it is not exported."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        raise KeyError(f"{name}{labels} not exported; have {sorted({n for n, _ in samples})}")
    return samples[key]


class ServeProcess:
    """`python -m webrecord.adapter serve ARGS --port 0 --port-file ...` as its own process
    (a context manager): `port`, `metrics_port` (with --metrics-port), `proc`, `log_text()`."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        import os
        import sys

        self.root = root
        self.port_file = root / "port"
        self.log_path = root / "serve.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webrecord.adapter", "serve", "--port", "0",
             "--port-file", str(self.port_file), *args],
            stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        try:
            wait_for(lambda: {"up": self.port_file.exists(), "exited": self.proc.poll()},
                     lambda s: s["up"] or s["exited"] is not None, 30, "serve to listen")
            assert self.proc.poll() is None, self.log_text()
        except BaseException:
            self.stop()
            raise
        self.port = int(self.port_file.read_text())
        metrics_file = Path(f"{self.port_file}.metrics")
        self.metrics_port = int(metrics_file.read_text()) if metrics_file.exists() else None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

"""Polling and media helpers shared by the adapter's end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


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
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )
    # Decoder errors fail; the null muxer's note about a repeated DTS at a segment join (the
    # recorder concatenates segments without re-encoding) is not a playback problem.
    problems = [
        line for line in decode.stderr.splitlines()
        if line.strip() and "non monotonically increasing dts" not in line
    ]
    assert decode.returncode == 0 and not problems, decode.stderr
    return int(stream["nb_read_frames"])

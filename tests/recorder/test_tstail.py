"""tstail.last_pts against ffprobe on real MPEG-TS files written by ffmpeg."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from webrecord.recorder.tstail import last_pts


def _ts(path: Path, offset: float = 1000.0) -> tuple[float, float]:
    """A 2 s picture-and-sound TS whose stamps start at `offset`; returns ffprobe's latest
    picture PTS and latest PTS of any packet. A sound PES holds several AAC frames, which
    ffprobe stamps one by one; the file itself carries only the PES's first stamp."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    "-output_ts_offset", str(offset), "-f", "mpegts", str(path)],
                   check=True, timeout=60)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts_time",
                          "-of", "json", str(path)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    packets = json.loads(out)["packets"]
    picture = max(float(p["pts_time"]) for p in packets if p["stream_index"] == 0)
    return picture, max(float(p["pts_time"]) for p in packets)


@pytest.mark.timeout(60)
def test_the_latest_stamp_is_ffprobes(tmp_path):
    path = tmp_path / "a.ts"
    picture, latest = _ts(path)
    assert picture > 1001.5
    found = last_pts(path)
    assert found is not None and picture - 1e-4 <= found <= latest, (found, picture, latest)


@pytest.mark.timeout(60)
def test_a_file_cut_mid_packet_still_answers(tmp_path):
    path = tmp_path / "a.ts"
    picture, latest = _ts(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 100])  # the writer was mid-packet
    cut = last_pts(path)
    assert cut is not None and picture - 0.2 <= cut <= latest, (cut, picture, latest)


def test_no_file_or_no_stamps_is_none(tmp_path):
    assert last_pts(tmp_path / "missing.ts") is None
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    assert last_pts(empty) is None
    assert last_pts(empty.with_name("junk.ts")) is None
    (tmp_path / "junk.ts").write_bytes(b"\x47" + b"\x00" * 187 * 3)
    assert last_pts(tmp_path / "junk.ts") is None


@pytest.mark.timeout(60)
def test_a_last_picture_longer_than_the_first_window_is_read_through(tmp_path):
    """The last 64 KiB hold no PES start (a large keyframe still being written): the reader
    widens its window and finds the stamps before it."""
    path = tmp_path / "a.ts"
    _ts(path)
    before = last_pts(path)
    # 600 continuation packets (no payload unit start) of one PID: 110 KiB without a PES start.
    continuation = bytes([0x47, 0x01, 0x00, 0x10]) + b"\xff" * 184
    with open(path, "ab") as f:
        f.write(continuation * 600)
    assert before is not None and last_pts(path) == before
    assert last_pts(path, tail_bytes=64 * 1024) is None  # the first window alone has none

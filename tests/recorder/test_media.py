"""The decode check itself (media.decode_errors): a file whose timestamps increase passes even
when ffmpeg's default 1/fps rounding would merge two of them (CI saw this on a recording with a
segment join); a broken file still fails. (ffmpeg's mp4 muxer will not write a repeated
timestamp, so that case cannot be made here.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .media import decode_errors


def _make(path: Path, video_pts: str) -> Path:
    """2 s of 30 fps video with the given timestamps (1/90000 ticks) beside audio from 0."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "2",
         "-vf", f"settb=1/90000,setpts='{video_pts}'", "-fps_mode", "passthrough",
         "-enc_time_base:v", "1:90000", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0",
         "-c:a", "aac", "-video_track_timescale", "90000", str(path)],
        check=True, timeout=60, capture_output=True)
    return path


@pytest.mark.timeout(60)
def test_timestamps_half_a_frame_off_the_grid_decode_clean(tmp_path: Path) -> None:
    # Video from 0.05 s (4500 ticks) every 1/30 s (3000), one tick earlier from frame 19 on:
    # frames 18 and 19 sit at 19.5 and 20.49997 frames and both round to 20.
    path = _make(tmp_path / "half.mp4", "4500+3000*N-gte(N\\,19)")
    default = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                             capture_output=True, text=True, timeout=60)
    assert "non monotonically increasing dts" in default.stderr  # what the old check tripped on
    assert decode_errors(path) == ""


@pytest.mark.timeout(60)
def test_a_broken_file_is_still_an_error(tmp_path: Path) -> None:
    path = _make(tmp_path / "cut.mp4", "4500+3000*N")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the index (moov, written last) is gone
    assert decode_errors(path).startswith("exit ")

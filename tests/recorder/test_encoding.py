"""Per-task encoding settings (output.video extension): real recordings, checked with ffprobe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from webrecord.recorder.capture import ffmpeg_argv
from webrecord.recorder.settings import RecorderSettings

from .media import probe
from .test_output import record

pytestmark = pytest.mark.browser


def _video_stream(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                          "-show_entries", "stream=r_frame_rate,nb_read_packets,bit_rate",
                          "-of", "json", str(path)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)["streams"][0]


def _keyframe_times(path: Path) -> list[float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=pts_time,flags", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [float(line.split(",")[0]) for line in out.splitlines() if ",K" in line]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fps", [15, 60])
async def test_frame_rate_is_the_tasks(tmp_path, page_server, fps):
    session = await record(tmp_path, f"{page_server}/recorder_framecode.html", width=640,
                           height=360, max_duration_limit=4,
                           output={"video": {"frame_rate": fps, "keyframe_interval": 1}})
    path = session.packaged.path
    stream = _video_stream(path)
    assert stream["r_frame_rate"] == f"{fps}/1", stream
    seconds = probe(path)["duration"]
    measured = int(stream["nb_read_packets"]) / seconds
    assert abs(measured - fps) <= 0.1 * fps, (measured, fps)  # frames really at that rate
    keys = _keyframe_times(path)
    gaps = sorted(b - a for a, b in zip(keys, keys[1:]))
    # keyframe_interval 1 s (every fps-th frame; a segment cut may add one sooner, a frame
    # dropped on a busy machine moves one a little)
    assert len(gaps) >= 2 and max(gaps) <= 1.1 and abs(gaps[len(gaps) // 2] - 1.0) < 0.1, gaps


@pytest.mark.timeout(150)
async def test_video_bitrate_cap_is_honoured(tmp_path, page_server):
    """A noise page at quality 18 needs several Mbit/s; capped at 400 kbit/s it stays near."""
    url = f"{page_server}/noise.html"
    free = await record(tmp_path / "free", url, width=640, height=360, max_duration_limit=5,
                        output={"video": {"quality": 18}})
    capped = await record(tmp_path / "cap", url, width=640, height=360, max_duration_limit=5,
                          output={"video": {"video_bitrate": 400}})

    def kbps(session) -> float:
        path = session.packaged.path
        video_bytes = sum(int(x) for x in subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size",
             "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True,
            timeout=60).stdout.split())
        return video_bytes * 8 / 1000 / probe(path)["duration"]

    free_kbps, capped_kbps = kbps(free), kbps(capped)
    assert free_kbps > 1500, free_kbps  # the page is expensive to encode at all
    assert capped_kbps <= 400 * 1.25, capped_kbps  # the cap, within rate-control slack


@pytest.mark.timeout(120)
async def test_audio_only_is_an_m4a_with_one_audio_stream(tmp_path, page_server):
    session = await record(tmp_path, f"{page_server}/recorder_sound.html", width=640, height=360,
                           max_duration_limit=3,
                           output={"video": {"audio_only": True, "audio_bitrate": 64}})
    path = session.packaged.path
    assert path.suffix == ".m4a", path
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,codec_name,bit_rate", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    streams = json.loads(out)["streams"]
    assert [s["codec_type"] for s in streams] == ["audio"], streams
    assert streams[0]["codec_name"] == "aac"
    assert int(streams[0]["bit_rate"]) <= 64000 * 1.2, streams  # the task's audio bitrate
    assert 1.5 <= probe(path)["duration"] <= 5.0  # MaxDurationLimit 3, on a busy machine
    # No display capture: the capture's only input was the sound server.
    capture = session.captures[0]
    argv = ffmpeg_argv(RecorderSettings(), ":9", 640, 360, tmp_path, 0, 0.0, enc=capture.encoding)
    assert "x11grab" not in argv and argv.count("-i") == 1 and "libx264" not in argv, argv


@pytest.mark.parametrize("width, height, threads", [(1280, 720, ["-threads:v", "1"]), (2560, 2560, [])])
def test_x264_threads_by_frame_size(tmp_path, width, height, threads):
    """One x264 thread up to large_frame_pixels (cheaper, steadier beside other recordings);
    x264's own choice above, where one thread cannot keep the frame rate."""
    argv = ffmpeg_argv(RecorderSettings(), ":9", width, height, tmp_path, 0, 0.0)
    found = [argv[i:i + 2] for i, a in enumerate(argv) if a == "-threads:v"]
    assert found == ([threads] if threads else []), argv
    assert argv[argv.index("-sws_flags") + 1] == "area+full_chroma_inp"

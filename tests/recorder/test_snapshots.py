"""Snapshots (output.snapshots) from real recordings: a page that paints its clock as a code
(recorder_framecode.html) is recorded with a pause in the middle; every JPEG must be the
video's own frame at the Time it is listed with, one per second of video time (the pause takes
none), the poster the last frame; delivered beside the video to the filesystem target and to a
real S3 endpoint on loopback (HLS), and listed in the Result and in Describe."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from delivery.conftest import aws_env, bucket, moto_endpoint, s3_client  # noqa: F401, F811
from webrecord.api.models import Action, Phase, RecordingSpec, RecordingTask
from webrecord.api.protocol import describe_body
from webrecord.recorder.finish import deliver_packaged
from webrecord.recorder.session import Session
from webrecord.recorder.settings import RecorderSettings

from .media import frame_codes
from .test_session import running

pytestmark = pytest.mark.browser


def jpeg_info(path: Path) -> dict:
    """ffprobe's view of one image: it must decode as a JPEG."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_name,width,height", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return json.loads(out)["streams"][0]


def jpeg_code(path: Path) -> float:
    """The page clock (s) painted in a snapshot of recorder_framecode.html."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf",
                          "scale=16:1:flags=area,format=gray", "-f", "rawvideo", "-"],
                         capture_output=True, check=True, timeout=30).stdout
    bits = np.frombuffer(raw, np.uint8)[:16] > 128
    return float((bits * (1 << np.arange(15, -1, -1))).sum()) / 100.0


def assert_video_frames(video: Path, shots: list, poster, interval: float) -> list[float]:
    """Each JPEG is the video frame at its Time (seconds after the first frame): the first frame
    at or after k*interval. Returns the page clock in each periodic snapshot."""
    pts, codes = frame_codes(video)
    pts = pts - pts[0]
    wanted = [k * interval for k in range(int(pts[-1] // interval) + 1)]
    assert len(shots) == len(wanted), ([s.time for s in shots], pts[-1])
    clocks = []
    for k, (shot, at) in enumerate(zip(shots, wanted)):
        first = int(np.searchsorted(pts, at - 1e-6))  # the first frame at or after k*interval
        assert abs(shot.time - pts[first]) < 0.002, (k, shot.time, pts[first])
        assert jpeg_code(shot.path) == pytest.approx(codes[first], abs=0.001), (k, shot.time)
        clocks.append(jpeg_code(shot.path))
    assert abs(poster.time - pts[-1]) < 0.002, (poster.time, pts[-1])
    assert jpeg_code(poster.path) == pytest.approx(codes[-1], abs=0.001)
    return clocks


@pytest.mark.timeout(120)
async def test_snapshots_every_second_skip_the_pause_and_land_beside_the_video(
        tmp_path, page_server, monkeypatch):
    out_dir = tmp_path / "published"
    monkeypatch.setenv("WEBRECORD_OUTPUT_DIR", str(out_dir))
    task = RecordingTask(task_id="snap1", spec=RecordingSpec(
        record_url=f"{page_server}/recorder_framecode.html", width=640, height=360,
        max_duration_limit=60, output={"snapshots": {"interval_seconds": 1},
                                       "cos": {"target_dir": "class", "target_name": "room-1"}}))
    session = Session(task, tmp_path / "work", RecorderSettings(segment_seconds=3600))
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        await asyncio.sleep(2.5)
        assert (await session.control(Action.PAUSE, 1)).status == Phase.PAUSED
        await asyncio.sleep(2.5)
        await session.control(Action.RESUME, 2)
        await asyncio.sleep(2.5)
        await session.control(Action.STOP, 3)
        status = await asyncio.wait_for(run, 60)
    assert status.result.error_code is None, status.result
    packaged = session.packaged
    clocks = assert_video_frames(packaged.path, packaged.snapshots, packaged.poster, 1.0)
    # One a second of page time while recording; across the pause the page clock jumps by the
    # paused time, and no snapshot repeats the paused frame.
    steps = np.diff(clocks)
    jumps = [s for s in steps if s > 2.0]
    assert len(jumps) == 1 and jumps[0] >= 2.8, steps
    assert all(0.6 <= s <= 1.5 for s in steps if s <= 2.0), steps
    assert len(set(clocks)) == len(clocks)

    result = await deliver_packaged(task, session, status)
    assert result.error_code is None, result
    assert [s.filename for s in result.snapshots] == [
        f"room-1_snapshot_{i:05d}.jpg" for i in range(1, len(packaged.snapshots) + 1)]
    assert result.poster.filename == "room-1_poster.jpg"
    folder = out_dir / "class"
    assert (folder / "room-1.mp4").is_file()
    for line, local in zip([*result.snapshots, result.poster],
                           [*packaged.snapshots, packaged.poster]):
        published = folder / line.filename
        assert line.file_url == published.resolve().as_uri()
        assert published.read_bytes() == local.path.read_bytes()
        assert line.file_size == published.stat().st_size > 1000
        assert line.time == local.time
        info = jpeg_info(published)
        assert (info["codec_name"], info["width"], info["height"]) == ("mjpeg", 640, 360), info

    body = describe_body(status.model_copy(update={"result": result}))["Result"]
    assert [s["Time"] for s in body["Snapshots"]] == [s.time for s in packaged.snapshots]
    assert body["Poster"]["Filename"] == "room-1_poster.jpg"
    assert body["Snapshots"][0]["FileURL"].endswith("/class/room-1_snapshot_00001.jpg")


@pytest.mark.timeout(120)
async def test_hls_snapshots_and_poster_go_to_the_bucket_beside_the_playlist(
        tmp_path, page_server, monkeypatch, moto_endpoint, bucket):  # noqa: F811
    monkeypatch.setenv("WEBRECORD_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("WEBRECORD_S3_ADDRESSING_STYLE", "path")
    task = RecordingTask(task_id="snap2", spec=RecordingSpec(
        record_url=f"{page_server}/recorder_framecode.html", width=640, height=360,
        max_duration_limit=5, output={  # not a multiple of 2 s: no frame at the boundary
            "video": {"muxer": "hls"}, "snapshots": {"interval_seconds": 2},
            "cos": {"bucket": bucket, "region": "us-east-1", "target_dir": "d",
                    "target_name": "talk"}}))
    session = Session(task, tmp_path / "work", RecorderSettings(hls_segment_seconds=1))
    status = await asyncio.wait_for(session.run(), 60)
    assert status.result.error_code is None, status.result
    packaged = session.packaged
    assert_video_frames(packaged.path, packaged.snapshots, packaged.poster, 2.0)

    result = await deliver_packaged(task, session, status)
    assert result.error_code is None, result
    s3 = s3_client(moto_endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="d/")["Contents"]}
    assert "d/talk.m3u8" in keys
    names = [s.filename for s in result.snapshots] + [result.poster.filename]
    assert names[-1] == "talk_poster.jpg" and names[0] == "talk_snapshot_00001.jpg"
    for line, local in zip([*result.snapshots, result.poster],
                           [*packaged.snapshots, packaged.poster]):
        assert f"d/{line.filename}" in keys, keys
        body = s3.get_object(Bucket=bucket, Key=f"d/{line.filename}")
        assert body["ContentType"] == "image/jpeg"
        assert body["Body"].read() == local.path.read_bytes()
        assert line.file_url.endswith(f"/{bucket}/d/{line.filename}"), line.file_url

"""deliver(): filesystem target, callback body/signature/retries, phases, error mapping."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from webrecord.api.models import (
    CosOutput,
    ErrorCode,
    OutputSpec,
    Phase,
    RecorderStatus,
    RecordingSpec,
    RecordingTask,
)
from webrecord.delivery.callback import verify_signature
from webrecord.delivery.pipeline import LocalVideo, deliver, hls_files

from .conftest import CallbackServer, fast_settings

SECRET = "s3cr3t-per-deployment"


def make_task(task_id: str = "task-1", callback: str | None = None, **spec) -> RecordingTask:
    return RecordingTask(
        task_id=task_id,
        spec=RecordingSpec(record_url="http://127.0.0.1/page.html", callback_url=callback,
                           **spec),
    )


def make_status(task_id: str = "task-1") -> RecorderStatus:
    now = int(time.time())
    return RecorderStatus(task_id=task_id, status=Phase.TRANSCODE, create_time=now - 10,
                          start_time=now - 9, cancel_time=now - 1, stop_time=now - 1,
                          recorded_seconds=2.0, segments=1)


class Phases(list):
    async def __call__(self, phase: Phase) -> None:
        self.append(phase)


def copy_video(src: Path, work: Path) -> LocalVideo:
    work.mkdir(parents=True, exist_ok=True)
    dst = work / src.name
    shutil.copy(src, dst)
    return LocalVideo(path=dst, duration=2.0, muxer="mp4")


@pytest.mark.timeout(60)
async def test_filesystem_target_and_signed_callback(
    tmp_path: Path, sample_mp4: Path, callback_server: CallbackServer
) -> None:
    out = tmp_path / "cfs"
    video = copy_video(sample_mp4, tmp_path / "work")
    status = make_status()
    phases = Phases()
    settings = fast_settings(output_dir=out, callback_secret=SECRET)

    result = await deliver(make_task(callback=callback_server.url), [video], status, phases,
                           settings)

    assert result.error_code is None, result.error_message
    final = out / "task-1" / f"{status.stop_time}.mp4"  # defaults: TargetDir=id, name=stop ts
    assert final.read_bytes() == sample_mp4.read_bytes()
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no temp file left over
    assert phases == [Phase.UPLOAD, Phase.CALLBACK]
    [v] = result.videos
    assert (v.filename, v.file_size, v.file_url) == (
        final.name, sample_mp4.stat().st_size, final.resolve().as_uri())

    [got] = callback_server.received
    assert verify_signature(SECRET, got.body, got.headers)
    assert not verify_signature("wrong", got.body, got.headers)
    assert not verify_signature(SECRET, got.body + b" ", got.headers)
    body = json.loads(got.body)
    assert body["TaskID"] == "task-1" and body["Status"] == "callback"
    assert body["StopTime"] == status.stop_time and "FinishTime" not in body
    assert body["Result"] == {"ErrorCode": "", "ErrorMessage": "", "Videos": [{
        "Filename": final.name, "FileSize": sample_mp4.stat().st_size, "FileDuration": 2.0,
        "FileURL": final.resolve().as_uri()}]}
    assert video.path.exists()  # the local file is the recorder's to clean up


@pytest.mark.timeout(60)
async def test_callback_fails_then_delays_then_accepts(
    tmp_path: Path, sample_mp4: Path, callback_server: CallbackServer
) -> None:
    callback_server.script = [500, "slow", "drop", 503]  # the 5th try is accepted
    video = copy_video(sample_mp4, tmp_path / "work")
    settings = fast_settings(output_dir=tmp_path / "cfs", callback_secret=SECRET)
    started = time.monotonic()

    result = await deliver(make_task(callback=callback_server.url), [video], make_status(),
                           Phases(), settings)

    assert result.error_code is None, result.error_message
    assert callback_server.tries == 5
    assert len(callback_server.received) == 1
    assert verify_signature(SECRET, callback_server.received[0].body,
                            callback_server.received[0].headers)
    # the slow try was abandoned at the 2 s per-try timeout, not waited out (3 s)
    assert 2.0 <= time.monotonic() - started < 12.0


@pytest.mark.timeout(60)
async def test_callback_down_sets_callback_failed(
    tmp_path: Path, sample_mp4: Path, callback_server: CallbackServer
) -> None:
    callback_server.script = [502] * 5
    video = copy_video(sample_mp4, tmp_path / "work")
    settings = fast_settings(output_dir=tmp_path / "cfs")

    result = await deliver(make_task(callback=callback_server.url), [video], make_status(),
                           Phases(), settings)

    assert callback_server.tries == 5
    assert result.error_code is ErrorCode.CALLBACK_FAILED
    assert "after 5 tries" in result.error_message and "HTTP 502" in result.error_message
    assert result.videos[0].file_url  # the upload itself succeeded and is reported


@pytest.mark.timeout(60)
async def test_callback_unreachable(tmp_path: Path, sample_mp4: Path) -> None:
    from .conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/cb"  # nothing listens there
    video = copy_video(sample_mp4, tmp_path / "work")
    result = await deliver(make_task(callback=url), [video], make_status(), Phases(),
                           fast_settings(output_dir=tmp_path / "cfs"))
    assert result.error_code is ErrorCode.CALLBACK_FAILED
    assert f"cannot reach {url}" in result.error_message


@pytest.mark.timeout(60)
async def test_filesystem_hls_directory(tmp_path: Path, sample_hls: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(sample_hls.parent, work)
    playlist = work / sample_hls.name
    task = make_task(output=OutputSpec(video={"muxer": "hls"}))
    status = make_status()
    out = tmp_path / "cfs"

    result = await deliver(task, [LocalVideo(playlist, 4.0, "hls")], status, Phases(),
                           fast_settings(output_dir=out))

    assert result.error_code is None, result.error_message
    final_dir = out / "task-1" / str(status.stop_time)
    names = sorted(p.name for p in final_dir.iterdir())
    segments = sorted(hls_files(playlist))
    assert len(segments) >= 3
    assert names == sorted([f"{status.stop_time}.m3u8", *segments])
    assert result.videos[0].file_url == (final_dir / f"{status.stop_time}.m3u8").resolve().as_uri()
    assert result.videos[0].file_size == sum(p.stat().st_size for p in work.glob("*.*")
                                             if p.suffix in (".ts", ".m3u8"))
    assert [p.name for p in (out / "task-1").iterdir()] == [str(status.stop_time)]


@pytest.mark.timeout(60)
async def test_missing_local_file_is_reported(tmp_path: Path) -> None:
    video = LocalVideo(tmp_path / "gone.mp4", 1.0, "mp4")
    result = await deliver(make_task(), [video], make_status(), Phases(),
                           fast_settings(output_dir=tmp_path / "cfs"))
    assert result.error_code is ErrorCode.UPLOAD_FAILED
    assert f"local file {video.path} is missing" in result.error_message


@pytest.mark.timeout(60)
async def test_earlier_error_is_kept_and_nothing_recorded(tmp_path: Path) -> None:
    status = make_status()
    status.result.error_code = ErrorCode.ENCODER_FAILED
    status.result.error_message = "ffmpeg exited with 1"
    result = await deliver(make_task(), [], status, Phases(), fast_settings())
    assert (result.error_code, result.error_message) == (ErrorCode.ENCODER_FAILED,
                                                         "ffmpeg exited with 1")
    result = await deliver(make_task(), [], make_status(), Phases(), fast_settings())
    assert result.error_code is ErrorCode.NOTHING_RECORDED


def test_target_names_from_cos_output() -> None:
    from webrecord.delivery.pipeline import target_dir, target_name

    task = make_task(output=OutputSpec(cos=CosOutput(bucket="b", target_dir="a/b/",
                                                     target_name="n")))
    assert (target_dir(task), target_name(task, make_status())) == ("a/b", "n")


@pytest.mark.timeout(60)
async def test_unsigned_callback_without_secret(
    tmp_path: Path, sample_mp4: Path, callback_server: CallbackServer
) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    result = await deliver(make_task(callback=callback_server.url), [video], make_status(),
                           Phases(), fast_settings())
    assert result.error_code is None
    [got] = callback_server.received
    assert "X-Webrecord-Signature" not in got.headers
    assert not verify_signature(SECRET, got.body, got.headers)
    assert json.loads(got.body)["Result"]["Videos"][0]["FileURL"] == video.path.resolve().as_uri()


def test_hls_files_never_include_the_key(tmp_path: Path) -> None:
    for name in ("init.mp4", "a.m4s", "sub/b.m4s", "rec.key"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path.parent / "outside.m4s").write_bytes(b"x")
    playlist = tmp_path / "rec.m3u8"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-KEY:METHOD=AES-128,URI="rec.key",IV=0x00000000000000000000000000000001\n'
        '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\na.m4s\n#EXTINF:2.0,\nsub/b.m4s\n'
        "#EXTINF:2.0,\n../outside.m4s\n#EXTINF:2.0,\nhttps://cdn.example.com/c.m4s\n"
        "#EXTINF:2.0,\nmissing.m4s\n#EXT-X-ENDLIST\n")
    assert sorted(hls_files(playlist)) == ["a.m4s", "init.mp4", "sub/b.m4s"]

"""Defence in depth below the models: a task whose names skipped validation (an old task file,
a bug) still cannot write outside the output root or onto another task's files; secrets on
disk are private from their creation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from webrecord import files
from webrecord.api.models import (
    CosOutput,
    ErrorCode,
    OutputSpec,
    Phase,
    RecorderStatus,
    RecordingSpec,
    RecordingTask,
)
from webrecord.delivery.pipeline import LocalVideo, deliver
from webrecord.delivery.settings import DeliverySettings

pytestmark = pytest.mark.timeout(60)


def _task(task_id: str, target_dir: str | None = None, target_name: str | None = None,
          muxer: str = "mp4", bucket: str | None = None) -> RecordingTask:
    spec = RecordingSpec(record_url="https://example.test/",
                         output=OutputSpec.model_validate({"video": {"muxer": muxer}}))
    # Assigned without validation: what a task that skipped the models' rules would hold.
    spec.output.cos = CosOutput.model_construct(target_dir=target_dir, target_name=target_name,
                                                bucket=bucket, region=None, domain=None)
    return RecordingTask(task_id=task_id, spec=spec)


def _video(work: Path, muxer: str = "mp4", content: bytes = b"video-bytes") -> LocalVideo:
    work.mkdir(parents=True, exist_ok=True)
    if muxer == "hls":
        (work / "v_00000.ts").write_bytes(content)
        playlist = work / "v.m3u8"
        playlist.write_text(f"#EXTM3U\n#EXTINF:1.0,\nv_00000.ts\n#EXT-X-ENDLIST\n# {content!r}\n")
        return LocalVideo(playlist, 1.0, "hls")
    path = work / "v.mp4"
    path.write_bytes(content)
    return LocalVideo(path, 1.0, "mp4")


async def _deliver(task: RecordingTask, video: LocalVideo, root: Path, stop: int = 1_800_000_000):
    async def on_phase(_: Phase) -> None:
        return None

    status = RecorderStatus(task_id=task.task_id, stop_time=stop)
    return await deliver(task, [video], status, on_phase, DeliverySettings(output_dir=root))


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize(("target_dir", "target_name", "muxer"), [
    ("../x", None, "mp4"),
    ("a/../../x", None, "mp4"),
    ("/etc-attack", None, "mp4"),  # stripped to a relative dir by target_dir(): stays inside
    (None, "../x", "mp4"),
    (None, "/tmp/escape", "mp4"),
    ("..", None, "hls"),  # used to move the whole shared output directory aside
    (None, "..", "hls"),
    ("sub", ".", "hls"),
])
async def test_names_that_skipped_validation_stay_inside(
        tmp_path: Path, target_dir: str | None, target_name: str | None, muxer: str) -> None:
    root = tmp_path / "area" / "output"
    root.mkdir(parents=True)
    (root / "other-task").mkdir()
    (root / "other-task" / "keep.mp4").write_bytes(b"another task's video")
    outside_before = _tree(tmp_path / "area")
    result = await _deliver(_task("wr-a", target_dir, target_name, muxer),
                            _video(tmp_path / "work", muxer), root)
    written = _tree(tmp_path / "area") - outside_before
    assert all(w.startswith("output/") for w in written), written
    assert (root / "other-task" / "keep.mp4").read_bytes() == b"another task's video"
    assert not Path("/tmp/escape.mp4").exists()
    if result.error_code is not None:
        assert result.error_code is ErrorCode.UPLOAD_FAILED
        assert "refused" in result.error_message


async def test_symlink_in_the_output_area_is_not_followed_out(tmp_path: Path) -> None:
    root = tmp_path / "output"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    result = await _deliver(_task("wr-a", "link"), _video(tmp_path / "work"), root)
    assert result.error_code is ErrorCode.UPLOAD_FAILED and "refused" in result.error_message
    assert not any(outside.iterdir())


async def test_object_keys_are_guarded_too(tmp_path: Path) -> None:
    result = await _deliver(_task("wr-a", "a/../../x", bucket="b"), _video(tmp_path / "w"), tmp_path)
    assert result.error_code is ErrorCode.UPLOAD_FAILED
    assert "must not contain '.' or '..' path segments" in result.error_message


@pytest.mark.parametrize("muxer", ["mp4", "hls"])
async def test_two_tasks_never_overwrite_each_other(tmp_path: Path, muxer: str) -> None:
    root = tmp_path / "output"
    first = await _deliver(_task("wr-a", "shared", "same", muxer), _video(tmp_path / "a", muxer, b"A"), root)
    assert first.error_code is None, first
    # Another task names the same file: refused, the first one's file kept.
    second = await _deliver(_task("wr-b", "shared", "same", muxer), _video(tmp_path / "b", muxer, b"B"), root)
    assert second.error_code is ErrorCode.UPLOAD_FAILED
    assert "not overwritten" in second.error_message
    kept = root / "shared" / ("same.mp4" if muxer == "mp4" else "same/same_00000.ts")
    if muxer == "mp4":
        assert kept.read_bytes() == b"A"
    else:
        assert "v_00000.ts" in (root / "shared" / "same" / "same.m3u8").read_text()
    # A retry of the first delivery (same bytes) is not a conflict.
    again = await _deliver(_task("wr-a", "shared", "same", muxer), _video(tmp_path / "a", muxer, b"A"), root)
    assert again.error_code is None, again


async def test_default_names_that_collide_get_the_task_id(tmp_path: Path) -> None:
    root = tmp_path / "output"
    a = await _deliver(_task("wr-a", "shared"), _video(tmp_path / "a", content=b"A"), root)
    b = await _deliver(_task("wr-b", "shared"), _video(tmp_path / "b", content=b"B"), root)
    assert a.error_code is None and b.error_code is None
    assert (root / "shared" / "1800000000.mp4").read_bytes() == b"A"
    assert (root / "shared" / "1800000000_wr-b.mp4").read_bytes() == b"B"
    assert b.videos[0].filename == "1800000000_wr-b.mp4"


def test_private_files_are_0600_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No chmod after the fact: with chmod disabled and a permissive umask the file is 0600."""
    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    monkeypatch.setattr(Path, "chmod", lambda *a, **k: None)
    old = os.umask(0)
    try:
        files.write_private(tmp_path / "token", "secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    # A symlink planted at the temporary name is not followed.
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / f".token2.{os.getpid()}.tmp").symlink_to(victim)
    files.write_private(tmp_path / "token2", "secret")
    assert victim.read_text() == "untouched"


def test_task_store_is_private(tmp_path: Path) -> None:
    from webrecord.adapter.store import TaskStore

    old = os.umask(0)
    try:
        store = TaskStore(tmp_path / "tasks.sqlite")
        store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "tasks.sqlite").stat().st_mode) == 0o600


def test_local_backend_token_and_task_files_private_at_creation(
        make_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real spawn path (the recorder command is `true`): with chmod disabled and
    umask 0 the control token and the task file are still 0600."""
    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    monkeypatch.setattr(Path, "chmod", lambda *a, **k: None)
    server = make_server(recorder_command=["true"])
    old = os.umask(0)
    try:
        reply = server.call("Start", {"RecordURL": "http://127.0.0.1:9/"})
    finally:
        os.umask(old)
    assert reply.status == 200, reply.body
    task_dir = Path(server.settings.state_dir).resolve() / "tasks" / reply.body["TaskID"]
    for name in ("token", "task.json"):
        assert stat.S_IMODE((task_dir / name).stat().st_mode) == 0o600, name


async def test_two_tasks_never_overwrite_each_others_objects(
        tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    client = boto3.session.Session().client("s3", endpoint_url=moto_endpoint,
                                            region_name="us-east-1")
    client.create_bucket(Bucket="shared")
    settings = DeliverySettings(s3_endpoint_url=moto_endpoint, s3_default_region="us-east-1")

    async def upload(task: RecordingTask, content: bytes):
        async def on_phase(_: Phase) -> None:
            return None
        status = RecorderStatus(task_id=task.task_id, stop_time=1_800_000_000)
        video = _video(tmp_path / task.task_id / content.decode(), content=content)
        return await deliver(task, [video], status, on_phase, settings)

    def body(key: str) -> bytes:
        return client.get_object(Bucket="shared", Key=key)["Body"].read()

    named_a = _task("wr-a", "d", "same", bucket="shared")
    assert (await upload(named_a, b"A")).error_code is None
    refused = await upload(_task("wr-b", "d", "same", bucket="shared"), b"B")
    assert refused.error_code is ErrorCode.UPLOAD_FAILED and "not overwritten" in refused.error_message
    assert body("d/same.mp4") == b"A"
    assert (await upload(named_a, b"A")).error_code is None  # the same task again: its own key
    # Default names (the stop time) that collide: the second becomes its own.
    assert (await upload(_task("wr-c", "e", bucket="shared"), b"C")).error_code is None
    other = await upload(_task("wr-d", "e", bucket="shared"), b"D")
    assert other.error_code is None and other.videos[0].filename == "1800000000_wr-d.mp4"
    assert body("e/1800000000.mp4") == b"C" and body("e/1800000000_wr-d.mp4") == b"D"

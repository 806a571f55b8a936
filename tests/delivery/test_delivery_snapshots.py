"""Snapshots in the delivery stage: a task without output.snapshots gets exactly the Result
and callback body it always got; images beside an mp4 on the filesystem target follow the
name delivery chose for the video, and a retry from the manifest redoes them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from webrecord.api.protocol import result_body
from webrecord.delivery import images
from webrecord.delivery.pipeline import MANIFEST_NAME, LocalVideo, deliver
from webrecord.storage.video import LocalSnapshot

from .conftest import fast_settings
from .test_delivery_pipeline import Phases, copy_video, make_status, make_task


@pytest.mark.timeout(60)
async def test_a_task_without_snapshots_gets_the_old_result(tmp_path: Path,
                                                            sample_mp4: Path) -> None:
    video = copy_video(sample_mp4, tmp_path / "work")
    result = await deliver(make_task(), [video], make_status(), Phases(),
                           fast_settings(output_dir=tmp_path / "cfs"))
    assert result.error_code is None, result
    assert set(result.wire()) == {"videos"}
    assert set(result_body(result)) == {"ErrorCode", "ErrorMessage", "Videos"}
    assert [p.name for p in (tmp_path / "cfs" / "task-1").iterdir()] == [result.videos[0].filename]


@pytest.mark.timeout(60)
async def test_images_follow_the_videos_name_and_the_manifest_keeps_them(
        tmp_path: Path, sample_mp4: Path) -> None:
    work = tmp_path / "work"
    video = copy_video(sample_mp4, work)
    local = []
    for name, at in ((f"{video.path.stem}_snapshot_00001.jpg", 0.0),
                     (f"{video.path.stem}_poster.jpg", 1.967)):
        shutil.copy(sample_mp4, work / name)  # bytes stand in for a JPEG: delivery copies
        local.append(LocalSnapshot(work / name, at))
    video = LocalVideo(video.path, video.duration, "mp4", snapshots=local[:1], poster=local[1])
    task = make_task(output={"cos": {"target_name": "room-1"}, "snapshots": {"interval_seconds": 1}})
    out = tmp_path / "cfs"
    result = await deliver(task, [video], make_status(), Phases(), fast_settings(output_dir=out))
    assert result.error_code is None, result
    assert [s.filename for s in result.snapshots] == ["room-1_snapshot_00001.jpg"]
    assert (result.poster.filename, result.poster.time) == ("room-1_poster.jpg", 1.967)
    assert sorted(p.name for p in (out / "task-1").iterdir()) == [
        "room-1.mp4", "room-1_poster.jpg", "room-1_snapshot_00001.jpg"]
    manifest = json.loads((work / MANIFEST_NAME).read_text())
    again = LocalVideo(video.path, video.duration, "mp4",
                       **images.from_manifest(manifest["videos"][0]))
    assert (again.snapshots, again.poster) == (video.snapshots, video.poster)

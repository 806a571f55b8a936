"""SegmentStore: StorageType cos uploads each closed segment; a new recorder resumes from it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from webrecord.api.models import CosOutput, OutputSpec
from webrecord.delivery.pipeline import LocalVideo, deliver
from webrecord.storage.segments import CfsSegmentStore, CosSegmentStore, SegmentStore

from .conftest import CuttingProxy, fast_settings, make_mp4, s3_client
from .test_delivery_pipeline import Phases, make_status, make_task


def probe_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=60).stdout
    return float(json.loads(out)["format"]["duration"])


def join(segments: list[Path], out: Path) -> Path:
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in segments))
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(out)],
                   check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def real_segments(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("segs")
    return [make_mp4(d / f"seg_{i:04d}.mp4", seconds=1.0) for i in range(3)]


def cos_task(bucket: str, storage_type: str = "cos"):
    return make_task(storage_type=storage_type,
                     output=OutputSpec(cos=CosOutput(bucket=bucket, region="us-east-1")))


@pytest.mark.timeout(120)
async def test_cos_segments_survive_recorder_and_task_resumes(
    tmp_path: Path, real_segments: list[Path], moto_endpoint: str, bucket: str
) -> None:
    settings = fast_settings(s3_endpoint_url=moto_endpoint)
    task = cos_task(bucket)

    # Recorder 1 closes two segments and dies while the third is still being written.
    first = SegmentStore.for_task(task, tmp_path / "work1", settings)
    assert isinstance(first, CosSegmentStore)
    for seg in real_segments[:2]:
        first.put(seg)
    assert first.wait(timeout=60) == {}
    keys = [o["Key"] for o in s3_client(moto_endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"webrecord-segments/task-1/{s.name}" for s in real_segments[:2]]

    # Recorder 2 (new pod, empty disk) resumes: it finds the stored segments and fetches them.
    second = SegmentStore.for_task(task, tmp_path / "work2", settings)
    stored = second.list()
    assert [(s.name, s.size) for s in stored] == [(p.name, p.stat().st_size)
                                                  for p in real_segments[:2]]
    fetched = second.fetch(tmp_path / "work2" / "segments")
    assert [p.read_bytes() for p in fetched] == [p.read_bytes() for p in real_segments[:2]]
    second.put(real_segments[2])  # it records on and closes its own segment
    assert second.wait(timeout=60) == {}
    assert [s.name for s in second.list()] == [p.name for p in real_segments]

    joined = join([*fetched, real_segments[2]], tmp_path / "work2" / "joined.mp4")
    assert probe_duration(joined) == pytest.approx(3.0, abs=0.3)
    result = await deliver(task, [LocalVideo(joined, 3.0, "mp4")], make_status(), Phases(),
                           settings)
    assert result.error_code is None, result.error_message
    first.close()
    second.close()


@pytest.mark.timeout(120)
def test_segment_put_during_outage_is_reported_then_retried(
    tmp_path: Path, real_segments: list[Path], bucket: str, cutting_proxy: CuttingProxy
) -> None:
    settings = fast_settings(s3_endpoint_url=cutting_proxy.endpoint)
    store = SegmentStore.for_task(cos_task(bucket), tmp_path, settings)
    assert isinstance(store, CosSegmentStore)
    store.attempts = 2
    cutting_proxy.broken, cutting_proxy.budget = True, 0
    store.put(real_segments[0])
    failures = store.wait(timeout=60)
    assert list(failures) == [real_segments[0].name]
    assert "cannot reach" in failures[real_segments[0].name]
    assert real_segments[0].exists()

    cutting_proxy.broken = False
    assert store.put(real_segments[0]).result(timeout=60).size == real_segments[0].stat().st_size
    assert store.failures() == {}
    store.close()


def test_cfs_store_and_fallback(tmp_path: Path, real_segments: list[Path]) -> None:
    store = SegmentStore.for_task(cos_task("", storage_type="cfs"), tmp_path / "work",
                                  fast_settings(segment_dir=tmp_path / "mnt"))
    assert isinstance(store, CfsSegmentStore) and store.root == tmp_path / "mnt" / "task-1"
    for seg in real_segments:
        store.put(seg)
    assert store.wait(timeout=30) == {}
    assert [s.name for s in store.list()] == [p.name for p in real_segments]
    fetched = store.fetch(tmp_path / "resume")
    assert [p.read_bytes() for p in fetched] == [p.read_bytes() for p in real_segments]
    store.close()
    # StorageType cos with no bucket anywhere: segments are kept locally, not dropped
    fallback = SegmentStore.for_task(make_task(storage_type="cos"), tmp_path / "w", fast_settings())
    assert isinstance(fallback, CfsSegmentStore) and fallback.root == tmp_path / "w" / "segments"
    fallback.close()

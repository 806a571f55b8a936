"""Snapshots and the poster (output.snapshots) beside the delivered video: their names, the
uploads and copies to each target, and their lines in the Result.

Names come from the video's final name (TargetName, or the name delivery chose), so
`room-1.mp4` gets `room-1_snapshot_00001.jpg` ... and `room-1_poster.jpg` in the same folder
or key prefix. The images go to the targets the video went to that can hold files: the object
store and the filesystem target. VOD takes media, not images: with VOD as the only target, the
images go where a task without targets puts its files (WEBRECORD_OUTPUT_DIR, or the local
files as they are).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from webrecord.api.models import SnapshotFile
from webrecord.storage.filesystem import atomic_copy
from webrecord.storage.s3 import Bucket
from webrecord.storage.video import LocalSnapshot, LocalVideo

Urls = dict[str, str]  # local image path -> the URL of its first delivered copy


def image_name(stem: str, video: LocalVideo, image: LocalSnapshot) -> str:
    """The image's name beside the video named `stem`: the local name's own suffix
    (`_snapshot_00001.jpg`, `_poster.jpg`) after the video's final name."""
    local_stem = video.path.stem
    name = image.path.name
    suffix = name[len(local_stem):] if name.startswith(local_stem) else f"_{name}"
    return stem + suffix


def to_bucket(bucket: Bucket, key_of: Callable[[str], str], stem: str, video: LocalVideo,
              owner: str, done: dict[str, Any], urls: Urls) -> None:
    """Upload each image under the video's prefix (StorageError/DeliveryFailure propagate:
    the delivery retries, and what reached the bucket is remembered in `done`)."""
    for image in video.images:
        key = key_of(image_name(stem, video, image))
        mark = f"cos:{bucket.name}:{key}"
        if mark not in done:
            bucket.upload_file(image.path, key, owner=owner)
            done[mark] = bucket.file_url(key)
        urls.setdefault(str(image.path), done[mark])


def to_dir(folder: Path, root: Path, url_of: Callable[[Path], str], stem: str,
           video: LocalVideo, done: dict[str, Any], urls: Urls) -> None:
    """Copy each image into `folder` (the video's own folder under `root`). Replacing is
    right here: the video's name in this folder is already this task's."""
    for image in video.images:
        final = folder / image_name(stem, video, image)
        mark = f"fs:{final}"
        if mark not in done:
            final = atomic_copy(image.path, final, root=root, replace=True)
            done[mark] = url_of(final)
        urls.setdefault(str(image.path), done[mark])


def as_they_are(video: LocalVideo, urls: Urls) -> None:
    """No target that takes files: the local images are reported where the recorder wrote
    them (file:// URLs), as the video is."""
    for image in video.images:
        urls.setdefault(str(image.path), image.path.resolve().as_uri())


def _line(stem: str, video: LocalVideo, image: LocalSnapshot, urls: Urls) -> SnapshotFile:
    try:
        size = image.path.stat().st_size
    except OSError:
        size = 0
    return SnapshotFile(filename=image_name(stem, video, image), time=image.time, file_size=size,
                        file_url=urls.get(str(image.path)))


def result_lines(stem: str, video: LocalVideo, urls: Urls
                 ) -> tuple[list[SnapshotFile] | None, SnapshotFile | None]:
    """(Result.snapshots, Result.poster) for one video: None where the task asked for none."""
    shots = None if video.snapshots is None else [
        _line(stem, video, s, urls) for s in video.snapshots]
    poster = _line(stem, video, video.poster, urls) if video.poster else None
    return shots, poster


def manifest_entry(video: LocalVideo) -> dict[str, Any]:
    """The images of a video in the delivery manifest, so `webrecord deliver` redoes them."""
    entry: dict[str, Any] = {}
    if video.snapshots is not None:
        entry["snapshots"] = [{"path": str(s.path), "time": s.time} for s in video.snapshots]
    if video.poster is not None:
        entry["poster"] = {"path": str(video.poster.path), "time": video.poster.time}
    return entry


def from_manifest(entry: dict[str, Any]) -> dict[str, Any]:
    """LocalVideo keyword arguments back from `manifest_entry`."""
    def shot(d: dict[str, Any]) -> LocalSnapshot:
        return LocalSnapshot(Path(d["path"]), float(d["time"]))
    return {"snapshots": [shot(d) for d in entry["snapshots"]] if "snapshots" in entry else None,
            "poster": shot(entry["poster"]) if entry.get("poster") else None}

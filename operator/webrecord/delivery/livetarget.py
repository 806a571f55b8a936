"""Where the live HLS of a task (output.liveHls) goes while it records: the task's own storage
target, beside the final HLS, under a name of its own (`<TargetName>_live` or `live`), so the
final delivery never collides with it and the live playlist stays valid after the task ends.

Targets, chosen as the final delivery chooses (delivery/pipeline.py):
  - Output.Cos.Bucket: objects `<TargetDir>/<stem>.m3u8` and `<TargetDir>/<stem>_NNNNN.ts`;
  - else WEBRECORD_OUTPUT_DIR: the directory `<root>/<TargetDir>/<stem>/`, like a final HLS;
  - else (local use, or VOD only): `<work dir>/output/live/<stem>/` (file:// URL).
Each `put()` publishes one whole file under its final name (an S3 PUT, or a filesystem copy
renamed into place), so a reader never sees part of a segment or of a playlist.
"""

from __future__ import annotations

import abc
from pathlib import Path

from webrecord.api.models import RecordingTask
from webrecord.delivery.pipeline import named_by_caller, object_key, published_url, target_dir
from webrecord.delivery.settings import DeliverySettings
from webrecord.files import contained
from webrecord.storage.filesystem import atomic_copy
from webrecord.storage.s3 import Bucket

# Players refetch a live playlist every target duration; caches in between must not serve a
# stale one. Segments never change once written.
_PLAYLIST_CACHE = "no-cache"


def live_stem(task: RecordingTask) -> str:
    """The live playlist's name without extension (never a default final name: those are
    stop timestamps)."""
    cos = task.spec.output.cos
    return f"{cos.target_name}_live" if named_by_caller(task) and cos else "live"


class LiveTarget(abc.ABC):
    """One place a live playlist and its segments are written; blocking calls (a thread)."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The playlist's URL as a player reaches it."""

    @abc.abstractmethod
    def put(self, path: Path, name: str, playlist: bool = False) -> None:
        """Publish the local file `path` as `name` beside the playlist (StorageError, OSError)."""


class S3LiveTarget(LiveTarget):
    def __init__(self, bucket: Bucket, prefix: str, stem: str, owner: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.owner = owner
        self.key = object_key(prefix, f"{stem}.m3u8")

    @property
    def url(self) -> str:
        return self.bucket.file_url(self.key)

    def put(self, path: Path, name: str, playlist: bool = False) -> None:
        self.bucket.upload_file(path, object_key(self.prefix, name), owner=self.owner,
                                cache_control=_PLAYLIST_CACHE if playlist else None)


class DirLiveTarget(LiveTarget):
    def __init__(self, root: Path, directory: Path, stem: str, url_base: str | None) -> None:
        self.root = root
        self.directory = directory
        self.stem = stem
        self.url_base = url_base

    @property
    def url(self) -> str:
        return published_url(self.root, self.url_base, self.directory / f"{self.stem}.m3u8")

    def put(self, path: Path, name: str, playlist: bool = False) -> None:
        atomic_copy(path, contained(self.directory, name), root=self.root)


def live_target(task: RecordingTask, work_dir: Path,
                settings: DeliverySettings | None = None) -> LiveTarget:
    """The task's live target (ValueError, OSError when it cannot be set up)."""
    settings = settings or DeliverySettings()
    stem = live_stem(task)
    sub = target_dir(task)
    cos = task.spec.output.cos
    if cos and cos.bucket:
        bucket = Bucket.for_output(cos.bucket, cos.region, settings, domain=cos.domain)
        return S3LiveTarget(bucket, sub, stem, owner=task.task_id)
    if settings.output_dir is not None:
        root = settings.output_dir.resolve()
        return DirLiveTarget(root, contained(root, sub, stem), stem, settings.output_url_base)
    root = (work_dir / "output" / "live").resolve()
    return DirLiveTarget(root, contained(root, stem), stem, None)

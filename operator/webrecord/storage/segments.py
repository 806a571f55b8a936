"""Intermediate segments (the task's StorageType), kept safe while the recording goes on.

- `cfs`: segments stay on the local or mounted filesystem (WEBRECORD_SEGMENT_DIR/<task id>, or
  <work dir>/segments).
- `cos`: each segment is uploaded to the object store as soon as it closes
  (s3://<Output.Cos.Bucket or WEBRECORD_SEGMENT_BUCKET>/<WEBRECORD_SEGMENT_PREFIX>/<task id>/
  <name>), so a recorder that dies loses at most the segment in progress, and a new recorder
  resumes the task with `list()` / `fetch()`.

`put()` never blocks the caller: it queues the copy/upload on a worker thread and returns a
Future. `wait()` lets the recorder make sure everything is stored before it joins segments.
A failed upload leaves the local file in place; `failures()` says which and why, and a later
`put()` of the same file tries again.
"""

from __future__ import annotations

import abc
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from webrecord.api.models import RecordingTask
from webrecord.logs import event
from webrecord.storage.filesystem import atomic_copy
from webrecord.storage.s3 import Bucket, StorageError
from webrecord.storage.settings import StorageSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredSegment:
    name: str  # file name, also the sort key (recorders name segments so they sort in order)
    size: int
    location: str  # s3://bucket/key or a filesystem path


class SegmentStore(abc.ABC):
    """Where a task's closed segments are kept. Thread-safe."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="segments")
        self._pending: set[Future] = set()
        self._failures: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def for_task(task: RecordingTask, work_dir: Path,
                 settings: StorageSettings | None = None) -> "SegmentStore":
        """The store the task's StorageType asks for."""
        settings = settings or StorageSettings()
        if task.spec.storage_type == "cos":
            cos = task.spec.output.cos
            bucket = (cos.bucket if cos else None) or settings.segment_bucket
            if bucket:
                return CosSegmentStore(task.task_id, Bucket.for_output(
                    bucket, cos.region if cos else None, settings), settings.segment_prefix)
            # No bucket anywhere: keep segments locally rather than lose them; say so loudly.
            event(log, "StorageType cos without Output.Cos.Bucket or WEBRECORD_SEGMENT_BUCKET: "
                  "segments stay on the local filesystem", logging.WARNING, task=task.task_id)
        root = (settings.segment_dir / task.task_id) if settings.segment_dir else (
            work_dir / "segments")
        return CfsSegmentStore(task.task_id, root)

    # --- the interface the recorder uses ---

    def put(self, path: Path, name: str | None = None) -> Future:
        """Store the closed segment `path` (as `name`, default its file name), in the
        background. The Future's result is the StoredSegment; it never raises: failures
        are kept for `failures()`."""
        name = name or path.name
        future = self._pool.submit(self._put_safely, Path(path), name)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def wait(self, timeout: float | None = None) -> dict[str, str]:
        """Block until every queued put finished; returns `failures()`."""
        with self._lock:
            pending = set(self._pending)
        wait_futures(pending, timeout=timeout)
        return self.failures()

    def failures(self) -> dict[str, str]:
        """{segment name: error message} of puts that did not reach the store (yet)."""
        with self._lock:
            return dict(self._failures)

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the segments are kept, in words a person can act on."""

    @abc.abstractmethod
    def list(self) -> list[StoredSegment]:
        """Segments already stored for this task, sorted by name."""

    @abc.abstractmethod
    def purge(self) -> None:
        """Delete every stored segment of the task (after the video was delivered)."""

    @abc.abstractmethod
    def fetch(self, dest: Path) -> list[Path]:
        """Bring every stored segment into `dest` (skipping ones already there with the same
        size); returns their local paths in order. For a recorder resuming a task."""

    def close(self) -> None:
        self.wait()
        self._pool.shutdown(wait=True)

    # --- internals ---

    @abc.abstractmethod
    def _store(self, path: Path, name: str) -> StoredSegment: ...

    def _put_safely(self, path: Path, name: str) -> StoredSegment | None:
        try:
            stored = self._store(path, name)
        except (StorageError, OSError) as exc:
            message = str(exc) if isinstance(exc, StorageError) else (
                f"storing segment {path} failed: {exc.strerror or exc}")
            with self._lock:
                self._failures[name] = message
            event(log, "segment not stored; local file kept", logging.WARNING,
                  task=self.task_id, segment=name, path=str(path), error=message)
            return None
        with self._lock:
            self._failures.pop(name, None)
        event(log, "segment stored", task=self.task_id, segment=name, location=stored.location,
              bytes=stored.size)
        return stored

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)


class CosSegmentStore(SegmentStore):
    def __init__(self, task_id: str, bucket: Bucket, prefix: str, attempts: int = 3) -> None:
        super().__init__(task_id)
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/{task_id}/" if prefix.strip("/") else f"{task_id}/"
        self.attempts = attempts

    @property
    def location(self) -> str:
        return f"s3://{self.bucket.name}/{self.prefix}"

    def _store(self, path: Path, name: str) -> StoredSegment:
        key = self.prefix + name
        # botocore already retries each request; these outer tries ride out a longer outage
        # (a few seconds) without giving up on a segment.
        Retrying(stop=stop_after_attempt(self.attempts),
                 wait=wait_exponential(multiplier=0.5, min=0, max=4.0),  # 0.5, 1, 2, 4, 4 s
                 retry=retry_if_exception_type(StorageError), reraise=True,
                 )(self.bucket.upload_file, path, key)
        return StoredSegment(name, path.stat().st_size, f"s3://{self.bucket.name}/{key}")

    def list(self) -> list[StoredSegment]:
        return [
            StoredSegment(item["Key"][len(self.prefix):], int(item["Size"]),
                          f"s3://{self.bucket.name}/{item['Key']}")
            for item in self.bucket.list_keys(self.prefix)
            if "/" not in item["Key"][len(self.prefix):]
        ]

    def purge(self) -> None:
        keys = [self.prefix + seg.name for seg in self.list()]
        if keys:
            self.bucket.delete_keys(keys)

    def fetch(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for seg in self.list():
            local = dest / seg.name
            if not (local.is_file() and local.stat().st_size == seg.size):
                self.bucket.download_file(self.prefix + seg.name, local)
            paths.append(local)
        return paths


class CfsSegmentStore(SegmentStore):
    def __init__(self, task_id: str, root: Path) -> None:
        super().__init__(task_id)
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def _store(self, path: Path, name: str) -> StoredSegment:
        final = self.root / name
        if final.resolve() != path.resolve():
            atomic_copy(path, final)
        return StoredSegment(name, final.stat().st_size, str(final))

    def list(self) -> list[StoredSegment]:
        if not self.root.is_dir():
            return []
        return [
            StoredSegment(p.name, p.stat().st_size, str(p))
            for p in sorted(self.root.iterdir())
            if p.is_file() and not p.name.startswith(".")
        ]

    def purge(self) -> None:
        for seg in self.list():
            Path(seg.location).unlink(missing_ok=True)
        try:
            self.root.rmdir()  # the task's directory, when nothing else is in it
        except OSError:
            pass

    def fetch(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        paths = []
        for seg in self.list():
            local = dest / seg.name
            if local.resolve() != Path(seg.location).resolve() and not (
                local.is_file() and local.stat().st_size == seg.size
            ):
                atomic_copy(Path(seg.location), local)
            paths.append(local)
        return paths

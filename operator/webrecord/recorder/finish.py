"""After the session: hand the packaged files to the delivery stage (upload, callback), say
where a recording that could not be delivered survives, and drop stored segments once the video
is delivered (docs/contracts.md sections 1 and 2)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from webrecord import metrics

from webrecord.api.models import ErrorCode, Phase, RecorderStatus, RecordingTask, Result
from webrecord.logs import event

log = logging.getLogger(__name__)


async def deliver_packaged(task: RecordingTask, session: Any, status: RecorderStatus) -> Result:
    """Hand the packaged files to the delivery stage (upload, callback); the session shows the
    phases it reports. Never raises: a failure still ends the task with a reason."""
    from webrecord.delivery.pipeline import LocalVideo, deliver

    videos = []
    if session.packaged is not None:
        p = session.packaged
        videos.append(LocalVideo(path=p.path, duration=p.duration, muxer=p.muxer,
                                 snapshots=p.snapshots, poster=p.poster))

    upload = _UploadClock(sum(_size(v.path) for v in videos))

    async def on_phase(phase: Phase) -> None:
        upload.phase(phase)
        session.set_phase(phase)

    try:
        result = await deliver(task, videos, status, on_phase)
    except Exception as exc:  # noqa: BLE001 - the task must still end finished with a reason
        log.exception("delivery failed")
        return Result(error_code=status.result.error_code or ErrorCode.INTERNAL,
                      error_message=status.result.error_message or f"delivery failed: {exc}")
    upload.phase(Phase.FINISHED)
    if task.spec.callback_url:
        metrics.RECORDER_CALLBACKS.labels(metrics.callback_outcome(result)).inc()
    return result


class _UploadClock:
    """When the upload phase ends (callback or the end): its seconds and the bytes it sent
    into webrecord_upload_seconds_total and webrecord_upload_bytes_total."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.since: float | None = None

    def phase(self, phase: Phase) -> None:
        now = time.monotonic()
        if self.since is not None:
            metrics.UPLOAD_SECONDS.inc(now - self.since)
            metrics.UPLOAD_BYTES.inc(self.size)
        self.since = now if phase is Phase.UPLOAD else None


def _size(path: Any) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def delivered(result: Result) -> bool:
    """The video reached its targets (a failed callback does not change that)."""
    return bool(result.videos) and result.error_code in (None, ErrorCode.CALLBACK_FAILED)


async def purge_segments(store: Any, task_id: str) -> None:
    """Stored segments are only needed until the video is delivered: bounded growth."""
    from webrecord.storage.s3 import StorageError

    try:
        await asyncio.to_thread(store.purge)
        event(log, "stored segments deleted after delivery", task=task_id,
              location=store.location)
    except (StorageError, OSError) as exc:
        event(log, "stored segments not deleted", logging.WARNING, task=task_id, error=str(exc))


def where_kept(result: Result, store: Any, durable: bool) -> Result:
    """A delivery that gave up says where the recording survives: the segment store (the local
    file dies with a pod), and how to finish the delivery later."""
    from webrecord.delivery.pipeline import DELIVERY_CODES

    if (result.error_code not in DELIVERY_CODES or result.error_code == ErrorCode.CALLBACK_FAILED
            or store is None or not durable):
        return result
    note = (f"the recording's segments are kept in {store.location}; "
            f"`webrecord deliver --from-segments` delivers them later")
    return result.model_copy(update={"error_message": f"{result.error_message}; {note}"})

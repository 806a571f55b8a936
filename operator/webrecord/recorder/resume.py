"""Resuming a task: the segments an earlier recorder of the same task stored (StorageType cfs or
cos) become the first part of this recording; SIGTERM hands the task over only where a new
recorder finds them.

Why: a recorder that dies (pod evicted, node lost) loses at most the segment in progress; the
new recorder fetches what was stored, counts its duration against MaxDurationLimit, numbers its
own segments after it and joins everything in order.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webrecord.api.models import RecorderStatus, RecordingTask
from webrecord.logs import event
from webrecord.recorder.package import segments_facts, usable_segments
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

_INDEX = re.compile(r"^seg_(\d+)\.")


@dataclass
class StoredParts:
    segments: list[Path] = field(default_factory=list)  # usable local copies, in order
    durations: list[float] = field(default_factory=list)  # seconds, per segment (ffprobe)
    next_index: int = 0  # the first free segment number (after every stored name, usable or not)
    dropped: int = 0  # stored but unreadable (the segment in progress when the recorder died)

    @property
    def seconds(self) -> float:
        return sum(self.durations)


async def fetch_stored_segments(store: Any, dest: Path, settings: RecorderSettings,
                                audio_only: bool = False) -> StoredParts:
    """Bring the task's stored segments into `dest` and measure them. Raises what the store
    raises (StorageError, OSError) when it cannot be read."""
    paths = await asyncio.to_thread(store.fetch, dest)
    usable = await usable_segments(paths, settings, audio_only=audio_only)
    durations = [f.duration if f is not None else 0.0
                 for f in await segments_facts(usable, settings)]  # remembered: no new probes
    # Number new segments after every stored name, so none overwrites a stored one (even a
    # dropped partial one) and names still sort in recording order.
    numbers = [int(m.group(1)) for p in paths if (m := _INDEX.match(p.name))]
    next_index = max([len(paths), *(n + 1 for n in numbers)])
    return StoredParts(usable, durations, next_index, len(paths) - len(usable))


def open_segment_store(task: RecordingTask, work_dir: Path) -> Any:
    """The task's StorageType segment store (cos: uploaded as each segment closes), or None
    when it cannot be opened (logged: recording matters more than the extra copy)."""
    try:
        from webrecord.storage.segments import SegmentStore
        return SegmentStore.for_task(task, work_dir)
    except Exception as exc:  # noqa: BLE001 - recording matters more than the extra copy
        event(log, "no segment store", logging.WARNING, error=str(exc))
        return None


def previous_start_time(status_file: Path, task_id: str) -> int | None:
    """startTime an earlier recorder of this task wrote (when its work dir survived)."""
    try:
        previous = RecorderStatus.model_validate_json(status_file.read_text())
    except (OSError, ValidationError):
        return None
    return previous.start_time if previous.task_id == task_id else None


async def resume_from_store(session: Any, store: Any, settings: RecorderSettings,
                            start_time: int | None) -> bool:
    """Continue from the segments an earlier recorder of this task stored. False when the
    store cannot be read: then record without it rather than overwrite what it holds."""
    from webrecord.storage.s3 import StorageError

    try:
        stored = await fetch_stored_segments(store, session.seg_dir, settings,
                                             audio_only=session.encoding.audio_only)
    except (StorageError, OSError) as exc:
        event(log, "stored segments unreadable: recording without the segment store",
              logging.ERROR, task=session.task.task_id, error=str(exc))
        return False
    if stored.next_index:
        session.continue_from(stored, start_time)
    return True


def sigterm_suspends(settings: RecorderSettings, store: Any, work_dir: Path) -> bool:
    """Whether SIGTERM hands the task over: only where a new recorder finds the segments."""
    if settings.sigterm_suspends is not None:
        return settings.sigterm_suspends and store is not None
    root = getattr(store, "root", None)
    if store is None or (root is not None and Path(root).resolve().is_relative_to(work_dir)):
        return False
    return True

"""Resuming a task: the segments an earlier recorder of the same task stored (StorageType cfs or
cos) become the first part of this recording.

Why: a recorder that dies (pod evicted, node lost) loses at most the segment in progress; the
new recorder fetches what was stored, counts its duration against MaxDurationLimit, numbers its
own segments after it and joins everything in order.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webrecord.recorder.package import duration, usable_segments
from webrecord.recorder.settings import RecorderSettings

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


async def fetch_stored_segments(store: Any, dest: Path, settings: RecorderSettings) -> StoredParts:
    """Bring the task's stored segments into `dest` and measure them. Raises what the store
    raises (StorageError, OSError) when it cannot be read."""
    paths = await asyncio.to_thread(store.fetch, dest)
    usable = await usable_segments(paths, settings)
    durations = [await duration(p, settings) for p in usable]
    # Number new segments after every stored name, so none overwrites a stored one (even a
    # dropped partial one) and names still sort in recording order.
    numbers = [int(m.group(1)) for p in paths if (m := _INDEX.match(p.name))]
    next_index = max([len(paths), *(n + 1 for n in numbers)])
    return StoredParts(usable, durations, next_index, len(paths) - len(usable))

"""The recording's own MPEG-TS bytes, as they are written, for the live outputs.

The live outputs carry the encode that feeds the file, not a second one: this follows the
segment files the capture's ffmpeg writes (every packet is flushed at once, see capture.py) and
hands out the new bytes. Reading the files rather than a second ffmpeg output keeps the
encoder's command line as it is and means no receiver can ever stall it: the encoder writes to
disk, the feed reads behind it. The cost is one poll interval of latency.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

TS_PACKET = 188


class Source(Protocol):
    """What the feed needs of a capture (recorder.capture.Capture)."""

    path: Path
    paths: list[Path]


class SegmentTail:
    """Follows the segments of the capture `current()` returns (None: paused, not started).

    Joins at the live end of the segment being written (a receiver wants now, not a burst of
    the last seconds); a capture that replaces the followed one (Resume, an encoder restart)
    is read from its first byte, so nothing after a Resume is skipped."""

    def __init__(self, current: Callable[[], Source | None]) -> None:
        self._current = current
        self._capture: Source | None = None
        self._index = 0  # into the capture's segment paths
        self._pos = 0
        self._seen_any = False

    def read(self) -> bytes:
        """The whole TS packets written since the last call (b"" when nothing new)."""
        capture = self._current()
        if capture is None:
            self._capture = None
            return b""
        if capture is not self._capture:
            paths = self._paths(capture)
            self._capture = capture
            if self._seen_any:
                self._index, self._pos = 0, 0
            else:  # joining: the live end of the segment being written
                self._index = len(paths) - 1
                self._pos = _size(paths[-1]) // TS_PACKET * TS_PACKET
            self._seen_any = True
        chunks: list[bytes] = []
        while True:
            paths = self._paths(capture)
            # A later segment exists: the muxer closed this one before opening it.
            complete = self._index < len(paths) - 1
            chunks.append(self._take(paths[self._index]))
            if not complete:
                break
            self._index, self._pos = self._index + 1, 0
        return b"".join(chunks)

    @staticmethod
    def _paths(capture: Source) -> list[Path]:
        return list(capture.paths) or [capture.path]

    def _take(self, path: Path) -> bytes:
        size = _size(path)
        count = (size - self._pos) // TS_PACKET * TS_PACKET  # never half a packet
        if count <= 0:
            return b""
        try:
            with open(path, "rb") as f:
                f.seek(self._pos)
                data = f.read(count)
        except OSError:
            return b""
        data = data[: len(data) // TS_PACKET * TS_PACKET]
        self._pos += len(data)
        return data


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

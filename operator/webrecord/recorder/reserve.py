"""Room held back on the work directory's filesystem for the end of a recording.

A disk that fills mid-recording (another writer, an emptyDir at its limit) would otherwise leave
no room to close the segment being written, store it and package the video. The recorder
allocates this file when it starts and removes it at the first sign of a full disk, and before
packaging: the room it held is then free for exactly that work."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from webrecord.logs import event

log = logging.getLogger(__name__)


class DiskReserve:
    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.held = 0  # bytes really allocated (0 when the disk could not give them)

    def hold(self) -> None:
        """Allocate the reserve (really allocated blocks, not a sparse file); a disk that is
        already too full to give it records without one and says so in the log."""
        if self.size_bytes <= 0:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size_bytes)
            finally:
                os.close(fd)
            self.held = self.size_bytes
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            event(log, "no disk reserve", logging.WARNING, path=str(self.path),
                  bytes=self.size_bytes, error=str(exc))

    def release(self) -> bool:
        """Free the reserve; True when it held room that is now free."""
        freed = self.held > 0
        self.held = 0
        self.path.unlink(missing_ok=True)
        if freed:
            event(log, "disk reserve released", path=str(self.path), bytes=self.size_bytes)
        return freed

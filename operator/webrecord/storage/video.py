"""A finished recording as delivery sees it: the local file (mp4, or an HLS playlist beside its
segments) and, for HLS, which local files the playlist names. Shared by the delivery stage
and the storage targets that upload it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_URI_ATTR = re.compile(r'URI="([^"]+)"')


@dataclass
class LocalSnapshot:
    """A JPEG taken from the video (output.snapshots), and where in the video it is."""

    path: Path
    time: float  # seconds into the video


@dataclass
class LocalVideo:
    path: Path  # the mp4 file, or the HLS playlist (.m3u8) beside its segments
    duration: float  # seconds
    muxer: str  # "mp4" | "hls"
    # Extension (output.snapshots): None when the task did not ask for periodic snapshots.
    snapshots: list[LocalSnapshot] | None = None
    poster: LocalSnapshot | None = None

    @property
    def images(self) -> list[LocalSnapshot]:
        """Every JPEG that goes beside the video: the periodic ones, then the poster."""
        return [*(self.snapshots or []), *([self.poster] if self.poster else [])]


def hls_files(playlist: Path) -> dict[str, Path]:
    """Local files a playlist refers to (segments, init sections), by the relative name the
    playlist uses. External URIs (http..., AuthUrl) are left out, and so are AES keys
    (#EXT-X-KEY): publishing the key beside the segments would undo the encryption."""
    base = playlist.parent
    refs: list[str] = []
    for line in playlist.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if not line.startswith(("#EXT-X-KEY", "#EXT-X-SESSION-KEY")):
                refs.extend(_URI_ATTR.findall(line))
        else:
            refs.append(line)
    files: dict[str, Path] = {}
    for ref in refs:
        if "://" in ref or ref.startswith("/"):
            continue
        path = (base / ref).resolve()
        if path.is_file() and base.resolve() in path.parents:
            files[ref] = path
    return files

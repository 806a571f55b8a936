"""Snapshots (output.snapshots): JPEGs taken from the packaged video after stop, so the display
is captured and encoded once (no second grab, nothing added while recording).

- Periodic: the first frame at or after each multiple of intervalSeconds of video time
  (ffmpeg `select`), at most maxCount. Video time leaves out paused intervals (they are not in
  the video), so a pause never yields repeats of the paused frame.
- Poster: the video's last frame, decoded from a seek a little before the end.
- Time: seconds after the video's first frame (the position a player shows; an HLS file's
  timestamps start ~1.4 s in, an mp4's at 0), from each JPEG's presentation time as ffmpeg's
  `showinfo` reports it.
Snapshots are an extra: a failure here is logged and leaves the video and its delivery alone.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from webrecord.api.models import SnapshotSpec
from webrecord.logs import event
from webrecord.recorder.package import Packaged, run_tool
from webrecord.recorder.settings import RecorderSettings
from webrecord.storage.video import LocalSnapshot

log = logging.getLogger(__name__)

_SHOWINFO = re.compile(r"Parsed_showinfo.*?\bn:\s*(\d+)\s+pts:\s*-?\d+\s+pts_time:(-?[\d.e+-]+)")
JPEG_QUALITY = 3  # mjpeg -q:v, 2 (best) .. 31: sharp text at a fraction of a PNG's size
POSTER_SEEK_S = 2.0
_ROUNDING_S = 1e-5  # far below a frame (16.7 ms at 60 fps)  # decode the poster from this far before the end (one keyframe interval)


def snapshot_name(stem: str, index: int) -> str:
    """The n-th periodic snapshot (1-based) of the video named `stem`."""
    return f"{stem}_snapshot_{index:05d}.jpg"


def poster_name(stem: str) -> str:
    return f"{stem}_poster.jpg"


def _times(stderr: str) -> list[float]:
    """Presentation times of the frames written, in order (showinfo numbers them from 0)."""
    found: dict[int, float] = {}
    for n, t in _SHOWINFO.findall(stderr):
        found[int(n)] = float(t)
    return [found[i] for i in sorted(found)]


async def _first_frame(packaged: Packaged, settings: RecorderSettings) -> float:
    """Presentation time of the video's first frame (its position 0)."""
    code, out = await run_tool([
        settings.ffprobe_path, "-v", "error", *packaged.input_args, "-select_streams", "v:0",
        "-read_intervals", "%+#1", "-show_entries", "frame=pts_time", "-of", "csv=p=0"],
        timeout=60)
    try:
        return float(out.split()[0].strip(",")) if code == 0 else 0.0
    except (IndexError, ValueError):
        return 0.0


async def _periodic(packaged: Packaged, spec: SnapshotSpec, out_dir: Path, stem: str,
                    first: float, settings: RecorderSettings) -> list[LocalSnapshot]:
    assert spec.interval_seconds is not None
    pattern = out_dir / f"{stem}_snapshot_%05d.jpg"
    # selected_n counts the frames taken so far: frame k is the first at or after k*N s.
    # `first` is ffprobe's pts_time, rounded to 1 us: when it rounded up, the first frame's own
    # t fell short of it by a fraction of a microsecond and the next frame was taken instead.
    origin = first - _ROUNDING_S
    chooser = (f"select='gte(t-{origin:.6f}\\,{spec.interval_seconds}*selected_n)',"
               "showinfo")
    code, err = await run_tool([
        settings.ffmpeg_path, "-hide_banner", "-nostats", "-loglevel", "info", "-y",
        *packaged.input_args, "-map", "0:v:0", "-an", "-vf", chooser,
        "-fps_mode", "passthrough", "-frames:v", str(spec.max_count),
        "-q:v", str(JPEG_QUALITY), "-f", "image2", str(pattern)], timeout=3600, stderr=True)
    if code != 0:
        raise RuntimeError(err.strip().splitlines()[-1:] or "ffmpeg failed")
    shots = []
    for i, t in enumerate(_times(err), start=1):
        path = out_dir / snapshot_name(stem, i)
        if path.is_file():
            shots.append(LocalSnapshot(path, round(max(0.0, t - first), 3)))
    return shots


async def _poster(packaged: Packaged, out_dir: Path, stem: str, first: float,
                  settings: RecorderSettings) -> LocalSnapshot | None:
    path = out_dir / poster_name(stem)
    start = max(0.0, packaged.duration - POSTER_SEEK_S)
    # -update 1: every decoded frame overwrites the one file, so the last one stays; -copyts
    # keeps the video's own timestamps after the seek.
    code, err = await run_tool([
        settings.ffmpeg_path, "-hide_banner", "-nostats", "-loglevel", "info", "-y",
        "-copyts", "-ss", f"{start:.3f}", *packaged.input_args, "-map", "0:v:0", "-an",
        "-vf", "showinfo", "-fps_mode", "passthrough", "-q:v", str(JPEG_QUALITY),
        "-update", "1", "-f", "image2", str(path)], timeout=600, stderr=True)
    times = _times(err)
    if code != 0 or not times or not path.is_file():
        raise RuntimeError((err.strip().splitlines() or ["no frame decoded"])[-1])
    return LocalSnapshot(path, round(max(0.0, times[-1] - first), 3))


async def take_snapshots(packaged: Packaged, spec: SnapshotSpec | None,
                         settings: RecorderSettings) -> Packaged:
    """`packaged` with its snapshots and poster beside the video file (named after it);
    unchanged when the task asked for none, or (a warning logged) when ffmpeg cannot."""
    if spec is None:
        return packaged
    out_dir = packaged.path.parent
    stem = packaged.path.stem
    if spec.interval_seconds is not None:
        packaged.snapshots = []  # asked for: listed in the Result, even when none could be taken
    try:
        first = await _first_frame(packaged, settings)
        if spec.interval_seconds is not None:
            packaged.snapshots = await _periodic(packaged, spec, out_dir, stem, first, settings)
        if spec.poster:
            packaged.poster = await _poster(packaged, out_dir, stem, first, settings)
    except (RuntimeError, OSError) as exc:
        event(log, "snapshots not taken", logging.WARNING, path=str(packaged.path),
              error=str(exc)[-300:])
        return packaged
    event(log, "snapshots taken", path=str(packaged.path),
          count=len(packaged.snapshots or []), poster=packaged.poster is not None)
    return packaged

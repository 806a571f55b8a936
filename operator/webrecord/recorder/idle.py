"""Idle and blank pages, judged from the recording itself: each closed segment is read once
more by one short ffmpeg that decodes only its keyframes, shrunk to 32x18 grey, and runs
silencedetect on its sound. Measured (bench/recorder/idle_cost.py, busy 2-core machine):
0.013 cores per recorded second at 720p30, nothing while no segment closes. A live 0.5 fps
x11grab sampler costs 0.006 cores for the picture alone but is one more process per recording
for the whole task and needs a second sound-server client for the silence half (the sound
path is what issue 12 trims), so the segments are judged instead.

The price is resolution: a change is seen at keyframes (every keyint, 2 s by default) and a
verdict comes when a segment closes (every WEBRECORD_SEGMENT_SECONDS, 10 s), so a task stops
between N and N + segmentSeconds after its page went still.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path


from webrecord.egress.childenv import minimal_env
from webrecord.logs import event
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

THUMB_W, THUMB_H = 32, 18
_PTS = re.compile(r"\] n:\s*\d+ .*?pts_time:(-?[\d.]+)")
_SILENCE_START = re.compile(r"silence_start: (-?[\d.]+)")
_SILENCE_END = re.compile(r"silence_end: (-?[\d.]+)")
_DURATION = re.compile(r"time=(\d+):(\d+):([\d.]+)")


@dataclass
class SegmentLook:
    """What one segment showed: keyframe thumbnails (time, 32x18 grey) and its sound."""
    duration: float
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    silences: list[tuple[float, float]] = field(default_factory=list)  # (start, end)

    def last_sound(self) -> float | None:
        """Seconds into the segment of the last sound heard, None when silent throughout."""
        cursor = 0.0
        last = None
        for start, end in self.silences:
            if start > cursor + 0.25:  # silencedetect starts a little after the cut
                last = start
            cursor = max(cursor, end)
        if cursor < self.duration - 0.25:
            last = self.duration
        return last


async def look(path: Path, settings: RecorderSettings, video: bool = True) -> SegmentLook | None:
    """One ffmpeg over the segment (None when it cannot be read)."""
    argv = [settings.ffmpeg_path, "-hide_banner", "-stats", "-loglevel", "info",
            "-skip_frame", "nokey", "-i", str(path)]
    if video:
        argv += ["-map", "0:v:0", "-vf",
                 # The outer 2% cropped: the display shows a one-pixel dark edge on the
                 # right and bottom of any page, which would make no page flat.
                 f"crop=iw*0.96:ih*0.96,scale={THUMB_W}:{THUMB_H}:flags=area,format=gray,"
                 "showinfo",
                 "-f", "rawvideo", "pipe:1"]
    argv += ["-map", "0:a:0?", "-af", f"silencedetect=n={settings.idle_silence_db}dB:d=0.5",
             "-f", "null", "-"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=minimal_env())
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except (asyncio.TimeoutError, TimeoutError):
        proc.kill()
        await proc.wait()
        return None
    if proc.returncode != 0:
        return None
    text = err.decode(errors="replace")
    times = [float(t) for t in _PTS.findall(text)]
    size = THUMB_W * THUMB_H
    # Thumbnails of THUMB_W x THUMB_H gray bytes: small enough for plain Python (no numpy in
    # the recorder image).
    frames = [(t, out[i * size:(i + 1) * size])
              for i, t in enumerate(times) if len(out) >= (i + 1) * size]
    starts = [float(x) for x in _SILENCE_START.findall(text)]
    ends = [float(x) for x in _SILENCE_END.findall(text)]
    stamps = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in _DURATION.findall(text)]
    duration = max(stamps[-1] if stamps else 0.0, times[-1] if times else 0.0)
    silences = [(s, ends[i] if i < len(ends) else duration) for i, s in enumerate(starts)]
    return SegmentLook(duration, frames, silences)


def _mean_abs_difference(a: bytes, b: bytes) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) / max(1, min(len(a), len(b)))


class IdleWatch:
    """Fed each closed segment in order; says when the page has been still and silent for
    `idle_seconds`, or flat and silent for `blank_seconds` since recording began."""

    def __init__(self, settings: RecorderSettings, idle_seconds: float | None,
                 blank_seconds: float | None, video: bool = True) -> None:
        self.settings = settings
        self.idle_seconds = idle_seconds or None
        self.blank_seconds = (blank_seconds or None) if video else None
        self.video = video
        self.still_for = 0.0  # seconds without a change or a sound, up to the last segment's end
        self.blank_for = 0.0  # seconds flat and silent since recording began
        self.ever_shown = False  # the page showed something: the blank check is over
        self._previous: bytes | None = None
        self._lock = asyncio.Lock()

    @property
    def wanted(self) -> bool:
        return self.idle_seconds is not None or self.blank_seconds is not None

    def reset(self) -> None:
        """A resume after a pause: stillness counts from here."""
        self.still_for = 0.0
        self._previous = None

    async def feed(self, path: Path) -> str | None:
        """"idle", "blank" or None after judging one more segment."""
        async with self._lock:
            seen = await look(path, self.settings, self.video)
            if seen is None or seen.duration <= 0:
                return None
            last_change = None
            for at, frame in seen.frames:
                if self._previous is not None and _mean_abs_difference(
                        frame, self._previous) > self.settings.idle_change_level:
                    last_change = at
                self._previous = frame
                if frame and max(frame) - min(frame) > self.settings.blank_flat_level:
                    self.ever_shown = True
            sound = seen.last_sound()
            if sound is not None:
                self.ever_shown = True
            active = max((t for t in (last_change, sound) if t is not None), default=None)
            self.still_for = (self.still_for + seen.duration if active is None
                              else max(0.0, seen.duration - active))
            if not self.ever_shown:
                self.blank_for += seen.duration
            event(log, "segment looked at", path=path.name, still_for=round(self.still_for, 2),
                  blank_for=round(self.blank_for, 2), shown=self.ever_shown,
                  keyframes=len(seen.frames))
            if self.blank_seconds is not None and not self.ever_shown \
                    and self.blank_for >= self.blank_seconds:
                return "blank"
            if self.idle_seconds is not None and self.still_for >= self.idle_seconds:
                return "idle"
            return None

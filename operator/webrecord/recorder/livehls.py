"""Live HLS (output.liveHls): while the task records, each closed segment is published to the
task's storage target and an EVENT playlist naming it is rewritten after it; Stop appends
#EXT-X-ENDLIST, which makes it a complete playlist of the whole recording.

Why this shape:
  - The recorder's own segments (seg_NNNN.ts, MPEG-TS, one clock per task) are already HLS
    segments: publishing them costs an upload, not an encode.
  - A reader must never see a playlist naming a segment that is not there: each segment is
    uploaded first, then the playlist; both are published whole (delivery/livetarget.py).
  - The capture never waits: segments queue here (paths, not data; the files stay on disk for
    the final delivery), one worker uploads them in order, retrying a failed upload with a
    doubling wait for as long as the task records. Order matters more than speed: an EVENT
    playlist only grows, and a segment's position fixes its name and its AES IV.
  - Timestamps are wall clock (capture.py), so a Pause, a crash or a resumed task shows as a
    jump between one segment's end and the next one's start: #EXT-X-DISCONTINUITY there.
  - Encrypted tasks: each segment is AES-128-CBC encrypted as a whole (PKCS#7), IV = its media
    sequence number (the HLS default when the key tag names no IV), key URI as the final HLS
    (AuthUrl, else <stem>.key; the key itself is never published).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from webrecord.api.models import LiveHlsStatus, RecordingTask
from webrecord.files import write_atomic
from webrecord.logs import event
from webrecord.recorder.package import closed_segment_facts
from webrecord.recorder.settings import RecorderSettings

if TYPE_CHECKING:
    from webrecord.delivery.livetarget import LiveTarget

log = logging.getLogger(__name__)

# A gap or overlap between one segment's end and the next one's start larger than this is a
# jump (pause, new encoder process); cuts of one process meet within a few milliseconds.
_JUMP_S = 0.5
_CHUNK = 1 << 20


def encrypt_segment(src: Path, dst: Path, key: bytes, sequence: int) -> None:
    """HLS AES-128: the whole file, CBC, PKCS#7 padding, IV = the media sequence number."""
    encryptor = Cipher(algorithms.AES(key), modes.CBC(sequence.to_bytes(16, "big"))).encryptor()
    padder = padding.PKCS7(128).padder()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            fout.write(encryptor.update(padder.update(chunk)))
        fout.write(encryptor.update(padder.finalize()) + encryptor.finalize())


@dataclass
class _Entry:
    name: str
    duration: float
    discontinuity: bool


@dataclass
class LivePlaylist:
    """The EVENT playlist's text; entries are only ever appended."""

    target_duration: int
    key_uri: str | None = None
    entries: list[_Entry] = field(default_factory=list)

    def add(self, name: str, duration: float, discontinuity: bool) -> None:
        self.entries.append(_Entry(name, duration, discontinuity and bool(self.entries)))
        # Every EXTINF rounded must fit the target duration; a segment longer than planned
        # (a late keyframe) raises it rather than making the playlist invalid.
        self.target_duration = max(self.target_duration, round(duration))

    def render(self, ended: bool) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:EVENT",
                 f"#EXT-X-TARGETDURATION:{self.target_duration}", "#EXT-X-MEDIA-SEQUENCE:0"]
        if self.key_uri:
            lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{self.key_uri}"')
        for entry in self.entries:
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines += [f"#EXTINF:{entry.duration:.6f},", entry.name]
        if ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


class LiveHls:
    """Publishes a task's closed segments and its growing playlist to `target` (a
    delivery.livetarget.LiveTarget). `start()` in the recorder's loop, `put()` per closed
    segment (never blocks), `finish()` after the last one."""

    def __init__(self, task: RecordingTask, target: LiveTarget, stem: str, work_dir: Path,
                 settings: RecorderSettings, target_duration: int) -> None:
        video = task.spec.output.video
        self.task_id = task.task_id
        self.target = target
        self.stem = stem
        self.settings = settings
        self.scratch = work_dir / "livehls"
        self.key = bytes.fromhex(video.encrypt_key) if video.encrypt_key else None
        self.audio_only = bool(video.audio_only)
        key_uri = (video.auth_url or f"{stem}.key") if self.key else None
        self.playlist = LivePlaylist(max(1, target_duration), key_uri)
        self._queue: asyncio.Queue[tuple[Path, bool] | None] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._closing = False
        self._busy = False
        self._gap = False  # a segment was skipped: the next one follows a jump
        self._last: tuple[float, float] | None = None  # (start, duration) of the last entry
        self.ended = False
        self.skipped = 0
        self.message: str | None = None

    @classmethod
    def for_task(cls, task: RecordingTask, work_dir: Path,
                 settings: RecorderSettings) -> "LiveHls":
        """The task's live HLS on its storage target (ValueError, OSError, StorageError)."""
        from webrecord.delivery.livetarget import live_stem, live_target
        from webrecord.recorder.encoding import encoding_for

        enc = encoding_for(settings, task.spec)
        # Segments are cut at the first keyframe after each multiple of segment_seconds.
        longest = settings.segment_seconds + (enc.gop / enc.fps if enc.fps else 0)
        return cls(task, live_target(task, work_dir), live_stem(task), work_dir, settings,
                   math.ceil(longest))

    @property
    def url(self) -> str:
        return self.target.url

    def start(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._worker = asyncio.get_running_loop().create_task(self._run())
        event(log, "live hls started", task=self.task_id, url=self.url,
              encrypted=self.key is not None)

    def put(self, path: Path, quiet: bool = False) -> None:
        """Queue a closed segment. `quiet`: publish it but leave the playlist for the next one
        (a resumed task re-publishing its stored segments must not shrink the playlist)."""
        if self._closing:
            return
        if self._queue.qsize() >= self.settings.live_hls_queue:
            # The final delivery still has it; the live view shows a discontinuity instead.
            self.skipped += 1
            self._gap = True
            event(log, "live hls backlog full: segment not published live", logging.WARNING,
                  task=self.task_id, segment=str(path), queued=self._queue.qsize())
            return
        self._queue.put_nowait((path, quiet))

    def status(self) -> LiveHlsStatus:
        return LiveHlsStatus(url=self.url, segments=len(self.playlist.entries),
                             pending=self._queue.qsize() + (1 if self._busy else 0),
                             ended=self.ended, message=self.message)

    async def finish(self, ended: bool) -> bool:
        """Publish what is queued, then (`ended`) the playlist with #EXT-X-ENDLIST, within
        live_hls_finish_seconds. False when that did not complete (logged; the final
        delivery goes on regardless)."""
        self._closing = True
        if self._worker is None:
            return False
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(self._drain(ended), self.settings.live_hls_finish_seconds)
        except (asyncio.TimeoutError, TimeoutError):
            self.message = (f"gave up after {self.settings.live_hls_finish_seconds:g} s at Stop: "
                            f"{self.message or 'uploads too slow'}")
            event(log, "live hls not completed", logging.WARNING, task=self.task_id,
                  pending=self._queue.qsize(), error=self.message)
            return False
        finally:
            if not self._worker.done():
                self._worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
        event(log, "live hls finished", task=self.task_id, url=self.url,
              segments=len(self.playlist.entries), ended=self.ended, skipped=self.skipped)
        return True

    def cancel(self) -> None:
        """Stop publishing at once (an error path; finish() is the orderly end)."""
        self._closing = True
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    async def _drain(self, ended: bool) -> None:
        assert self._worker is not None
        await asyncio.shield(self._worker)
        if ended and self.playlist.entries:
            await self._write_playlist(ended=True)
            self.ended = True

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            self._busy = True
            try:
                await self._publish(*item)
            finally:
                self._busy = False

    async def _publish(self, path: Path, quiet: bool) -> None:
        # The video stream's span: consecutive cuts of one process meet exactly there (the
        # format's span also counts the audio frame that overhangs each cut, ~20 ms a segment).
        # (Probed once: the session and packaging read the same remembered facts.)
        facts = await closed_segment_facts(path, self.settings) if path.is_file() else None
        span = facts.streams.get("audio" if self.audio_only else "video") if facts else None
        if span is None or span[1] <= 0:
            self._gap = True
            event(log, "live hls: segment unreadable, not published", logging.WARNING,
                  task=self.task_id, segment=str(path))
            return
        start, duration = span
        sequence = len(self.playlist.entries)
        name = f"{self.stem}_{sequence:05d}.ts"
        upload = path
        if self.key is not None:
            upload = self.scratch / name
            await asyncio.to_thread(encrypt_segment, path, upload, self.key, sequence)
        await self._retry(f"segment {name}", upload, name, playlist=False)
        if upload != path:
            upload.unlink(missing_ok=True)
        jumped = self._gap or (self._last is not None
                               and abs(start - sum(self._last)) > _JUMP_S)
        self.playlist.add(name, duration, discontinuity=jumped)
        self._gap, self._last = False, (start, duration)
        if not quiet:
            await self._write_playlist(ended=False)

    async def _write_playlist(self, ended: bool) -> None:
        local = self.scratch / f"{self.stem}.m3u8"
        await asyncio.to_thread(write_atomic, local, self.playlist.render(ended))
        await self._retry("playlist", local, local.name, playlist=True)

    async def _retry(self, what: str, path: Path, name: str, playlist: bool) -> None:
        """Until it succeeds (or finish() runs out of time): a target that is down delays the
        live view, it does not end it."""
        from webrecord.storage.s3 import StorageError

        wait = self.settings.live_hls_retry_min_seconds
        tries = 0
        while True:
            tries += 1
            try:
                await asyncio.to_thread(self.target.put, path, name, playlist)
            except (StorageError, OSError) as exc:
                self.message = f"uploading {what} failed ({tries} tries), retrying: {exc}"
                event(log, "live hls upload failed; retrying", logging.WARNING,
                      task=self.task_id, what=what, tries=tries, wait_s=wait, error=str(exc))
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.settings.live_hls_retry_max_seconds)
                continue
            if tries > 1:
                event(log, "live hls upload succeeded after retries", task=self.task_id,
                      what=what, tries=tries)
            self.message = None
            return


def start_live_hls(session: object, task: RecordingTask, work_dir: Path,
                   settings: RecorderSettings) -> LiveHls | None:
    """The task's live HLS, started, with the segments an earlier recorder of the task stored
    re-published first (same names, same bytes: the playlist comes back whole). None without
    output.liveHls, or when its target cannot be set up (logged: the recording matters more)."""
    if not task.spec.output.live_hls:
        return None
    try:
        live = LiveHls.for_task(task, work_dir, settings)
    except Exception as exc:  # noqa: BLE001 - bad credentials file and the like
        event(log, "live hls unavailable: recording without it", logging.ERROR,
              task=task.task_id, error=str(exc))
        return None
    live.start()
    for path in getattr(getattr(session, "stored", None), "segments", []):
        live.put(path, quiet=True)
    return live

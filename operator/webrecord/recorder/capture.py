"""One ffmpeg process per recording interval: the display (x11grab) and the sink monitor (pulse)
encoded to H.264/AAC and cut into MPEG-TS segments on a timer (the segment muxer, at keyframes).
TS because a segment stays readable when its process dies mid-write; one process for all the
segments of an interval because a new process per segment would leave a gap at each cut."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from webrecord import metrics
from webrecord.egress.childenv import minimal_env
from webrecord.logs import event
from webrecord.recorder import procs
from webrecord.recorder.audio import MONITOR
from webrecord.recorder.encoding import Encoding, encoding_for
from webrecord.recorder.frameclock import video_clock_filters
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.tstail import last_pts

log = logging.getLogger(__name__)

_DISK_FULL_MARKERS = ("No space left on device", "File too large", "Disk quota exceeded")
# The segment muxer logs (level info) each file it opens; the previous one is complete by then.
_OPENING = re.compile(r"Opening '(.+)' for writing")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def segment_name(index: int) -> str:
    return f"seg_{index:04d}.ts"


def audio_stamp_shift(settings: RecorderSettings, fps: int | None) -> float:
    """Seconds to take off the sound's wall-clock stamps so sound and picture made at the same
    moment get the same time in the file (fps None: no picture).

    - A pulse read returns once its chunk is full, so its stamp is the chunk's end: the whole
      chunk earlier (the pulse demuxer's own clock stamps the chunk's start).
    - A frame is stamped with its grab slot (frameclock) but shows what was painted over the
      step before it, on average half a step earlier: the sound half a step later to match.
    - The sound reaches the sink audio_output_latency_ms after the page made it (Chromium's
      output buffer and the sound server's queue): that much earlier."""
    chunk = settings.pulse_chunk_seconds if settings.pulse_read_timestamps else 0.0
    half_step = 0.5 / fps if fps else 0.0
    return chunk - half_step + settings.audio_output_latency_ms / 1000


def cut_phase(task_id: str, period: float) -> float:
    """Seconds after each multiple of `period` at which this task's segments are cut. Spread
    by task: every closed segment is probed and looked at (idle watch), 0.1-0.3 CPU s, and three
    recordings cutting in the same instant on 2 cores lost frames in all three at once."""
    digest = hashlib.sha256(task_id.encode()).digest()
    return round(int.from_bytes(digest[:4], "big") / 2**32 * period, 3)


def ffmpeg_argv(settings: RecorderSettings, display: str, width: int, height: int,
                seg_dir: Path, first_index: int, epoch: float,
                enc: Encoding | None = None, phase: float = 0.0,
                grab_fd: int | None = None) -> list[str]:
    """Both grabbers stamp packets with the wall clock. ffmpeg would shift each input to start
    at zero on its own, which puts the audio early by however long the pulse input took to
    deliver its first packet; -copyts keeps the common clock and -itsoffset -epoch makes the
    numbers small (epoch: the task's, shared by every recorder of the task, so timestamps of
    all its segments are on one clock and packaging can join the cuts without a seam).

    Segments are cut when the wall clock passes a multiple of `segment_seconds`, plus `phase`
    (at the next keyframe): the muxer's own timer counts from timestamp 0, which -copyts moved
    away.

    grab_fd: the picture comes from the frame-locked grabber (framegrab) through this pipe,
    already stamped on the epoch's clock, instead of x11grab."""
    enc = enc or encoding_for(settings, width=width, height=height)  # the task's, else defaults
    fps = enc.fps
    video_fps = None if enc.audio_only else fps
    large = width * height > settings.large_frame_pixels
    preset = settings.x264_preset_large if large else settings.x264_preset
    threads = settings.x264_threads_large if large else settings.x264_threads
    gop = enc.gop
    # Raw frames waiting for the encoder: bounded in bytes (a 2560x2560 frame is 26 MB). When it
    # is full the grabber waits and falls behind its schedule, leaving gaps (frameclock) rather
    # than memory. ffmpeg discards what is still queued when told to quit: stop drains first.
    video_queue = max(4, min(fps, settings.video_queue_bytes // (width * height * 4)))
    offset = f"-{epoch:.6f}"
    audio_offset = f"{-(epoch + audio_stamp_shift(settings, video_fps)):.6f}"
    argv = [
        # Level info only for the one "Press [q]" line that says capture has begun (see ready).
        settings.ffmpeg_path, "-hide_banner", "-nostats", "-loglevel", "info", "-y",
        # key=value progress every second on stdout: frames, repeated/dropped ones, speed
        # (the recorder's metrics; see Capture._progress).
        "-progress", "pipe:1", "-stats_period", "1",
    ]
    if not enc.audio_only and grab_fd is not None:
        argv += [
            # /dev/fd/N, not pipe:N: an input named pipe: turns off 'q' on stdin (our stop).
            "-thread_queue_size", str(video_queue), "-probesize", "32", "-analyzeduration", "0",
            "-f", "matroska", "-i", f"/dev/fd/{grab_fd}",
        ]
    elif not enc.audio_only:  # audio only: no display capture at all
        argv += [
            # No probing: x11grab states its format; probing would hold up the start by ~20
            # frames, which then land in the file before we count the segment as started.
            "-itsoffset", offset, "-thread_queue_size", str(video_queue),
            "-probesize", "32", "-analyzeduration", "0",
            "-f", "x11grab", "-draw_mouse", "0", "-framerate", str(fps),
            "-video_size", f"{width}x{height}", "-i", f"{display}.0+0,0",
        ]
    argv += [
        # Opened after the display: whichever input opens first starts first, and a little
        # silence before the sound is better than sound before the first picture.
        "-itsoffset", audio_offset, "-thread_queue_size", "512",
        *(["-use_wallclock_as_timestamps", "1"] if settings.pulse_read_timestamps else []),
        "-f", "pulse", "-fragment_size", str(settings.pulse_fragment_bytes),
        "-sample_rate", str(settings.audio_rate), "-channels", "2", "-i", MONITOR,
        *(["-map", "0:a"] if enc.audio_only else ["-map", "0:v", "-map", "1:a"]), "-copyts",
    ]
    if not enc.audio_only:
        # The grabber stamps its frames itself, one per period on an even grid: no clock to mend.
        filters = video_clock_filters(fps) if grab_fd is None else []
        if width % 2 or height % 2:
            # yuv420p needs even sizes: pad odd ones by one pixel rather than refuse them.
            filters.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")
        argv += [
            *(["-vf", ",".join(filters)] if filters else []),
            # The stamps as made (frameclock), in microseconds: the default time base of 1/fps
            # would round them onto ffmpeg's own grid again.
            "-fps_mode:v", "passthrough", "-enc_time_base:v", "1:1000000",
            "-c:v", "libx264", "-preset", preset,
            *(["-threads:v", str(threads)] if threads else []),
            *(["-tune", settings.x264_tune] if settings.x264_tune else []),
            *enc.rate_args(),
            "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop),
            # The grabbed BGR0 frames to yuv420p: swscale's default (bicubic) costs a third of
            # ffmpeg's CPU at 720p30. Area averaging of the chroma with the full-chroma input
            # path converts in 45% of its time, and is as close to the source (PSNR against
            # the RGB frame: 32.9 / 50.1 dB vs bicubic's 32.3 / 50.1 on a text test card and
            # the demo page).
            "-sws_flags", "area+full_chroma_inp",
        ]
    argv += [
        "-c:a", "aac", "-aac_coder", settings.aac_coder, "-b:a", enc.audio_bitrate, "-ar", str(settings.audio_rate),
        # Write every packet at once: a killed process then leaves everything it encoded
        # (+flush_packets reaches the segment muxer's inner mpegts muxer too).
        "-flush_packets", "1", "-fflags", "+flush_packets", "-muxdelay", "0", "-muxpreload", "0",
        "-f", "segment", "-segment_format", "mpegts",
        "-segment_time", f"{settings.segment_seconds:g}", "-segment_atclocktime", "1",
        "-segment_clocktime_offset", f"{phase:.3f}",
        "-segment_start_number", str(first_index), "-reset_timestamps", "0",
        str(seg_dir / "seg_%04d.ts"),
    ]
    return argv


class Capture:
    """One recording interval: its segments seg_<index>.ts, seg_<index+1>.ts, ... in `seg_dir`.
    `on_closed(path)` is called (in the loop) for each segment ffmpeg finished while it runs;
    the last one is complete only after stop(). `exited` resolves when ffmpeg ends."""

    def __init__(self, settings: RecorderSettings, display: str, width: int, height: int,
                 env: dict[str, str], seg_dir: Path, index: int, epoch: float,
                 on_closed: Callable[[Path], None] | None = None,
                 encoding: Encoding | None = None, phase: float = 0.0,
                 frame_locked: bool = False) -> None:
        self.settings = settings
        # The display refreshes at the capture's rate: the picture comes from framegrab.
        self.frame_locked = frame_locked
        self.phase = phase  # cut_phase of the task
        self.encoding = encoding or encoding_for(settings, width=width, height=height)
        self.display = display
        self.width = width
        self.height = height
        self.env = env
        self.seg_dir = seg_dir
        self.path = seg_dir / segment_name(index)  # the first segment
        self.paths: list[Path] = []  # every segment ffmpeg opened, in order
        self.index = index
        self.on_closed = on_closed
        self.proc: asyncio.subprocess.Process | None = None
        self.grabber: asyncio.subprocess.Process | None = None
        self.started = 0.0  # monotonic
        self.ended: float | None = None
        self.stopping = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.exited: asyncio.Future[int] | None = None
        self.ready: asyncio.Future[bool] | None = None  # True once frames flow, False if it died
        self.spawned = 0.0
        self.epoch = epoch  # wall clock that timestamp 0 in the segments stands for
        self.spawn_wall = 0.0

    @property
    def next_index(self) -> int:
        """The first segment number after this interval's."""
        return self.index + max(1, len(self.paths))

    async def start(self) -> None:
        framegrab = self.frame_locked and not self.encoding.audio_only
        grab_fd = await self._start_grabber() if framegrab else None
        argv = ffmpeg_argv(self.settings, self.display, self.width, self.height, self.seg_dir,
                           self.index, epoch=self.epoch, enc=self.encoding, phase=self.phase,
                           grab_fd=grab_fd)
        try:
            self.proc = await procs.spawn(argv, env=self.env, stdin=asyncio.subprocess.PIPE,
                                          stdout=asyncio.subprocess.PIPE,
                                          stderr=asyncio.subprocess.PIPE,
                                          pass_fds=() if grab_fd is None else (grab_fd,))
        finally:
            if grab_fd is not None:
                os.close(grab_fd)  # ffmpeg holds it now: when ffmpeg ends, the grabber does
        self.spawned = self.started = time.monotonic()
        self.spawn_wall = time.time()
        loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        self.ready = loop.create_future()
        loop.create_task(self._watch())
        loop.create_task(self._progress())
        if self.grabber is not None:
            loop.create_task(self._watch_grabber(self.grabber))
        event(log, "segment started", index=self.index, path=str(self.path), pid=self.proc.pid)

    async def _start_grabber(self) -> int:
        """Start framegrab writing into a pipe; the pipe's read end, for ffmpeg."""
        read_fd, write_fd = os.pipe()
        try:
            self.grabber = await procs.spawn(
                [sys.executable, "-m", "webrecord.recorder.framegrab", "--display", self.display,
                 "--size", f"{self.width}x{self.height}", "--fps", str(self.encoding.fps),
                 "--epoch", f"{self.epoch:.6f}"],
                env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=write_fd)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        return read_fd

    async def _watch_grabber(self, grabber: asyncio.subprocess.Process) -> None:
        """ffmpeg goes on with the sound alone when its picture input ends: a grabber that dies
        ends this ffmpeg too (SIGTERM: it writes what it has), so the capture restarts whole."""
        code = await grabber.wait()
        if self.stopping or not self.running:
            return
        event(log, "frame grabber exited; ending this segment", logging.WARNING,
              index=self.index, code=code)
        assert self.proc is not None
        procs.kill_group(self.proc.pid, signal.SIGTERM)

    async def _watch(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("Press [q]"):
                # Inputs open, output header written: from here on the time is in the file.
                self.started = time.monotonic()
                if self.ready is not None and not self.ready.done():
                    self.ready.set_result(True)
                continue
            if "not enough frames to estimate rate" in line:
                continue  # expected without probing
            if opened := _OPENING.search(line):
                self._opened(Path(opened.group(1)))
                continue
            if line and (line.startswith("[") or "rror" in line or "No space" in line
                         or "arning" in line or "too large" in line):
                self.stderr_tail.append(line)
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(False)
        code = await self.proc.wait()
        if self.ended is None:
            self.ended = time.monotonic()
        if not self.stopping:
            event(log, "ffmpeg exited unexpectedly", logging.WARNING, index=self.index, code=code,
                  stderr=" | ".join(list(self.stderr_tail)[-5:]))
        if self.exited is not None and not self.exited.done():
            self.exited.set_result(code)

    async def _progress(self) -> None:
        """ffmpeg's -progress blocks (key=value lines ending with progress=...) into the
        recorder's frame counters and encoder speed; its counts start at 0 in each process."""
        assert self.proc is not None and self.proc.stdout is not None
        block: dict[str, str] = {}
        counted = {"frame": 0, "dup_frames": 0, "drop_frames": 0}
        counters = {"frame": metrics.FRAMES, "dup_frames": metrics.REPEATED_FRAMES,
                    "drop_frames": metrics.DROPPED_FRAMES}
        async for raw in self.proc.stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key != "progress":
                block[key] = value
                continue
            for name, counter in counters.items():
                if (now := _int(block.get(name))) is not None and now > counted[name]:
                    counter.inc(now - counted[name])
                    counted[name] = now
            if (speed := block.get("speed", "").rstrip("x")) and speed != "N/A":
                with contextlib.suppress(ValueError):
                    metrics.ENCODER_SPEED.set(float(speed))
            block = {}

    def _opened(self, path: Path) -> None:
        if self.paths and self.on_closed is not None:
            try:
                self.on_closed(self.paths[-1])
            except Exception:  # noqa: BLE001 - a failed copy must not stop the capture
                log.exception("segment close handler failed")
        self.paths.append(path)
        if len(self.paths) > 1:
            event(log, "segment rotated", index=self.index + len(self.paths) - 1, path=str(path))

    @property
    def last_path(self) -> Path | None:
        return self.paths[-1] if self.paths else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def disk_full(self) -> bool:
        return any(m in line for line in self.stderr_tail for m in _DISK_FULL_MARKERS)

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until ffmpeg captures (True) or died (False); on timeout, carry on (True)."""
        assert self.ready is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return True

    async def measure_start(self) -> bool:
        """Move `started` to when the first frame was really grabbed.

        "Press [q]" comes after every input is open; the display may have been grabbed for a
        while before (a slow audio server connection). The file's first video timestamp is
        exact: timestamps are wall clock minus `epoch` (-copyts, no mux delay)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while self.size() == 0 and self.running and loop.time() < deadline:
            await asyncio.sleep(0.05)  # bounded: the first packet comes within a frame or two
        if self.size() == 0:
            return False
        proc = await asyncio.create_subprocess_exec(
            self.settings.ffprobe_path, "-v", "error",
            "-select_streams", "a:0" if self.encoding.audio_only else "v:0",
            "-read_intervals", "%+#1", "-show_entries", "packet=pts_time", "-of", "csv=p=0",
            str(self.path), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=minimal_env())
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 10)
            first = float(out.decode().split()[0].strip(","))
        except (asyncio.TimeoutError, TimeoutError, ValueError, IndexError):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            return False
        grabbed = self.spawned + (self.epoch + first - self.spawn_wall)
        if self.spawned <= grabbed < self.started:
            self.started = grabbed
            return True
        return False

    def elapsed(self) -> float:
        if not self.started:
            return 0.0
        return (self.ended or time.monotonic()) - self.started

    def size(self) -> int:
        total = 0
        for path in self.paths or [self.path]:
            try:
                total += os.path.getsize(path)
            except OSError:
                pass
        return total

    def error_text(self) -> str:
        lines = [line for line in self.stderr_tail if line.strip()]
        full = [line for line in lines if any(m in line for m in _DISK_FULL_MARKERS)]
        return (full or lines or ["ffmpeg exited"])[-1]

    async def _drain(self, until: float) -> None:
        """Wait (at most encoder_drain_timeout) until the file holds what was grabbed before
        `until` (the file's clock): ffmpeg discards its queued frames and sound when it quits,
        and an encoder slower than real time runs seconds behind the grabbers. What it has
        encoded is safe even if not yet written: the muxer holds pictures back until the sound
        of their time has come (up to two pulse chunks and the output latency, the
        audio_stamp_shift), and writes them at the end. So the file may end that much, plus a
        frame step (frameclock), before `until`; waiting for more would delay every stop.
        Gives up early when the file stops growing."""
        step = 0.0 if self.encoding.audio_only else 1 / self.encoding.fps
        enough = (until - step - 2 * self.settings.pulse_chunk_seconds
                  - self.settings.audio_output_latency_ms / 1000)
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + self.settings.encoder_drain_timeout
        written: float | None = None
        moved = began  # when `written` last advanced
        while self.running and (path := self.last_path) is not None:
            latest = last_pts(path)
            if latest is not None and (written is None or latest > written):
                written, moved = latest, loop.time()
            if written is not None and written >= enough:
                break
            if loop.time() >= min(deadline, moved + 1.0):
                event(log, "encoder still behind at stop; its queued frames are lost",
                      logging.WARNING, index=self.index,
                      behind_s=None if written is None else round(until - written, 3))
                return
            await asyncio.sleep(0.02)
        if (waited := loop.time() - began) > 0.01:
            event(log, "encoder caught up at stop", index=self.index, waited_s=round(waited, 3))

    async def stop(self) -> int | None:
        """Let a lagging encoder catch up to now, ask ffmpeg to finish ('q'), wait a bounded
        time, then kill the group."""
        self.stopping = True
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.ended = time.monotonic()
            await self._drain(time.time() - self.epoch)
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"q")
                await self.proc.stdin.drain()
                self.proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), self.settings.encoder_stop_timeout)
            except (asyncio.TimeoutError, TimeoutError):
                event(log, "ffmpeg did not stop in time; killing", logging.WARNING, index=self.index)
        code = await procs.terminate(self.proc, timeout=2.0, sig=15)
        await procs.terminate(self.grabber, timeout=2.0, sig=15)  # ends by itself when ffmpeg did
        if self.exited is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), 5)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        event(log, "segment stopped", index=self.index, code=code, seconds=round(self.elapsed(), 3),
              bytes=self.size())
        return code

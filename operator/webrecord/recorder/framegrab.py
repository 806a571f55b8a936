"""The frame-locked grabber: `python -m webrecord.recorder.framegrab --display :N --size WxH
--fps F --epoch E` writes the screen as a Matroska stream of raw frames (mkvraw) to stdout,
for ffmpeg to encode.

Used on a display that refreshes at the capture's rate (xorgconf), where Chromium presents one
frame per period. ffmpeg's x11grab grabs on a schedule of its own, started whenever ffmpeg
happened to start: at a phase that lands near Chromium's presentations it sees some frames
twice and misses others. This grabber hears each presentation (DAMAGE) and keeps its grabs half
a period away from them (framephase), and stamps each frame with the wall clock (minus the
task's epoch: the same clock as the sound's stamps) of its slot on an even grid of the nominal
rate, which stays within 4 ms of the grabs (framephase.stamp_slot), so the file has the task's
frame rate exactly and sound and picture stay within a few ms. A grab that cannot happen
within half a period of its time (the machine is starved) is left out: the file shows a
missing frame where the picture really was missed, never a frame at a time it was not taken.

It runs in a session of its own (one more CPU autogroup: its light, punctual work is not queued
behind the encoder's), and ends when ffmpeg stops reading."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import queue
import sys
import threading
import time

from webrecord import logs
from webrecord.logs import event
from webrecord.recorder import framephase, mkvraw

log = logging.getLogger("webrecord.recorder.framegrab")

# Shared-memory images: grabbed frames waiting for ffmpeg to read them. 8 at 720p = 29 MB,
# 267 ms of slack for an encoder that falls behind before a grab has nowhere to go.
BUFFERS = 8
# The phase converges quickly for this long after the start, then moves 0.5 ms a frame.
CATCH_UP_SECONDS = 1.0
# Presentations this recent decide the phase.
PHASE_WINDOW_SECONDS = 1.0
# Before the first grab: wait this long at most for Chromium's phase (a page that animates
# gives it in a few frames), so the stamps' grid starts where the grabs will stay. Starting at
# any phase and moving there afterwards moved the grid by 4 ms steps in the first frames, and
# ffprobe read such a 30 fps file as "240/1".
LOCK_WAIT_SECONDS = 0.3
STATS_SECONDS = 10.0


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Grabber:
    def __init__(self, display: str, width: int, height: int, fps: int, epoch: float,
                 out_fd: int = 1) -> None:
        from webrecord.recorder import xshm  # the X client libraries: loaded only here

        self.period = 1.0 / fps
        self.epoch = epoch
        self.out_fd = out_fd
        self.screen = xshm.ScreenGrabber(display, width, height, BUFFERS)
        self.watch = xshm.PresentationWatch(display)
        self.header = mkvraw.stream_header(width, height, fps)
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(BUFFERS):
            self.free.put(i)
        self.ready: queue.Queue[tuple[int, int]] = queue.Queue()  # (buffer, time in us)
        self.grabbed = self.missed = 0
        self.reader_gone = threading.Event()

    def _write_frames(self) -> None:
        try:
            while True:
                i, time_us = self.ready.get()
                write_all(self.out_fd, mkvraw.frame_head(time_us, self.screen.frame_bytes))
                write_all(self.out_fd, self.screen.views[i])
                self.free.put(i)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                event(log, "writing frames failed", logging.ERROR, error=str(exc))
            self.reader_gone.set()

    def _stamp_us(self, at: float, last_us: int) -> int:
        """Microseconds since the epoch on the wall clock of monotonic time `at`, after last_us."""
        wall = time.time() - (time.monotonic() - at)
        return max(round((wall - self.epoch) * 1e6), last_us + 1000)

    def _first_grab(self) -> float:
        """When to grab first: at Chromium's phase if it shows within LOCK_WAIT_SECONDS."""
        start = time.monotonic()
        while True:
            now = time.monotonic()
            want = framephase.capture_phase(self.watch.since(now - PHASE_WINDOW_SECONDS / 2),
                                            self.period)
            if want is not None:
                return now + (want - now) % self.period
            if now - start >= LOCK_WAIT_SECONDS:
                return now
            time.sleep(self.period / 2)

    def run(self) -> None:
        write_all(self.out_fd, self.header)
        threading.Thread(target=self._write_frames, name="writer", daemon=True).start()
        start = target = slot = self._first_grab()
        last_us = -1000
        stats_at = start + STATS_SECONDS
        while not self.reader_gone.is_set():
            if (delay := target - time.monotonic()) > 0:
                time.sleep(delay)
            deadline = target + self.period / 2
            try:
                i = self.free.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                i = None
            if i is not None and time.monotonic() <= deadline:
                self.screen.grab(i)
                slot = framephase.stamp_slot(slot, target)
                last_us = self._stamp_us(slot, last_us)
                self.ready.put((i, last_us))
                self.grabbed += 1
            else:
                if i is not None:
                    self.free.put(i)
                self.missed += 1
            now = time.monotonic()
            want = framephase.capture_phase(self.watch.since(now - PHASE_WINDOW_SECONDS),
                                            self.period)
            catching_up = now - start < CATCH_UP_SECONDS or (
                want is not None and abs(framephase.phase_error(target % self.period, want,
                                                                self.period)) > self.period / 4)
            target = framephase.next_capture(target, want, self.period, catching_up)
            slot += self.period
            while target + self.period / 2 < now:  # starved for more than a period: skip on
                target += self.period
                slot += self.period
                self.missed += 1
            if now >= stats_at:
                stats_at = now + STATS_SECONDS
                self._report(want)
        self._report(None)

    def _report(self, want: float | None) -> None:
        event(log, "frame grabber", grabbed=self.grabbed, missed=self.missed,
              capture_phase_ms=None if want is None else round(want * 1000, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webrecord.recorder.framegrab",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--display", required=True)
    parser.add_argument("--size", required=True, help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, required=True)
    parser.add_argument("--epoch", type=float, required=True,
                        help="wall clock (s) that timestamp 0 stands for")
    args = parser.parse_args(argv)
    logs.setup()
    width, height = (int(v) for v in args.size.split("x"))
    try:
        grabber = Grabber(args.display, width, height, args.fps, args.epoch)
    except (OSError, RuntimeError) as exc:
        event(log, "frame grabber could not start", logging.ERROR, error=str(exc))
        return 1
    try:
        grabber.run()
    except RuntimeError as exc:  # xshm.XError: the display is gone or refused a grab
        event(log, "frame grabber failed", logging.ERROR, error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

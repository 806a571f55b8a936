#!/usr/bin/env python3
"""What judging idle and blank pages costs (issue 15.5), against the alternative in one run.

    python3 bench/recorder/idle_cost.py [--segments 5]

recorder: webrecord.recorder.idle.look() on closed 10 s segments of 720p30 (keyframes only,
32x18 grey + silencedetect), CPU of its ffmpeg per recorded second. baseline: a continuous
0.5 fps x11grab sampler of a 1280x720 Xvfb display (32x18 grey), the cheapest way to watch the
picture live; it would still need a second sound-server client for the silence half.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from webrecord.recorder.idle import look
from webrecord.recorder.settings import RecorderSettings

SEGMENT_S = 10.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_segment(path: Path) -> None:
    """A 10 s 720p30 segment encoded as the recorder encodes (x264 veryfast, 2 s GOP, AAC)."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i", "sine=f=440:r=48000",
                    "-t", f"{SEGMENT_S:g}", "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts", str(path)],
                   check=True, timeout=120)


def look_cost(path: Path, count: int) -> float:
    settings = RecorderSettings()
    before = _children_cpu()
    for _ in range(count):
        assert asyncio.run(look(path, settings)) is not None
    return (_children_cpu() - before) / count / SEGMENT_S


def sampler_cost(seconds: float) -> float:
    xvfb = subprocess.Popen(["Xvfb", ":97", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        before = _children_cpu()
        subprocess.run(["ffmpeg", "-v", "error", "-f", "x11grab", "-framerate", "0.5",
                        "-video_size", "1280x720", "-i", ":97.0+0,0", "-t", f"{seconds:g}",
                        "-vf", "scale=32:18:flags=area,format=gray", "-f", "rawvideo", "-"],
                       stdout=subprocess.DEVNULL, check=True, timeout=seconds + 30)
        return (_children_cpu() - before) / seconds
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        segment = Path(tmp) / "seg.ts"
        make_segment(segment)
        rec = look_cost(segment, args.segments)
    base = sampler_cost(args.segments * SEGMENT_S / 2)
    print(f"{'measure':<58} {'recorder':>9} {'baseline':>9} {'ratio':>6}")
    print(f"{'CPU cores to judge idle/blank, 720p30 (per recorded s)':<58} {rec:>9.4f} "
          f"{base:>9.4f} {rec / base if base else float('nan'):>5.2f}x")
    print("recorder: look() per closed segment; baseline: 0.5 fps x11grab sampler (picture only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

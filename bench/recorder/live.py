"""Live output cost and latency (issue 15 item 6): the same recording (frames.html, 1280x720,
`webrecord recorder --task`) with no live output (the baseline, same run), with one RTMP output
(a real nginx-rtmp) and with one SRT output (a real ffmpeg SRT listener), interleaved.

CPU: the recorder's whole process tree (Chromium, Xvfb, PulseAudio, ffmpeg, the relay) over the
steady part of the recording; receivers and the measuring player are outside the tree.
Latency: a player decodes what the receiver gets as it arrives; each frame's middle band is the
page's clock (ms since the run's launch), so arrival wall time - page clock = page frame to
received frame. Targets: CPU <= 1.05x the baseline, latency <= 3 s.

    python3 bench/recorder/live.py [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "tests")]

from recbench import analysis, proctree, runs  # noqa: E402
from recorder.receivers import NginxRtmp, free_port  # noqa: E402
from recbench.server import PageServer  # noqa: E402

W, H = 416, 240  # the decode size of the barcode analysis


class Player:
    """ffmpeg reading a live URL as it arrives; (arrival wall time, gray frame) per frame."""

    def __init__(self, url: str) -> None:
        self.frames: list[tuple[float, bytes]] = []
        self.proc = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-fflags", "nobuffer", "-flags", "low_delay",
             "-rw_timeout", "60000000", "-i", url, "-map", "0:v", "-vf",
             f"scale={W}:{H},format=gray", "-f", "rawvideo", "pipe:1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            frame = self.proc.stdout.read(W * H)
            if len(frame) < W * H:
                return
            self.frames.append((time.time(), frame))

    def latencies(self, t0_wall: float) -> np.ndarray:
        """Seconds from page frame to received frame, for every frame with a readable clock."""
        self.proc.kill()  # ffmpeg may sit in a blocking read of the network
        self.proc.wait(10)
        self.thread.join(10)
        if not self.frames:
            return np.array([])
        arrays = np.stack([np.frombuffer(f, np.uint8).reshape(H, W) for _, f in self.frames])
        clock = analysis.decode_bands(arrays, analysis.BANDS[1])
        arrival = np.array([t for t, _ in self.frames])
        ok = clock >= 0
        return arrival[ok] - (int(t0_wall * 1000) + clock[ok]) / 1000.0


def one_run(mode: str, seconds: float, work: Path, server: PageServer, nginx: NginxRtmp) -> dict:
    name = f"{mode}-{int(time.time() * 1000) % 100000}"
    player = None
    output = None
    if mode == "rtmp":
        output = {"live": [{"url": nginx.url(name)}]}
        player = Player(nginx.url(name))  # nginx holds the player until the publish begins
    elif mode == "srt":
        port = free_port()
        output = {"live": [{"url": f"srt://127.0.0.1:{port}"}]}
        player = Player(f"srt://127.0.0.1:{port}?mode=listener")
        time.sleep(0.3)
    run = runs.task_run(name, server.url("frames.html"), 1280, 720, seconds, work, output)
    assert run.sampler is not None
    start = run.launch_mono + run.extra["status_recording_s"]
    cpu, wall = run.sampler.window(start + 4, start + seconds - 1)
    row = {"mode": mode, "cpu_per_s": cpu / wall if wall else float("nan"),
           "relay_cpu_per_s": run.sampler.by_process(start + 4, start + seconds - 1).get(
               "ffmpeg", 0.0) / max(wall, 1e-9)}
    if player is not None:
        lat = player.latencies(run.launch_wall)
        lat = lat[len(lat) // 5:]  # the player's own start-up (probing) is not the stream's
        row.update(frames=len(lat), p50=float(np.median(lat)) if len(lat) else float("nan"),
                   p95=float(np.percentile(lat, 95)) if len(lat) else float("nan"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    # The page, nginx and the SRT player are on loopback (as with the local backend).
    os.environ["WEBRECORD_EGRESS_ALLOW_LOOPBACK"] = "true"
    proctree.become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="wr-live-bench-"))
    nginx = NginxRtmp(work / "nginx").start()
    rows: list[dict] = []
    try:
        with PageServer() as server:
            for _ in range(args.rounds):
                for mode in ("none", "rtmp", "srt"):
                    rows.append(one_run(mode, args.seconds, work / "runs", server, nginx))
                    print(rows[-1], flush=True)
    finally:
        nginx.kill()
    base = statistics.mean(r["cpu_per_s"] for r in rows if r["mode"] == "none")
    print(f"\n1280x720 30 fps, {args.seconds:g} s per run, {args.rounds} rounds, interleaved")
    print("| live output | recorder tree CPU (cores) | vs none | ffmpeg CPU (capture + relay) | "
          "latency p50 | latency p95 | frames |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("none", "rtmp", "srt"):
        mine = [r for r in rows if r["mode"] == mode]
        cpu = statistics.mean(r["cpu_per_s"] for r in mine)
        ff = statistics.mean(r["relay_cpu_per_s"] for r in mine)
        if mode == "none":
            lat = ("-", "-", "-")
        else:
            lat = (f"{statistics.mean(r['p50'] for r in mine):.3f} s",
                   f"{max(r['p95'] for r in mine):.3f} s", str(sum(r["frames"] for r in mine)))
        print(f"| {mode} | {cpu:.3f} | {cpu / base:.3f}x | {ff:.3f} | {' | '.join(lat)} |")


if __name__ == "__main__":
    main()

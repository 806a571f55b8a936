#!/usr/bin/env python3
"""Delivery benchmark: upload throughput and stop-to-callback time, against loopback servers.

    python3 bench/delivery/run.py [--size-mb 500] [--rounds 3] [--skip-callback] [--keep]

1. Upload throughput of one recording-sized file (default 500 MB of incompressible data) to a
   moto S3 server (separate process, loopback), measured in the same run, rounds interleaved
   (A B C A B C ...) so a load spike from other processes hits every row alike:
     - baseline: boto3 `upload_file` with its default TransferConfig (what `aws s3 cp` does:
       8 MB parts, 10 threads);
     - single stream: the same call with `use_threads=False` (one part at a time);
     - webrecord: `webrecord.storage.s3.Bucket.upload_file` with DeliverySettings defaults
       (parallel multipart, retries).
   Reported: median MB/s per row and the median of the per-round ratio to the baseline.
2. Stop-to-callback for a 60 s recording: a real 60 s 1280x720 H.264/AAC mp4 (ffmpeg lavfi,
   ultrafast), then the time from calling `deliver()` until the loopback callback server has
   received the POST; Cos target (moto) and filesystem target. This excludes the recorder's own
   stop (ffmpeg finalisation, packaging): that is the recorder benchmark's part.

Bounded: every upload has a timeout; the servers are stopped and temp files deleted on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT / "tests" / "delivery"))

import boto3  # noqa: E402
from aiohttp import web  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402

from webrecord.api.models import (  # noqa: E402
    CosOutput,
    OutputSpec,
    Phase,
    RecorderStatus,
    RecordingSpec,
    RecordingTask,
)
from webrecord.delivery.pipeline import LocalVideo, deliver  # noqa: E402
from webrecord.storage.s3 import Bucket  # noqa: E402
from webrecord.delivery.settings import DeliverySettings  # noqa: E402
from webrecord.storage.settings import MB  # noqa: E402
from moto_server import start_moto, stop_process  # noqa: E402 - shared with the tests

KEY = "testing"


# ------------------------------------------------------------------ helpers


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_random(path: Path, size: int) -> None:
    block = os.urandom(MB)
    with open(path, "wb") as f:
        for i in range(size // MB):
            f.write(i.to_bytes(8, "little") + block[8:])
        f.write(block[: size % MB])


def make_recording(path: Path, seconds: int) -> float:
    started = time.monotonic()
    subprocess.run(
        ["nice", "-n", "10", "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", "2M",
         "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path)],
        check=True, timeout=240)
    return time.monotonic() - started


def client(endpoint: str):
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
        aws_secret_access_key=KEY, config=Config(s3={"addressing_style": "path"}))


# ------------------------------------------------------------------ 1. throughput


def bench_throughput(endpoint: str, server_pid: int, work: Path, size_mb: int,
                     rounds: int) -> list[str]:
    s3 = client(endpoint)
    s3.create_bucket(Bucket="bench")
    path = work / "recording.mp4"
    write_random(path, size_mb * MB)
    settings = DeliverySettings(s3_endpoint_url=endpoint)
    bucket = Bucket.for_output("bench", "us-east-1", settings)
    # the WEBRECORD_S3_PAYLOAD_SIGNING=false knob: no SHA-256 pass over the body (plain-http
    # endpoints only; on https botocore already skips it for uploads with a checksum)
    unsigned = Bucket.for_output("bench", "us-east-1", DeliverySettings(
        s3_endpoint_url=endpoint, s3_payload_signing=False))

    def timed(fn, key: str) -> tuple[float, float, float]:
        """(MB/s, client CPU s, server CPU s): CPU time is far less sensitive than wall time
        to other processes competing for the 2 cores."""
        server0, client0 = cpu_seconds(server_pid), time.process_time()
        t = time.perf_counter()
        fn(key)
        elapsed = time.perf_counter() - t
        client_cpu = time.process_time() - client0
        server_cpu = cpu_seconds(server_pid) - server0
        head = s3.head_object(Bucket="bench", Key=key)
        assert head["ContentLength"] == size_mb * MB, "upload incomplete"
        s3.delete_object(Bucket="bench", Key=key)
        return size_mb / elapsed, client_cpu, server_cpu

    rows = {
        "baseline: boto3 upload_file (aws s3 cp defaults)":
            lambda k: s3.upload_file(str(path), "bench", k),
        "single stream: upload_file, use_threads=False":
            lambda k: s3.upload_file(str(path), "bench", k,
                                     Config=TransferConfig(use_threads=False)),
        f"webrecord Bucket.upload_file ({settings.s3_part_size_mb} MB parts x "
        f"{settings.s3_concurrency})":
            lambda k: bucket.upload_file(path, k),
        "webrecord, WEBRECORD_S3_PAYLOAD_SIGNING=false":
            lambda k: unsigned.upload_file(path, k),
    }
    names = list(rows)
    speeds: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    timed(rows[names[0]], "warmup")  # first request pays moto's start-up costs
    for r in range(rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            mbps, client_cpu, server_cpu = timed(rows[name], f"r{r}")
            speeds[name].append(mbps)
            cpu[name].append((client_cpu, server_cpu))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{speeds[n][-1]:.0f}" for n in names) + " MB/s", flush=True)
    path.unlink()
    base = speeds[names[0]]
    lines = [f"Upload of a {size_mb} MB file to moto S3 on loopback, {rounds} interleaved "
             "rounds (medians; CPU = seconds used by this client / by the moto server):",
             f"  {'row':<58} {'MB/s':>7} {'ratio':>6} {'cl.CPU':>7} {'srv.CPU':>7}  MB/s per round"]
    for name in names:
        ratio = statistics.median(s / b for s, b in zip(speeds[name], base))
        runs = " ".join(f"{s:.0f}" for s in speeds[name])
        client_cpu = statistics.median(c for c, _ in cpu[name])
        server_cpu = statistics.median(v for _, v in cpu[name])
        lines.append(f"  {name:<58} {statistics.median(speeds[name]):7.1f} {ratio:6.2f} "
                     f"{client_cpu:7.2f} {server_cpu:7.2f}  {runs}")
    return lines


# ------------------------------------------------------------------ 2. stop to callback


async def bench_callback(endpoint: str, work: Path, seconds: int, tries: int) -> list[str]:
    video_path = work / "sixty.mp4"
    encode_s = make_recording(video_path, seconds)
    size = video_path.stat().st_size
    received: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        received.append(time.perf_counter())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cb", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/cb"  # noqa: SLF001
    client(endpoint).create_bucket(Bucket="cb-bench")

    async def phase(_: Phase) -> None:
        pass

    results: dict[str, list[float]] = {"Cos (moto S3)": [], "filesystem target": []}
    try:
        for i in range(tries):
            for target in results:
                out = work / f"out{i}"
                if target.startswith("Cos"):
                    output = OutputSpec(cos=CosOutput(bucket="cb-bench", region="us-east-1",
                                                      target_name=f"t{i}"))
                    settings = DeliverySettings(s3_endpoint_url=endpoint,
                                                callback_secret="bench")
                else:
                    output = OutputSpec()
                    settings = DeliverySettings(output_dir=out, callback_secret="bench")
                task = RecordingTask(task_id=f"bench-{i}", spec=RecordingSpec(
                    record_url="http://127.0.0.1/", callback_url=url, output=output))
                status = RecorderStatus(task_id=task.task_id, status=Phase.TRANSCODE,
                                        stop_time=int(time.time()))
                # a fresh copy each time: the manifest would otherwise skip the upload
                copy_dir = work / f"w{i}-{len(received)}"
                copy_dir.mkdir()
                local = copy_dir / video_path.name
                shutil.copyfile(video_path, local)
                before = len(received)
                t0 = time.perf_counter()
                result = await deliver(task, [LocalVideo(local, float(seconds), "mp4")], status,
                                       phase, settings)
                assert result.error_code is None, result.error_message
                assert len(received) == before + 1, "callback not received"
                results[target].append(received[-1] - t0)
                shutil.rmtree(copy_dir)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        await runner.cleanup()
    lines = [f"Stop to callback for a {seconds} s 1280x720 H.264/AAC mp4 ({size / MB:.1f} MB, "
             f"made in {encode_s:.1f} s), deliver() call -> callback POST received, {tries} "
             "tries (median; excludes the recorder's own stop and packaging):"]
    for target, values in results.items():
        lines.append(f"  {target:<22} {statistics.median(values):6.3f} s   "
                     f"({' '.join(f'{v:.3f}' for v in values)})")
    return lines


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60, help="recording length")
    parser.add_argument("--tries", type=int, default=3, help="stop-to-callback repetitions")
    parser.add_argument("--skip-callback", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the table is the output; JSON logs would drown it
    os.environ.setdefault("AWS_ACCESS_KEY_ID", KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", KEY)
    work = Path(tempfile.mkdtemp(prefix="webrecord-bench-delivery-"))
    proc, endpoint = start_moto()
    started = time.monotonic()
    lines: list[str] = []
    try:
        print(f"moto S3 at {endpoint}; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs", flush=True)
        lines += bench_throughput(endpoint, proc.pid, work, args.size_mb, args.rounds)
        if not args.skip_callback:
            lines += asyncio.run(bench_callback(endpoint, work, args.seconds, args.tries))
    finally:
        stop_process(proc)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("\n".join(lines))
    print(f"\n(total {time.monotonic() - started:.0f} s; load average now "
          f"{os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

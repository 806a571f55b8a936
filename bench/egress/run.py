#!/usr/bin/env python3
"""What the egress proxy costs: page load time, a bulk download and recorder CPU, with the
proxy and without it (WEBRECORD_EGRESS_ENABLED=false), alternating in the same run.

    python3 bench/egress/run.py [--runs 3] [--seconds 8]

The page (served on 127.0.0.1, loopback allowed) loads 60 small images and 8 scripts, then
fetches 32 MB; CPU is the recorder process (which hosts the proxy) plus every child (Chromium,
ffmpeg, Xvfb, PulseAudio) over the recording, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from attacks.egress_servers import PageServer  # noqa: E402

from webrecord.api.models import Action, RecordingSpec, RecordingTask  # noqa: E402
from webrecord.recorder.session import Session  # noqa: E402
from webrecord.recorder.settings import RecorderSettings  # noqa: E402

BIG = 32 * 1024 * 1024
PAGE = """<!doctype html><body style="background:#123">%s%s<script>
window.addEventListener('load', async () => {
  const t0 = performance.now();
  const r = await fetch('/big?' + Math.random()); const b = await r.arrayBuffer();
  window.bulk = {ms: performance.now() - t0, bytes: b.byteLength};
});
</script>""" % (
    "".join(f'<img src="/img{i}.svg" width="20">' for i in range(60)),
    "".join(f'<script src="/s{i}.js"></script>' for i in range(8)),
)
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><rect width="20" height="20" fill="#8a4"/></svg>'


def _tree_cpu(root: int) -> float:
    """CPU seconds (user+system) of root and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
                cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, ValueError):
                pass
    total = 0.0
    for pid in cpu:
        cur, hops = pid, 0
        while cur and cur != root and hops < 64:
            cur, hops = parents.get(cur, 0), hops + 1
        if cur == root:
            total += cpu[pid]
    return total


async def one(url: str, enabled: bool, seconds: float, tmp: Path) -> dict[str, float]:
    os.environ["WEBRECORD_EGRESS_ENABLED"] = "true" if enabled else "false"
    task = RecordingTask(task_id="bench", spec=RecordingSpec(
        record_url=url, width=640, height=360, max_duration_limit=600))
    session = Session(task, tmp, RecorderSettings())
    runner = asyncio.create_task(session.run())
    await asyncio.wait_for(session.started_event.wait(), 60)
    page = session.browser.page
    nav = await page.evaluate("performance.getEntriesByType('navigation')[0].toJSON()")
    cpu0, t0 = _tree_cpu(os.getpid()), time.monotonic()
    deadline = t0 + 30
    while (bulk := await page.evaluate("window.bulk || null")) is None:
        assert time.monotonic() < deadline, "bulk download did not finish"
        await asyncio.sleep(0.1)
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    cpu = _tree_cpu(os.getpid()) - cpu0
    wall = time.monotonic() - t0
    connections = session.egress.stats.connections if session.egress else 0
    await session.control(Action.STOP)
    await runner
    return {"load_ms": nav["loadEventEnd"] - nav["startTime"], "bulk_mb_s": bulk["bytes"] / 1e6 / (bulk["ms"] / 1000),
            "cpu_pct": 100 * cpu / wall, "connections": connections}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    os.environ["WEBRECORD_EGRESS_ALLOW_LOOPBACK"] = "true"
    pages = {"/": PAGE, **{f"/img{i}.svg": SVG for i in range(60)},
             **{f"/s{i}.js": f"window.s{i} = {i};" for i in range(8)}}
    server = PageServer(pages)
    big = b"x" * BIG
    handler = server.server.RequestHandlerClass
    plain_get = handler.do_GET

    def do_get(self) -> None:  # the 32 MB body, without keeping pages as str
        if self.path.startswith("/big"):
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(big)
        else:
            plain_get(self)
    handler.do_GET = do_get
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    try:
        with tempfile.TemporaryDirectory(prefix="egress-bench-") as tmp:
            for i in range(args.runs):
                for enabled in (True, False):
                    results[enabled].append(
                        await one(f"{server.url}/", enabled, args.seconds, Path(tmp) / f"{i}{enabled}"))
    finally:
        server.close()
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    print(f"{'metric (median of ' + str(args.runs) + ')':<28}{'proxy':>10}{'no proxy':>10}{'ratio':>8}")
    for metric in ("load_ms", "bulk_mb_s", "cpu_pct", "connections"):
        a, b = med[True][metric], med[False][metric]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{metric:<28}{a:>10.1f}{b:>10.1f}{ratio:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

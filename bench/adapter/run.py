#!/usr/bin/env python3
"""Adapter benchmark: Describe throughput with 1,000 stored tasks, and Start-to-first-frame
latency through the API.

    python3 bench/adapter/run.py [--requests 5000] [--concurrency 16] [--tasks 1000]
                                 [--latency-runs 3] [--skip-latency] [--keep]

The server is `python -m webrecord.adapter serve` (a separate process, local backend, the
state dir pre-filled with finished tasks through the real TaskStore). Baseline, measured in the
same run against the same server: GET /healthz (routing, middleware, JSON reply, no store), so
Describe is shown as a ratio of the bare server. Client and server share this machine's cores,
so absolute numbers are a floor; the ratio is the comparable figure.

Start-to-first-frame: from sending Start to (a) the Start reply, (b) Describe reporting
`recording`, (c) the first segment file on disk holding encoded bytes. Each run Cancels the task
afterwards and waits for `finished`.

Warm pool (bench/adapter/warm.py, `--warm-runs N`, `--only-warm`): Start request -> first
recorded page frame read from the delivered video's clock band, with a warm slot and cold (the
baseline) interleaved; the steps in between from the recorders' logs; a Pause 1.5 s after
Start; an idle slot's CPU and memory.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aiohttp

from webrecord.adapter import auth
from webrecord.adapter.store import RunState, TaskStore
from webrecord.api.models import Phase, RecorderStatus, RecordingSpec, Result, VideoFile

KEY, SECRET = "AKIDbench", "bench-secret-0123456789"
ROUNDS = 5
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bench</title></head>
<body style="margin:0;background:#123"><h1 id="t" style="color:#fff;font:48px sans-serif">0</h1>
<script>let n=0;setInterval(()=>{document.getElementById('t').textContent=++n},33)</script>
</body></html>"""


# ---------------------------------------------------------------- setup


def populate(state: Path, count: int, owner: str) -> list[str]:
    store = TaskStore(state / "tasks.sqlite")
    ids = []
    now = int(time.time())
    spec = RecordingSpec(record_url="https://example.com/room")
    for i in range(count):
        task_id = f"wr-{i:024x}"
        status = RecorderStatus(
            task_id=task_id, status=Phase.FINISHED, create_time=now - 600, start_time=now - 590,
            stop_time=now - 300, finish_time=now - 290,
            result=Result(videos=[VideoFile(filename=f"{task_id}.mp4", file_size=12_345_678,
                                            file_duration=290.0, file_url=f"file:///videos/{task_id}.mp4")]),
        )
        store.insert(task_id, owner, spec, status, now - 600 + i)
        store.set_status(task_id, status, RunState.DONE)
        ids.append(task_id)
    store.close()
    return ids


class Serve:
    def __init__(self, root: Path, keys: Path | None, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        auth_args = ["--auth-keys", str(keys)] if keys else ["--no-auth"]
        port_file = root / "port"
        self.log = open(root / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webrecord.adapter", "serve", "--port", "0", "--port-file",
             str(port_file), "--state-dir", str(root / "state"), *auth_args,
             "--max-concurrent", "1", *extra],
            stdout=self.log, stderr=subprocess.STDOUT,
            # The warm/cold rows read the recorders' info lines (where the time goes).
            env=dict(os.environ, WEBRECORD_LOG_LEVEL="INFO" if extra else "WARNING"),
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "serve.log").read_text())
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}/"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def signed(body: bytes) -> dict[str, str]:
    return auth.sign_headers(KEY, SECRET, body, extra_signed={"source": uuid.uuid4().hex})


# ---------------------------------------------------------------- throughput


async def hammer(session: aiohttp.ClientSession, make, total: int, concurrency: int) -> dict:
    """`total` requests with `concurrency` in flight; returns rps and latency percentiles."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        for _ in counter:
            method, url, body, headers = make()
            t0 = time.perf_counter()
            async with session.request(method, url, data=body, headers=headers) as resp:
                payload = await resp.read()
                if resp.status != 200 or not payload:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


async def throughput(url: str, ids: list[str], total: int, concurrency: int, signed_requests: bool) -> dict[str, dict]:
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=concurrency)
    results: dict[str, dict] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        def health():
            return "GET", url + "healthz", None, None

        def describe():
            body = json.dumps({"Action": "Describe", "Data": {"TaskID": rng.choice(ids)}}).encode()
            headers = signed(body) if signed_requests else {"content-type": "application/json"}
            return "POST", url, body, headers

        def list_page():
            body = json.dumps({"Action": "List", "Data": {"Offset": rng.randrange(0, 980), "Limit": 20}}).encode()
            return "POST", url, body, signed(body)

        await hammer(session, health, 500, concurrency)  # warm-up
        if not signed_requests:
            kinds = {"GET /healthz (baseline)": (health, total), "Describe, auth off": (describe, total)}
        else:
            kinds = {"Describe, signed": (describe, total),
                     "List (20 of 1,000), signed": (list_page, total // 5)}
        # The machine is shared: interleave the kinds in ROUNDS rounds and keep the median round,
        # so a burst of someone else's load does not land on one kind only.
        rounds: dict[str, list[dict]] = {name: [] for name in kinds}
        for _ in range(ROUNDS):
            for name, (make, count) in kinds.items():
                rounds[name].append(await hammer(session, make, max(count // ROUNDS, 1), concurrency))
        for name, runs in rounds.items():
            runs.sort(key=lambda r: r["rps"])
            median = dict(runs[len(runs) // 2])
            median["errors"] = sum(r["errors"] for r in runs)
            results[name] = median
    return results


# ---------------------------------------------------------------- latency


async def start_latency(url: str, state: Path, page_url: str, runs: int) -> list[dict]:
    out = []
    async with aiohttp.ClientSession() as session:
        async def call(action: str, data: dict) -> dict:
            body = json.dumps({"Action": action, "Data": data}).encode()
            async with session.post(url, data=body, headers=signed(body)) as resp:
                return await resp.json()

        for _ in range(runs):
            t0 = time.perf_counter()
            reply = await call("Start", {"RecordURL": page_url, "Width": 1280, "Height": 720})
            t_reply = time.perf_counter() - t0
            task_id = reply["TaskID"]
            segment = state / "tasks" / task_id / "work" / "segments" / "seg_0000.ts"
            t_recording = t_frame = None
            deadline = time.perf_counter() + 90
            while (t_recording is None or t_frame is None) and time.perf_counter() < deadline:
                if t_frame is None and segment.exists() and segment.stat().st_size > 0:
                    t_frame = time.perf_counter() - t0
                if t_recording is None:
                    d = await call("Describe", {"TaskID": task_id})
                    if d.get("Status") == "recording":
                        t_recording = time.perf_counter() - t0
                    elif d.get("Status") == "finished":
                        raise RuntimeError(f"task ended early: {d}")
                await asyncio.sleep(0.02)
            await call("Cancel", {"TaskID": task_id})
            while (await call("Describe", {"TaskID": task_id})).get("Status") != "finished":
                await asyncio.sleep(0.2)
            out.append({"reply": t_reply, "recording": t_recording, "frame": t_frame})
    return out


def page_server() -> tuple[str, http.server.ThreadingHTTPServer]:
    root = Path(tempfile.mkdtemp(prefix="wr-bench-page-"))
    (root / "index.html").write_text(PAGE)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/index.html", server


# ---------------------------------------------------------------- report


def measure_warm(root: Path, runs: int) -> tuple[dict, dict, dict]:
    """Warm slot and cold starts, interleaved so load from others falls on both alike."""
    import warm
    from recbench.server import PageServer

    results: dict[str, list[dict]] = {"warm": [], "cold": []}
    servers: dict[str, Serve] = {}
    for kind in results:
        (root / kind).mkdir()
        servers[kind] = Serve(root / kind, None, ("--warm-slots", "1" if kind == "warm" else "0"))
    cost = {}
    try:
        with PageServer() as pages:
            for i in range(runs):
                for kind, serve in servers.items():
                    results[kind].append(warm.one_run(warm.Api(serve.url), pages,
                                                      root / kind / "state", f"{kind}-{i}",
                                                      kind == "warm"))
            warm.wait_slot(warm.Api(servers["warm"].url))
            cost = warm.idle_cost(root / "warm" / "state")
    finally:
        for serve in servers.values():
            serve.stop()
    return warm.summary(results["warm"]), warm.summary(results["cold"]), cost


def print_warm(hot: dict, cold: dict, cost: dict) -> None:
    print(f"\nStart request -> first recorded page frame (HTTP protocol, local backend, 1280x720, "
          f"frames page; read from the video's clock band), {hot['n']} warm and {cold['n']} cold "
          f"starts interleaved; baseline: cold spawn, same run\n")
    print(f"| {'start':<28} | {'p50 s':>6} | {'p95 s':>6} | {'min s':>6} | {'max s':>6} | "
          f"{'p50 vs cold':>11} | {'target':<22} |")
    print(f"|{'-' * 30}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 8}|{'-' * 13}|{'-' * 24}|")
    for name, r, target in (("warm slot", hot, "p50 <= 1.0, p95 <= 1.5"), ("cold spawn (baseline)", cold, "")):
        verdict = ""
        if target:
            verdict = "pass" if r["p50"] <= 1.0 and r["p95"] <= 1.5 else "FAIL"
        print(f"| {name:<28} | {r['p50']:>6.3f} | {r['p95']:>6.3f} | {r['min']:>6.3f} | {r['max']:>6.3f} | "
              f"{r['p50'] / cold['p50']:>10.2f}x | {(target + ': ' + verdict) if target else '':<22} |")
    print(f"\nWhere the time goes (median s after sending Start)\n")
    print(f"| {'step':<36} | {'warm':>6} | {'cold':>6} |")
    print(f"|{'-' * 38}|{'-' * 8}|{'-' * 8}|")
    rows = [("Start reply", hot["reply"], cold["reply"])]
    rows.append(("slot claimed / recorder listening", hot["steps"].get("slot claimed"),
                 cold["steps"].get("control endpoint listening")))
    for key, label in (("page loaded", "page loaded"), ("segment started", "ffmpeg spawned")):
        rows.append((label, hot["steps"].get(key), cold["steps"].get(key)))
    rows.append(("first recorded page frame (p50)", hot["p50"], cold["p50"]))
    for label, a, b in rows:
        fa = f"{a:>6.3f}" if a is not None else f"{'-':>6}"
        fb = f"{b:>6.3f}" if b is not None else f"{'-':>6}"
        print(f"| {label:<36} | {fa} | {fb} |")
    print(f"\nPause sent 1.5 s after Start: accepted {hot['pause_accepted']}/{len(hot['pauses'])} warm, "
          f"{cold['pause_accepted']}/{len(cold['pauses'])} cold (refusals: "
          f"{sorted(set(p for p in hot['pauses'] + cold['pauses'] if p != 'accepted')) or 'none'})")
    if cost:
        print(f"\nIdle warm slot (1280x720, {cost['processes']} processes), 10 s: "
              f"{cost['cpu_s_per_s']:.3f} CPU s/s, PSS {cost['pss_mib']:.0f} MiB "
              f"(RSS summed {cost['rss_mib']:.0f} MiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--warm-runs", type=int, default=5,
                        help="Start -> first recorded page frame, warm slot and cold (0: skip)")
    parser.add_argument("--only-warm", action="store_true",
                        help="only the warm/cold start rows (no throughput, no old latency table)")
    parser.add_argument("--keep", action="store_true", help="keep the state dir")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="wr-bench-adapter-"))
    keys = root / "keys.yaml"
    keys.write_text(f"{KEY}: {SECRET}\n")
    rows: dict[str, dict] = {}
    latency: list[dict] = []
    page = None
    if args.only_warm:
        try:
            print_warm(*measure_warm(root, args.warm_runs))
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        return 0
    try:
        # Auth off: the baseline and the bare Describe path.
        (root / "open").mkdir()
        ids = populate(root / "open" / "state", args.tasks, "anonymous")
        serve = Serve(root / "open", None)
        try:
            rows.update(asyncio.run(throughput(serve.url, ids, args.requests, args.concurrency, False)))
        finally:
            serve.stop()
        # Auth on: signed Describe and List, then Start-to-first-frame.
        (root / "signed").mkdir()
        ids = populate(root / "signed" / "state", args.tasks, KEY)
        serve = Serve(root / "signed", keys)
        try:
            rows.update(asyncio.run(throughput(serve.url, ids, args.requests, args.concurrency, True)))
            if not args.skip_latency:
                page_url, page = page_server()
                latency = asyncio.run(
                    start_latency(serve.url, root / "signed" / "state", page_url, args.latency_runs)
                )
        finally:
            serve.stop()
    finally:
        if page is not None:
            page.shutdown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    base = rows["GET /healthz (baseline)"]["rps"]
    print(f"\nAdapter throughput: {args.tasks} stored tasks, {args.requests} requests per kind "
          f"(List: {args.requests // 5}) in {ROUNDS} interleaved rounds (median round shown), "
          f"concurrency {args.concurrency}, {os.cpu_count()} cores shared by client and server\n")
    print(f"| {'request':<30} | {'req/s':>8} | {'vs baseline':>11} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} |")
    print(f"|{'-' * 32}|{'-' * 10}|{'-' * 13}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for name, r in rows.items():
        print(f"| {name:<30} | {r['rps']:>8.0f} | {r['rps'] / base:>10.2f}x | {r['p50_ms']:>7.2f} | "
              f"{r['p99_ms']:>7.2f} | {r['errors']:>6} |")
    if args.warm_runs:
        root = Path(tempfile.mkdtemp(prefix="wr-bench-warm-"))
        try:
            print_warm(*measure_warm(root, args.warm_runs))
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    if latency:
        print(f"\nStart to first frame through the API (1280x720, local backend), {len(latency)} runs\n")
        print(f"| {'from sending Start to':<40} | {'median s':>8} | {'min s':>6} | {'max s':>6} |")
        print(f"|{'-' * 42}|{'-' * 10}|{'-' * 8}|{'-' * 8}|")
        for key, label in (("reply", "the Start reply"), ("recording", "Describe says recording"),
                           ("frame", "first encoded bytes in segment 0")):
            values = [r[key] for r in latency if r[key] is not None]
            if values:
                print(f"| {label:<40} | {statistics.median(values):>8.3f} | {min(values):>6.3f} | {max(values):>6.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

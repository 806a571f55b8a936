"""Start request -> first recorded page frame through the HTTP protocol, with a warm slot and
cold (the baseline, same run), read from the videos; where the time goes; what an idle slot
costs; whether a Pause 1.5 s after Start is accepted.

Each run: Start (1280x720, bench/recorder/pages/frames.html with t0 = the moment the Start
request is sent), Pause at +1.5 s, Resume at +2.0 s, Stop at +3.5 s or 1.5 s after Describe
first says `recording`, whichever is later. The first frame of the
delivered video whose clock band decodes gives the latency (the page's paint time of the first
captured page frame, in ms since t0). Used with bench/adapter/run.py (--warm-runs)."""

from __future__ import annotations

import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recorder"))
from recbench import analysis as an  # noqa: E402 - bench/recorder's decoders
from recbench.server import PageServer  # noqa: E402

STEPS = (("slot claimed", "claim answered / recorder started"), ("page loaded", "page loaded"),
         ("segment started", "ffmpeg spawned"))


class Api:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, action: str, data: dict) -> dict:
        body = json.dumps({"Action": action, "Data": data}).encode()
        req = urllib.request.Request(self.base, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # refusals: {"ErrorCode", "ErrorMessage"}
            return json.loads(exc.read())

    def health(self) -> dict:
        with urllib.request.urlopen(self.base + "healthz", timeout=10) as reply:
            return json.loads(reply.read())


def wait_slot(api: Api, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.health().get("warmSlots", {}).get("ready", 0) >= 1:
            return
        time.sleep(0.1)
    raise RuntimeError("no warm slot became ready")


def _log_times(log: Path) -> dict[str, float]:
    """Wall-clock time of the first log line of each step, from the recorder's log."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        msg = entry.get("msg")
        if msg in ("slot claimed", "page loaded", "segment started") and msg not in found:
            found[msg] = float(entry["ts"])
        if msg == "control endpoint listening" and "slot claimed" not in found \
                and "control endpoint listening" not in found:
            found["control endpoint listening"] = float(entry["ts"])
    return found


def one_run(api: Api, pages: PageServer, state: Path, name: str, warm: bool) -> dict:
    if warm:
        wait_slot(api)
    t0 = time.time()
    url = f"{pages.url('frames.html')}?t0={int(t0 * 1000)}&id={name}"
    reply = api.call("Start", {"RecordURL": url, "Width": 1280, "Height": 720, "MaxDurationLimit": 30})
    t_reply = time.time() - t0
    task = reply["TaskID"]
    controls = {}
    for at, action in ((1.5, "Pause"), (2.0, "Resume")):
        time.sleep(max(0.0, t0 + at - time.time()))
        answer = api.call(action, {"TaskID": task})
        controls[action] = answer.get("ErrorCode") or "accepted"
    # Stop once 1.5 s are recorded (a slow cold start may not record before +3.5 s).
    deadline = time.monotonic() + 60
    while api.call("Describe", {"TaskID": task})["Status"] != "recording" and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(max(1.5, t0 + 3.5 - time.time()))
    controls["Stop"] = api.call("Stop", {"TaskID": task}).get("ErrorCode") or "accepted"
    deadline = time.monotonic() + 90
    while (d := api.call("Describe", {"TaskID": task}))["Status"] != "finished":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: not finished: {d}")
        time.sleep(0.2)
    videos = d["Result"].get("Videos") or []
    if not videos:
        raise RuntimeError(f"{name}: no video: {d['Result']}")
    times, frames = an.video_frames(Path(unquote(urlsplit(videos[0]["FileURL"]).path)))
    codes = an.decode_frames(times, frames)
    first = next((int(c) for c, s in zip(codes.clock_ms, codes.state) if s == an.OK and c >= 0), None)
    steps = {k: v - t0 for k, v in _log_times(state / "tasks" / task / "recorder.log").items()}
    return {"reply": t_reply, "frame": first / 1000 if first is not None else None,
            "controls": controls, "steps": steps}


def idle_cost(state: Path, seconds: float = 10.0) -> dict[str, float]:
    """CPU s per s and memory (PSS, RSS) of one idle slot's whole process tree."""
    roots = [p for p in psutil.process_iter(["cmdline"])
             if "--standby" in (p.info["cmdline"] or []) and str(state) in " ".join(p.info["cmdline"] or [])]
    root = min(roots, key=lambda p: p.pid)
    procs = [root, *root.children(recursive=True)]

    def cpu() -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    c0, w0 = cpu(), time.monotonic()
    time.sleep(seconds)
    c1, w1 = cpu(), time.monotonic()
    pss = rss = 0
    for p in procs:
        try:
            mem = p.memory_full_info()
            pss, rss = pss + mem.pss, rss + mem.rss
        except psutil.Error:
            pass
    return {"cpu_s_per_s": (c1 - c0) / (w1 - w0), "pss_mib": pss / 2**20, "rss_mib": rss / 2**20,
            "processes": len(procs)}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 5 runs is the slowest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))]


def summary(runs: list[dict]) -> dict:
    frames = [r["frame"] for r in runs if r["frame"] is not None]
    steps: dict[str, list[float]] = {}
    for r in runs:
        for k, v in r["steps"].items():
            steps.setdefault(k, []).append(v)
    pauses = [r["controls"]["Pause"] for r in runs]
    return {"n": len(frames), "p50": statistics.median(frames), "p95": pct(frames, 95),
            "min": min(frames), "max": max(frames),
            "reply": statistics.median(r["reply"] for r in runs),
            "steps": {k: statistics.median(v) for k, v in steps.items()},
            "pause_accepted": sum(p == "accepted" for p in pauses), "pauses": pauses}

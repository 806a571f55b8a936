"""Admission by measured cost (issue 14): N+1 tasks at 720p30 submitted at once to a real
`webrecord serve` (local backend, default capacity: 90% of this machine's CPUs); those the
budget admits record, the rest wait `normal` with the reason, and every video keeps its frame
fidelity because the machine was never overcommitted.

Each task records `seconds` of the frames page from its own StartTime, then Stop; the server's
Describe is polled every 0.25 s for how many record at once."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from recbench import analysis as an
from recbench import proctree
from recbench.runs import _with_t0


@dataclass
class Outcome:
    submitted: int
    most_recording: int = 0
    waited: list[str] = field(default_factory=list)  # task ids seen `normal` with a capacity reason
    reason: str = ""
    fidelity: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class _Serve:
    def __init__(self, work: Path) -> None:
        port_file = work / "port"
        self.log = open(work / "serve.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webrecord.adapter", "serve", "--no-auth", "--port", "0",
             "--port-file", str(port_file), "--state-dir", str(work / "state")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        proctree.LAUNCHED.add(self.proc.pid)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"webrecord serve did not start (see {work / 'serve.log'})")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{int(port_file.read_text())}/"

    def call(self, action: str, data: dict) -> dict:
        body = json.dumps({"Action": action, "Data": data}).encode()
        req = urllib.request.Request(self.base, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as reply:
            return json.loads(reply.read())

    def close(self) -> None:
        proctree.kill_tree([self.proc.pid], timeout=10)
        self.log.close()


def run(page_url: str, tasks: int, seconds: float, work: Path | None = None) -> Outcome:
    work = work or Path(tempfile.mkdtemp(prefix="admission-"))
    work.mkdir(parents=True, exist_ok=True)
    serve = _Serve(work)
    outcome = Outcome(submitted=tasks)
    try:
        ids = []
        for i in range(tasks):
            url = _with_t0(page_url, time.time(), f"adm-{i}")
            ids.append(serve.call("Start", {"RecordURL": url, "Width": 1280, "Height": 720,
                                            "MaxDurationLimit": int(seconds) + 60})["TaskID"])
        stopped: set[str] = set()
        deadline = time.monotonic() + tasks * (seconds + 60)
        finished: dict[str, dict] = {}
        while len(finished) < tasks and time.monotonic() < deadline:
            states = {t: serve.call("Describe", {"TaskID": t}) for t in ids if t not in finished}
            outcome.most_recording = max(outcome.most_recording,
                                         sum(d["Status"] == "recording" for d in states.values()))
            for task, d in states.items():
                if d["Status"] == "normal" and "waiting for capacity" in d.get("Message", ""):
                    if task not in outcome.waited:
                        outcome.waited.append(task)
                    outcome.reason = d["Message"]
                if d["Status"] == "recording" and task not in stopped \
                        and time.time() - d["StartTime"] >= seconds:
                    serve.call("Stop", {"TaskID": task})
                    stopped.add(task)
                if d["Status"] == "finished":
                    finished[task] = d
            time.sleep(0.25)
        for task in ids:
            d = finished.get(task)
            videos = (d or {}).get("Result", {}).get("Videos") or []
            if not videos:
                outcome.errors.append(f"{task}: {d and d['Result'].get('ErrorCode')} "
                                      f"{d and d['Result'].get('ErrorMessage')}")
                continue
            path = Path(unquote(urlsplit(videos[0]["FileURL"]).path))
            fid, _ = an.analyse_barcode_video(path, 30.0)
            outcome.fidelity[task] = fid.fidelity
    finally:
        serve.close()
    return outcome

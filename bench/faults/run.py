"""Faults injected into real recordings: one table row per fault.

Each fault runs one real recording (Xvfb + Chromium + PulseAudio + ffmpeg through the local
backend's `webrecord serve`, or the operator) of the frame-code page (bench/recorder/pages/
frames.html: every frame carries the page's wall clock), injects the fault, stops the task,
waits for it to finish and then measures:

- lost: seconds of page time between the first recorded frame and the Stop (or the moment the
  fault ended the recording) that the delivered video does not show (from the frame codes:
  page clock covered by consecutive decoded frames). "down" is the part of it that no recorder
  was running at all (from the fault to the first frame of the replacement); "rec.lost" the
  rest: what had been recorded (or should have been) and is not in the video.
- status / error code: the final Describe.
- plays: ffmpeg decodes the whole video without an error.
- callback: a real HTTP receiver got the callback with a valid HMAC signature.

Run: PYTHONPATH=operator python3 bench/faults/run.py [--only NAME] [--list]
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "recorder"))
sys.path.insert(0, str(ROOT / "tests" / "delivery"))

from recbench.analysis import analyse_barcode_video, OK  # noqa: E402
from recbench.server import PageServer  # noqa: E402
from moto_server import start_moto, stop_process, free_port  # noqa: E402

SEGMENT_SECONDS = 2
RECORD_S = float(os.environ.get("FAULTS_RECORD_S", "16"))  # wall seconds of page per run
FAULT_AT_S = 6.0  # fault injected this long after the first frame
CALLBACK_SECRET = "faults-bench-secret"
MARK = "WEBRECORD_FAULTS_MARK"
NOTHING_TOL_S = 0.5  # "nothing lost" allows this much (the baseline measures 0.0-0.1 s)
CUT_S = 0.2  # page time missing between two frames beyond this is a cut  # "nothing lost" allows this much (Stop latency: the last ~0.3 s before it)


# ---------------------------------------------------------------------------------------
# Real parts: callback receiver, storage behind a switchable TCP proxy


class CallbackReceiver:
    """A real HTTP server on loopback that checks each callback's HMAC signature; `down()`
    closes its socket (connections refused), `up()` listens again on the same port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.got: list[dict[str, Any]] = []
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        from webrecord.delivery.callback import verify_signature
        got = self.got

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                ok = verify_signature(CALLBACK_SECRET, raw, self.headers)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                got.append({"time": time.time(), "valid": bool(ok), "body": body})
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/cb"

    def valid(self) -> bool:
        return any(g["valid"] for g in self.got)


class SwitchProxy:
    """TCP forwarder on a fixed loopback port in front of the storage endpoint. `down()`
    stops listening and cuts every open connection (the endpoint is unreachable: connection
    refused), `up()` listens again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.update((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                with contextlib.suppress(OSError):
                    x.shutdown(socket.SHUT_RDWR)
                x.close()
            with self.lock:
                self.conns.discard(a)
                self.conns.discard(b)

    def down(self) -> None:
        if self.listener:
            self.listener.close()
            self.listener = None
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ---------------------------------------------------------------------------------------
# Process helpers


def marked_pids(mark: str) -> list[tuple[int, int, str]]:
    """(pid, ppid, comm) of processes carrying our mark in their environment, and their
    descendants (Chromium's children hide their environment)."""
    needle = f"{MARK}={mark}".encode()
    marked: set[int] = set()
    parents: dict[int, int] = {}
    comms: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            parents[pid] = int(fields[1])
            with open(f"/proc/{pid}/comm") as f:
                comms[pid] = f.read().strip()
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    marked.add(pid)
        except OSError:
            continue
    found = set(marked)
    for pid in parents:
        cur, n = parents.get(pid, 0), 0
        while cur > 1 and n < 64:
            if cur in marked:
                found.add(pid)
                break
            cur, n = parents.get(cur, 0), n + 1
    return sorted((p, parents.get(p, 0), comms.get(p, "?")) for p in found)


def kill_marked(mark: str) -> None:
    for _ in range(3):
        left = marked_pids(mark)
        if not left:
            return
        for pid, _, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def play_ok(path: Path) -> tuple[bool, str]:
    """ffmpeg decodes every frame without an error (the concat DTS note is not an error)."""
    try:
        d = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                           capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return False, "decode timed out"
    problems = [l for l in d.stderr.splitlines()
                if l.strip() and "non monotonically increasing dts" not in l]
    return d.returncode == 0 and not problems, "; ".join(problems[:2])


def probe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "json", str(path)], capture_output=True, text=True, timeout=60)
    try:
        return float(json.loads(out.stdout)["format"]["duration"])
    except (KeyError, ValueError):
        return 0.0


# ---------------------------------------------------------------------------------------
# Measurement


@dataclass
class Row:
    fault: str
    backend: str
    target: str  # "0" (nothing lost) or "<=1 seg"
    lost: float | None = None
    down: float | None = None
    status: str = ""
    error: str = ""
    plays: str = ""
    callback: str = ""
    video_s: float | None = None
    expected_s: float | None = None
    verdict: str = ""
    note: str = ""
    message: str = ""  # the final ErrorMessage, in full


def measure(video: Path, t0_ms: int, end_wall: float, fault_wall: float | None) -> dict[str, float]:
    """Page seconds from the first recorded frame to `end_wall` (unix s) the video does not
    show, and the part of them that is the cut right after `fault_wall` (no recorder ran).

    A cut is where the page clock advances more than the video's own time between two frames
    that show a new page clock (by more than CUT_S): page time missing from the file. A capture
    stall (frames repeated or late, the video's time advancing with the clock) is not a cut.
    The tail (Stop or the fault's end minus the last frame's clock) counts as lost too."""
    fid, codes = analyse_barcode_video(video, 30.0)
    ok = [(float(codes.times[i]), int(codes.clock_ms[i])) for i, s in enumerate(codes.state)
          if s == OK and codes.clock_ms[i] >= 0]
    if not ok:
        return {"lost": end_wall - t0_ms / 1000.0, "down": 0.0, "expected": float("nan")}
    first_clock = ok[0][1]
    end_clock = (end_wall * 1000.0) - t0_ms
    expected = (end_clock - first_clock) / 1000.0
    k = None if fault_wall is None else fault_wall * 1000.0 - t0_ms
    cuts = down = 0.0
    prev_t, prev_c = ok[0]
    for t, c in ok[1:]:
        if c <= prev_c:
            continue
        cut = (c - prev_c) / 1000.0 - (t - prev_t)
        if cut > CUT_S:
            cuts += cut
            if k is not None and prev_c <= k + 1000 * CUT_S and c > k:
                down += min(cut, (c - k) / 1000.0)
        prev_t, prev_c = t, c
    tail = max(0.0, (end_clock - prev_c) / 1000.0)
    return {"lost": cuts + tail, "down": down, "expected": expected}


KEEP = False


@contextlib.contextmanager
def workdir(prefix: str):
    """A temporary directory, kept (and its path printed) with --keep."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        if KEEP:
            print(f"# kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# The local backend rig


class LocalRig:
    def __init__(self, root: Path, pages: PageServer, s3: bool = False,
                 env: dict[str, str] | None = None, wrap: list[str] | None = None) -> None:
        self.root = root
        self.pages = pages
        self.mark = uuid.uuid4().hex
        self.state = root / "state"
        self.out = root / "output"
        self.out.mkdir(parents=True, exist_ok=True)
        self.callback = CallbackReceiver()
        self.moto = self.proxy = None
        self.bucket = "faults"
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **{MARK: self.mark},
                        WEBRECORD_SEGMENT_SECONDS=str(SEGMENT_SECONDS),
                        WEBRECORD_CALLBACK_SECRET=CALLBACK_SECRET,
                        WEBRECORD_OUTPUT_DIR=str(self.out),
                        PYTHONPATH=str(ROOT / "operator"))
        if s3:
            self.moto, moto_endpoint = start_moto()
            host, port = urlsplit(moto_endpoint).hostname, urlsplit(moto_endpoint).port
            self.proxy = SwitchProxy((host, port))
            creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
            self.env.update(creds, WEBRECORD_S3_ENDPOINT_URL=self.proxy.endpoint)
            import boto3
            self.s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
            self.s3.create_bucket(Bucket=self.bucket)
        self.env.update(env or {})
        self.wrap = wrap or []
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        port_file = self.root / "port"
        self.log = open(self.root / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "webrecord.adapter", "serve", "--no-auth", "--port",
             "0", "--port-file", str(port_file), "--state-dir", str(self.state),
             # No warm slot: the faults pick their victims by process name (one Chromium).
             "--max-concurrent", "1", "--warm-slots", "0"],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve did not start: " + (self.root / "serve.log").read_text()[-2000:])
            time.sleep(0.1)
        self.port = int(port_file.read_text())

    def call(self, action: str, data: dict) -> dict:
        r = requests.post(f"http://127.0.0.1:{self.port}/", json={"Action": action, "Data": data},
                          timeout=30)
        return r.json()

    def describe(self, task: str) -> dict:
        return self.call("Describe", {"TaskID": task})

    def task_dir(self, task: str) -> Path:
        return self.state / "tasks" / task

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        kill_marked(self.mark)
        self.callback.down()
        if self.proxy:
            self.proxy.down()
        if self.moto:
            stop_process(self.moto)


def wait(fn: Callable[[], Any], pred: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = fn()
            if pred(last):
                return last
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}; last: {json.dumps(last)[:500]}")


@dataclass
class Run:
    """One recording of the frame-code page through the local backend."""
    rig: LocalRig
    t0_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    task: str = ""
    shown: float = 0.0  # unix time the page's first frame was on screen (beacon)
    stop_wall: float | None = None

    def start(self, cos: bool = False) -> None:
        run_id = uuid.uuid4().hex[:8]
        url = self.rig.pages.url(f"frames.html?t0={self.t0_ms}&id={run_id}")
        data: dict[str, Any] = {"RecordURL": url, "Width": 640, "Height": 360,
                                "CallbackURL": self.rig.callback.url, "MaxDurationLimit": 600}
        if cos:
            data["Output"] = {"Cos": {"Bucket": self.rig.bucket, "Region": "us-east-1",
                                      "TargetDir": "faults"}}
        reply = self.rig.call("Start", data)
        assert "TaskID" in reply, reply
        self.task = reply["TaskID"]
        wait(lambda: self.rig.describe(self.task), lambda d: d["Status"] == "recording", 120,
             "recording")
        t = self.rig.pages.wait_shown(run_id, 60)
        assert t is not None, "page never shown"
        self.shown = time.time() - (time.monotonic() - t)

    def sleep_until(self, after_shown: float) -> None:
        time.sleep(max(0.0, self.shown + after_shown - time.time()))

    def stop(self) -> dict:
        self.stop_wall = time.time()
        return self.rig.call("Stop", {"TaskID": self.task})

    def finished(self, timeout: float = 240) -> dict:
        return wait(lambda: self.rig.describe(self.task), lambda d: d["Status"] == "finished",
                    timeout, "finished")

    def fetch_video(self, d: dict) -> Path | None:
        videos = d.get("Result", {}).get("Videos") or []
        if not videos:
            return None
        url = videos[0].get("FileURL") or ""
        if url.startswith("file://"):
            return Path(unquote(urlsplit(url).path))
        if getattr(self.rig, "s3", None) is None or not url:
            return None
        # S3: read the object straight from moto (not through the switchable proxy)
        key = None
        for obj in self.rig.s3.list_objects_v2(Bucket=self.rig.bucket, Prefix="faults/").get("Contents", []):
            if obj["Key"].endswith(".mp4"):
                key = obj["Key"]
        if key is None:
            return None
        dest = self.rig.root / "fetched.mp4"
        self.rig.s3.download_file(self.rig.bucket, key, str(dest))
        return dest


def finish_row(row: Row, run: Run, d: dict, end_wall: float, fault_wall: float | None,
               video: Path | None = None) -> Row:
    row.status = d.get("Status", "?")
    row.error = d.get("Result", {}).get("ErrorCode") or "-"
    row.message = d.get("Result", {}).get("ErrorMessage") or ""
    video = video or run.fetch_video(d)
    if video is None or not video.exists():
        row.plays = "no video"
        row.lost = end_wall - run.shown
    else:
        ok, why = play_ok(video)
        row.plays = "yes" if ok else f"NO ({why[:60]})"
        row.video_s = probe_duration(video)
        m = measure(video, run.t0_ms, end_wall, fault_wall)
        row.lost, row.down, row.expected_s = m["lost"], m["down"], m["expected"]
    row.callback = "yes (signed)" if run.rig.callback.valid() else (
        "unsigned/invalid" if run.rig.callback.got else "no")
    return row


def judge(row: Row) -> Row:
    if row.lost is None and row.target != "kept":
        row.verdict = "MISS"
        return row
    rec_lost = 0.0 if row.lost is None else row.lost - (row.down or 0.0)
    if row.target == "kept":  # gave up: UploadFailed, and the message says where the data is
        row.verdict = "PASS" if row.error == "UploadFailed" and "segments are kept in" in row.message else "MISS"
        return row
    if row.target == "0":
        ok = row.lost <= NOTHING_TOL_S
    else:  # at most one segment of what was recorded; the replacement's start-up is "down"
        ok = rec_lost <= SEGMENT_SECONDS + NOTHING_TOL_S
    ok = ok and row.plays == "yes"
    row.verdict = "PASS" if ok else "MISS"
    return row


# ---------------------------------------------------------------------------------------
# Faults on the local backend


def _local_process_fault(name: str, pages: PageServer, pick: Callable[[LocalRig, Run], list[int]]) -> Row:
    target = "<=1 seg" if name == "sigkill-recorder-tree" else "0"
    row = Row(name, "local", target)
    with workdir(prefix=f"faults-{name}-") as tmp:
        rig = LocalRig(Path(tmp), pages)
        try:
            rig.start()
            run = Run(rig)
            run.start()
            run.sleep_until(FAULT_AT_S)
            pids = pick(rig, run)
            fault_wall = time.time()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            row.note = f"killed {len(pids)} process(es)"
            run.sleep_until(RECORD_S)
            d = rig.describe(run.task)
            if d["Status"] in ("recording", "paused"):
                run.stop()
                end = run.stop_wall
            else:
                end = fault_wall  # the fault ended the recording
                row.note += f"; task was {d['Status']} at stop time"
            d = run.finished()
            finish_row(row, run, d, end, fault_wall)
        except Exception as exc:  # noqa: BLE001 - a failed run is a row, not a crash
            row.status, row.verdict = "ERROR", "MISS"
            row.note = f"{type(exc).__name__}: {exc}"[:300]
            traceback.print_exc()
            return row
        finally:
            rig.close()
    return judge(row)


def _by_comm(rig: LocalRig, names: tuple[str, ...], top_only: bool) -> list[int]:
    procs = marked_pids(rig.mark)
    pids = {p for p, _, c in procs if c in names}
    if top_only:  # the browser's main process: its parent is not itself a chrome process
        pids = {p for p, pp, c in procs if p in pids and pp not in pids}
    assert pids, f"no {names} process among {procs}"
    return sorted(pids)


def fault_sigkill_chromium(pages: PageServer) -> Row:
    return _local_process_fault("sigkill-chromium", pages,
                                lambda rig, run: _by_comm(rig, ("chromium", "chrome", "headless_shell"), True))


def fault_sigkill_ffmpeg(pages: PageServer) -> Row:
    return _local_process_fault("sigkill-ffmpeg", pages, lambda rig, run: _by_comm(rig, ("ffmpeg",), False))


def fault_sigkill_recorder_tree(pages: PageServer) -> Row:
    def pick(rig: LocalRig, run: Run) -> list[int]:
        procs = marked_pids(rig.mark)
        serve = rig.proc.pid if rig.proc else -1
        return [p for p, _, _ in procs if p != serve]  # everything but the adapter itself
    return _local_process_fault("sigkill-recorder-tree", pages, pick)


def fault_baseline(pages: PageServer) -> Row:
    return _local_process_fault("baseline (no fault)", pages, lambda rig, run: [])


def _delivery_fault(name: str, pages: PageServer, *, s3: bool, env: dict[str, str],
                    during: Callable[[LocalRig, Run, Row], None],
                    after: Callable[[LocalRig, Run, Row, dict], tuple[dict, Path | None]] | None = None,
                    target: str = "0") -> list[Row]:
    row = Row(name, "local", target)
    rows = [row]
    with workdir(prefix="faults-") as tmp:
        rig = LocalRig(Path(tmp), pages, s3=s3, env=env)
        try:
            rig.start()
            run = Run(rig)
            run.start(cos=s3)
            run.sleep_until(RECORD_S)
            run.stop()
            during(rig, run, row)
            d = run.finished(timeout=400)
            finish_row(row, run, d, run.stop_wall, None)
            judge(row)
            if after is not None:
                rows.append(after(rig, run, row, d))
        except Exception as exc:  # noqa: BLE001
            row.status, row.verdict = "ERROR", "MISS"
            row.note = f"{type(exc).__name__}: {exc}"[:300]
            traceback.print_exc()
        finally:
            rig.close()
    return rows


STORAGE_OUTAGE_S = float(os.environ.get("FAULTS_STORAGE_OUTAGE_S", "60"))


def fault_storage_down_temporarily(pages: PageServer) -> list[Row]:
    def during(rig: LocalRig, run: Run, row: Row) -> None:
        rig.proxy.down()
        t = time.time()
        time.sleep(STORAGE_OUTAGE_S)
        rig.proxy.up()
        row.note = f"S3 refused connections for {time.time() - t:.0f} s from Stop; RETRY_S=300"
    return _delivery_fault(f"storage down {STORAGE_OUTAGE_S:.0f} s during delivery", pages, s3=True,
                           env={"WEBRECORD_DELIVERY_RETRY_S": "300"}, during=during)


def fault_storage_down_for_good(pages: PageServer) -> list[Row]:
    def during(rig: LocalRig, run: Run, row: Row) -> None:
        rig.proxy.down()
        row.note = "S3 refused connections from Stop on; RETRY_S=20"

    def after(rig: LocalRig, run: Run, first: Row, d: dict) -> Row:
        row = Row("storage down for good -> `webrecord deliver --from-segments`", "local", "0")
        msg = d.get("Result", {}).get("ErrorMessage") or ""
        first.note += f"; message: {msg}"
        rig.proxy.up()
        before = len(rig.callback.got)
        tdir = rig.task_dir(run.task)
        new_work = rig.root / "redeliver"
        new_work.mkdir()
        p = subprocess.run([sys.executable, "-m", "webrecord.cli", "deliver", "--task",
                            str(tdir / "task.json"), "--work-dir", str(new_work),
                            "--status-file", str(tdir / "status.json"), "--from-segments"],
                           capture_output=True, text=True, timeout=300,
                           # as the local backend sets it for its recorders (loopback receiver)
                           env=dict(rig.env, WEBRECORD_EGRESS_ALLOW_LOOPBACK="true"))
        try:
            result = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {}
        row.status = f"exit {p.returncode}"
        row.error = result.get("ErrorCode") or ("-" if p.returncode == 0 else "?")
        row.note = f"exit {p.returncode}; " + (result.get("ErrorMessage") or "")[:200]
        first.lost = None  # nothing lost yet: judged on the re-delivery
        video = run.fetch_video({"Result": {"Videos": [{"FileURL": "s3://"}]}})
        if video is None:
            row.plays = "no video"
        else:
            ok, why = play_ok(video)
            row.plays = "yes" if ok else f"NO ({why[:60]})"
            row.video_s = probe_duration(video)
            m = measure(video, run.t0_ms, run.stop_wall, None)
            row.lost, row.down, row.expected_s = m["lost"], 0.0, m["expected"]
        row.callback = "yes (signed)" if any(g["valid"] for g in rig.callback.got[before:]) else "no"
        judge(row)
        if p.returncode != 0:
            row.verdict = "MISS"
        return row

    with workdir(prefix="faults-segstore-") as store:
        return _delivery_fault("storage down for good", pages, s3=True,
                               env={"WEBRECORD_DELIVERY_RETRY_S": "20",
                                    "WEBRECORD_SEGMENT_DIR": store},
                               during=during, after=after, target="kept")


CALLBACK_OUTAGE_S = 5.0


def fault_callback_down(pages: PageServer) -> list[Row]:
    def during(rig: LocalRig, run: Run, row: Row) -> None:
        rig.callback.down()
        time.sleep(CALLBACK_OUTAGE_S)
        rig.callback.up()
        row.note = f"receiver refused connections for {CALLBACK_OUTAGE_S:.0f} s from Stop (default callback retries)"
    return _delivery_fault(f"callback receiver down {CALLBACK_OUTAGE_S:.0f} s", pages, s3=False,
                           env={}, during=during)


def fault_callback_down_for_good(pages: PageServer) -> list[Row]:
    def during(rig: LocalRig, run: Run, row: Row) -> None:
        rig.callback.down()
        row.note = "receiver never came back: CallbackFailed expected, video delivered"
    return _delivery_fault("callback receiver down for good", pages, s3=False, env={},
                           during=during)


def fault_disk_full(pages: PageServer) -> Row:
    """The state dir (work dirs, segments) on a 64 MB tmpfs in a private mount namespace; a
    filler takes all its free space FAULT_AT_S after the first frame and stays."""
    row = Row("disk full", "local", "0")
    if shutil.which("unshare") is None:
        row.status, row.verdict, row.note = "not run", "-", "unshare missing"
        return row
    with workdir(prefix="faults-disk-") as tmp:
        root = Path(tmp)
        disk = root / "state"
        disk.mkdir()
        trigger = root / "fill-now"
        script = ('mount -t tmpfs -o size=64m tmpfs "$1" && d="$1" && shift && '
                  '{ (while [ ! -e "$TRIGGER" ]; do sleep 0.1; done; '
                  'dd if=/dev/zero of="$d/filler" bs=1M 2>/dev/null; touch "$TRIGGER.done") & exec "$@"; }')
        wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(disk)]
        rig = LocalRig(root, pages, env={"TRIGGER": str(trigger)}, wrap=wrap)
        try:
            rig.start()
            run = Run(rig)
            run.start()
            run.sleep_until(FAULT_AT_S)
            trigger.touch()
            fault_wall = time.time()
            wait(lambda: Path(str(trigger) + ".done").exists(), bool, 30, "disk filled")
            run.sleep_until(RECORD_S)
            d = rig.describe(run.task)
            if d["Status"] in ("recording", "paused"):
                run.stop()
                end = run.stop_wall
                row.note = "task still recording at Stop time"
            else:
                end = fault_wall
                row.note = f"task {d['Status']} by itself after the disk filled"
            d = run.finished()
            finish_row(row, run, d, end, None)
            row.note += "; " + (d.get("Result", {}).get("ErrorMessage") or "")[:200]
        except Exception as exc:  # noqa: BLE001
            row.status, row.verdict = "ERROR", "MISS"
            row.note = f"{type(exc).__name__}: {exc}"[:300]
            traceback.print_exc()
            return row
        finally:
            rig.close()
    return judge(row)


# ---------------------------------------------------------------------------------------
# Faults on the operator: `webrecord operator` against a real kube-apiserver + etcd (envtest
# binaries, tests/controlplane), the recorder pod run as a local process with exactly the pod's
# command, args, env and mounted files by a stand-in kubelet (tests/operator/kubelet.py), S3 on
# moto, the callback receiver above.

OP_ROOT = ROOT / "tests" / "operator"
UNREACHABLE_S = float(os.environ.get("FAULTS_UNREACHABLE_S", "180"))


class OpRig:
    def __init__(self, root: Path, pages: PageServer) -> None:
        for p in (str(ROOT / "tests"), str(OP_ROOT)):
            if p not in sys.path:
                sys.path.insert(0, p)
        os.environ.setdefault("KUBEBUILDER_ASSETS",
                              str(Path.home() / ".cache/webrecord/envtest/v1.36.3/bin"))
        from controlplane.assets import find_assets
        from controlplane.controlplane import ControlPlane
        from opkit import Kube, wait_for as op_wait
        import kubelet as kl
        self.kl, self.op_wait = kl, op_wait
        self.root, self.pages = root, pages
        self.mark = uuid.uuid4().hex
        self.cp = ControlPlane(find_assets(build=False), controller_manager=False,
                               workdir=root / "cp").start()
        self.cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        for name in ("webrecordings.webrecord.io",):
            op_wait(lambda: self.cp.kubectl("get", "crd", name, "-o",
                                            'jsonpath={.status.conditions[?(@.type=="Established")].status}',
                                            check=False).stdout.strip() == "True", 60, "CRD")
        self.ns = self.cp.create_namespace("faults")
        self.kube = Kube(self.cp, self.ns)
        self.moto, moto_endpoint = start_moto()
        self.moto_endpoint = moto_endpoint
        self.s3 = kl.s3(moto_endpoint)
        self.bucket = kl.BUCKET
        self.s3.create_bucket(Bucket=self.bucket)
        self.kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "storage"},
                         "stringData": {"AWS_ACCESS_KEY_ID": kl.KEY, "AWS_SECRET_ACCESS_KEY": kl.KEY,
                                        "AWS_DEFAULT_REGION": "us-east-1"}})
        self.callback = CallbackReceiver()
        pod_root = Path(tempfile.mkdtemp(prefix="wr-pod-", dir="/tmp"))  # short unix socket paths
        self.pod_root = pod_root
        self.work = pod_root / "data"
        self.env = {
            **self.cp.env, MARK: self.mark, "PYTHONPATH": str(ROOT / "operator"),
            "WEBRECORD_OPERATOR_POLL_INTERVAL_S": "0.5",
            "WEBRECORD_OPERATOR_RESTART_BACKOFF_S": "0.5",
            "WEBRECORD_OPERATOR_TTL_SECONDS_AFTER_FINISHED": "0",
            "WEBRECORD_EGRESS_ALLOW_LOOPBACK": "true",
            "WEBRECORD_CALLBACK_SECRET": CALLBACK_SECRET,
            "WEBRECORD_LOG_LEVEL": "INFO",
            "WEBRECORD_OPERATOR_CONTROL_PORT": str(free_port()),
            "WEBRECORD_OPERATOR_MOUNT_ROOT": str(pod_root / "etc"),
            "WEBRECORD_OPERATOR_WORK_DIR": str(self.work),
            "WEBRECORD_OPERATOR_TMP_DIR": str(pod_root / "tmp"),
            "WEBRECORD_OPERATOR_TERMINATION_LOG": str(pod_root / "termination-log"),
            "WEBRECORD_OPERATOR_STORAGE_SECRET": "storage",
            "WEBRECORD_OPERATOR_RECORDER_ENV": json.dumps({
                "WEBRECORD_S3_ENDPOINT_URL": moto_endpoint, "WEBRECORD_S3_ADDRESSING_STYLE": "path",
                "WEBRECORD_EGRESS_ALLOW_LOOPBACK": "true",
                "WEBRECORD_SEGMENT_SECONDS": str(SEGMENT_SECONDS),
                "WEBRECORD_CALLBACK_SECRET": CALLBACK_SECRET,
                MARK: self.mark,
            }),
        }
        self.op: subprocess.Popen | None = None
        self.kubelets: list[Any] = []

    def start_operator(self) -> None:
        log = open(self.root / "operator.log", "ab")
        self.op = subprocess.Popen(
            [sys.executable, "-m", "webrecord.controller", "operator", "--standalone",
             "--namespace", self.ns], env=self.env, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def kill_operator(self) -> None:
        if self.op and self.op.poll() is None:
            os.killpg(self.op.pid, signal.SIGKILL)
            self.op.wait(10)

    def run_pod(self, name: str, old_uid: str | None = None) -> Any:
        self.op_wait(lambda: (p := self.kube.get("pod", name)) and p["metadata"]["uid"] != old_uid,
                     120, "the recorder pod")
        k = self.kl.Kubelet(self.kube, name)
        k.log = self.root / f"pod-{len(self.kubelets)}.log"
        shutil.rmtree(self.work, ignore_errors=True)  # a new pod has a new emptyDir
        k.start()
        self.kubelets.append(k)
        return k

    def close(self) -> None:
        for k in self.kubelets:
            with contextlib.suppress(Exception):
                k.kill()
        if self.op and self.op.poll() is None:
            self.op.send_signal(signal.SIGINT)
            try:
                self.op.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.op.pid, signal.SIGKILL)
        kill_marked(self.mark)
        self.callback.down()
        stop_process(self.moto)
        self.cp.stop()
        shutil.rmtree(self.pod_root, ignore_errors=True)


def _pod_processes_exit(k: Any, sig: int, timeout: float = 60) -> int | None:
    """What the kubelet does to a pod that goes: `sig` to the container's process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(k.proc.pid, sig)
    try:
        return k.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(k.proc.pid, signal.SIGKILL)
        return k.proc.wait(10)


def _operator_fault(name: str, pages: PageServer, target: str,
                    inject: Callable[[OpRig, "OpRun", Row], float | None],
                    record_s: float = RECORD_S) -> Row:
    row = Row(name, "operator (envtest)", target)
    with workdir(prefix="faults-op-") as tmp:
        rig = None
        try:
            rig = OpRig(Path(tmp), pages)
            rig.start_operator()
            run = OpRun(rig)
            run.start()
            fault_wall = inject(rig, run, row)
            run.sleep_until(record_s)
            st = rig.kube.status("wr")
            end = time.time()
            if st.get("phase") in ("recording", "paused"):
                run.stop_wall = time.time()
                rig.kube.patch_spec("wr", {"action": "Stop", "actionSeq": 1})
                end = run.stop_wall
            else:
                row.note += f"; task {st.get('phase')} at Stop time"
            k = rig.kubelets[-1]
            code = k.report_exit(timeout=240)
            st = rig.kube.wait_phase("wr", "finished", timeout=120)
            row.note += f"; restarts={st.get('restarts', 0)}, recorder exit {code}"
            d = {"Status": st.get("phase"), "Result": {
                "ErrorCode": (st.get("result") or {}).get("errorCode"),
                "ErrorMessage": (st.get("result") or {}).get("errorMessage"),
                "Videos": [{"FileURL": "s3://"}] if (st.get("result") or {}).get("videos") else []}}
            finish_row(row, run, d, end, fault_wall)
        except Exception as exc:  # noqa: BLE001
            row.status, row.verdict = "ERROR", "MISS"
            row.note = (row.note + f"; {type(exc).__name__}: {exc}")[:400]
            traceback.print_exc()
            return row
        finally:
            if rig is not None:
                rig.close()
    return judge(row)


class OpRun(Run):
    """One WebRecording `wr` of the frame-code page, output to S3 (moto), segments there too."""

    def start(self, cos: bool = True) -> None:
        rig: OpRig = self.rig  # type: ignore[assignment]
        run_id = uuid.uuid4().hex[:8]
        url = rig.pages.url(f"frames.html?t0={self.t0_ms}&id={run_id}")
        rig.kube.apply({"apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording",
                        "metadata": {"name": "wr"},
                        "spec": {"recordUrl": url, "width": 640, "height": 360,
                                 "maxDurationLimit": 900, "storageType": "cos",
                                 "callbackUrl": rig.callback.url,
                                 "output": {"cos": {"bucket": rig.bucket, "region": "us-east-1",
                                                    "targetDir": "faults"}}}})
        rig.run_pod("wr-recorder")
        rig.kube.wait_phase("wr", "recording", timeout=120)
        t = rig.pages.wait_shown(run_id, 60)
        assert t is not None, "page never shown"
        self.shown = time.time() - (time.monotonic() - t)


def fault_operator_killed(pages: PageServer) -> Row:
    def inject(rig: OpRig, run: OpRun, row: Row) -> None:
        run.sleep_until(FAULT_AT_S)
        rig.kill_operator()
        time.sleep(3.0)  # a Deployment's replacement starts a few seconds later
        rig.start_operator()
        row.note = "operator SIGKILLed, a new one started 3 s later"
        return None
    return _operator_fault("operator killed (SIGKILL, new one 3 s later)", pages, "0", inject)


def fault_apiserver_restarted(pages: PageServer) -> Row:
    def inject(rig: OpRig, run: OpRun, row: Row) -> None:
        run.sleep_until(FAULT_AT_S)
        [api] = [p for p in rig.cp._processes if p.name == "kube-apiserver"]
        argv = list(api.popen.args)
        api.stop(grace=5)
        t = time.time()
        time.sleep(5.0)
        rig.cp._processes.remove(api)
        new = rig.cp._spawn("kube-apiserver", argv)
        rig.cp._wait(new, "kube-apiserver /readyz", lambda: rig.cp._get(f"{rig.cp.server}/readyz") == b"ok")
        row.note = f"kube-apiserver stopped, back (ready) after {time.time() - t:.0f} s"
        return None
    return _operator_fault("API server restarted", pages, "0", inject)


def _unreachable(pages: PageServer, hang: bool, seconds: float) -> Row:
    def inject(rig: OpRig, run: OpRun, row: Row) -> None:
        run.sleep_until(4.0)
        rule = None
        if hang:  # SYNs to the pod's address are dropped (iptables): the operator's calls time out
            ip = "127.0.0.2"
            rule = ["INPUT", "-d", ip, "-p", "tcp", "--dport", rig.env["WEBRECORD_OPERATOR_CONTROL_PORT"],
                    "-j", "DROP"]
            subprocess.run(["iptables", "-I", *rule], check=True, timeout=30)
        else:  # an address whose connects are refused (this machine's gateway answers RST)
            ip = "192.0.2.1"
        rig.kube.set_pod_status("wr-recorder", {"podIP": ip, "podIPs": [{"ip": ip}]})
        try:
            time.sleep(seconds)
            rig.kube.set_pod_status("wr-recorder", {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]})
        finally:
            if rule:
                subprocess.run(["iptables", "-D", *rule], check=False, timeout=30)
        phase = rig.kube.status("wr").get("phase")
        pod = rig.kube.get("pod", "wr-recorder")
        how = "its SYNs dropped by iptables" if hang else "refusing connections"
        row.note = (f"podIP {ip}, {how}, for {seconds:.0f} s while the recorder records; after it: "
                    f"phase {phase}, pod {'kept' if pod else 'DELETED'}")
        return None
    kind = "calls hang" if hang else "connection refused"
    return _operator_fault(f"recorder unreachable {seconds:.0f} s ({kind})", pages, "0", inject,
                           record_s=seconds + 12.0)


def fault_unreachable(pages: PageServer) -> Row:
    return _unreachable(pages, False, UNREACHABLE_S)


def fault_unreachable_hang(pages: PageServer) -> Row:
    return _unreachable(pages, True, float(os.environ.get("FAULTS_UNREACHABLE_HANG_S", "180")))


def _replaced(name: str, pages: PageServer, go: Callable[[OpRig], None]) -> Row:
    def inject(rig: OpRig, run: OpRun, row: Row) -> float:
        run.sleep_until(FAULT_AT_S)
        old = rig.kubelets[-1]
        uid = old.pod["metadata"]["uid"]
        go(rig)
        fault_wall = time.time()  # the recorder stops capturing here: what follows is "down"
        code = _pod_processes_exit(old, signal.SIGTERM)  # the kubelet stops the container
        # (the pod object is gone already: no node was ever bound to it, so no grace period)
        rig.run_pod("wr-recorder", old_uid=uid)
        row.note = f"old recorder exit {code} on SIGTERM"
        return fault_wall
    return _operator_fault(name, pages, "<=1 seg", inject)


def fault_pod_deleted(pages: PageServer) -> Row:
    return _replaced("recorder pod deleted", pages,
                     lambda rig: rig.kube.kubectl("delete", "pod", "wr-recorder", "--wait=false"))


def fault_pod_evicted(pages: PageServer) -> Row:
    def evict(rig: OpRig) -> None:
        body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                           "metadata": {"name": "wr-recorder", "namespace": rig.ns}})
        path = f"/api/v1/namespaces/{rig.ns}/pods/wr-recorder/eviction"
        out = rig.cp.kubectl("create", "--raw", path, "-f", "-", input=body, check=False)
        assert out.returncode == 0, out.stderr
    return _replaced("pod evicted (Eviction API)", pages, evict)


# ---------------------------------------------------------------------------------------
# Faults on the real one-node cluster (tests/node): charts/webrecord installed with helm into a
# restricted namespace, the frame page served by a pod, S3 (moto) and the callback receiver on
# this machine's node address, recorder pods run by the real kubelet on containerd.

NODE_RELEASE = "wr-faults"


class NodeRig:
    def __init__(self, cluster: Any, root: Path) -> None:
        from node.flows import (BUCKET, CHART, Kube, chart_values, cluster_ranges,
                                host_for_pods, page_server_manifests, pull_policy, s3_client)
        self.cluster, self.root = cluster, root
        self.helm = subprocess.run(["bash", str(ROOT / "tests" / "operator" / "helm.sh")], check=True,
                                   capture_output=True, text=True, timeout=600).stdout.strip()
        host = host_for_pods(cluster)
        self.moto, self.s3_endpoint = start_moto(host=host)
        self.s3 = s3_client(self.s3_endpoint)
        self.bucket = BUCKET
        self.s3.create_bucket(Bucket=BUCKET)
        self.callback = CallbackReceiver(host=host)
        self.ns = cluster.create_namespace("wr-faults")
        self.kube = Kube(cluster, self.ns)
        self.installed = False
        import yaml
        pages = {"frames.html": (ROOT / "bench/recorder/pages/frames.html").read_text()}
        self.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(
            page_server_manifests(cluster.image, pull_policy(cluster), pages)))
        pages_ip = self.kube.get("service", "pages")["spec"]["clusterIP"]
        pod_cidrs, service_cidrs = cluster_ranges(cluster)
        egress = {"podCIDRs": pod_cidrs, "serviceCIDRs": service_cidrs,
                  "allowCIDRs": [f"{pages_ip}/32"]}
        values = chart_values(cluster, self.s3_endpoint, CALLBACK_SECRET, "faults-app", egress)
        values["recorder"]["env"]["WEBRECORD_SEGMENT_SECONDS"] = str(SEGMENT_SECONDS)
        vf = root / "values.yaml"
        vf.write_text(yaml.safe_dump(values))
        out = subprocess.run([self.helm, "install", NODE_RELEASE, str(CHART), "-n", self.ns, "-f",
                              str(vf), "--wait", "--timeout", "8m"], capture_output=True, text=True,
                             env=cluster.env, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        self.installed = True
        self.kube.kubectl("wait", "--for=condition=Ready", "pod/pages", "--timeout=180s", timeout=200)
        self.page = f"http://pages.{self.ns}.svc:8000/frames.html"

    def close(self) -> None:
        self.kube.kubectl("delete", "webrecordings", "--all", "--wait=true", "--timeout=120s",
                          check=False, timeout=150)
        if self.installed:
            subprocess.run([self.helm, "uninstall", NODE_RELEASE, "-n", self.ns, "--wait"],
                           capture_output=True, env=self.cluster.env, timeout=300, check=False)
        self.cluster.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
        self.callback.down()
        stop_process(self.moto)


class NodeRun(Run):
    def start(self, cos: bool = True) -> None:
        rig: NodeRig = self.rig  # type: ignore[assignment]
        self.name = f"f{uuid.uuid4().hex[:6]}"
        rig.kube.apply({"apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording",
                        "metadata": {"name": self.name},
                        "spec": {"recordUrl": f"{rig.page}?t0={self.t0_ms}", "width": 640,
                                 "height": 360, "maxDurationLimit": 900, "storageType": "cos",
                                 "callbackUrl": rig.callback.url,
                                 "output": {"cos": {"bucket": rig.bucket, "region": "us-east-1",
                                                    "targetDir": self.name}}}})
        deadline = time.monotonic() + 240
        while rig.kube.status(self.name).get("phase") != "recording":
            assert time.monotonic() < deadline, f"not recording: {rig.kube.status(self.name)}"
            time.sleep(0.3)
        self.shown = time.time() + 1.0  # no beacon from a pod: recording + ~1 s to the first frame

    def fetch_video(self, d: dict) -> Path | None:
        rig: NodeRig = self.rig  # type: ignore[assignment]
        if not (d.get("Result") or {}).get("Videos"):
            return None
        keys = [o["Key"] for o in rig.s3.list_objects_v2(Bucket=rig.bucket, Prefix=f"{self.name}/")
                .get("Contents", []) if o["Key"].endswith(".mp4")]
        if not keys:
            return None
        dest = rig.root / f"{self.name}.mp4"
        rig.s3.download_file(rig.bucket, keys[-1], str(dest))
        return dest


def _node_fault(rig: NodeRig, name: str, target: str, go: Callable[[NodeRig, NodeRun], str]) -> Row:
    row = Row(name, "node cluster", target)
    rig.callback.got.clear()
    try:
        run = NodeRun(rig)  # type: ignore[arg-type]
        run.start()
        run.sleep_until(FAULT_AT_S)
        pod = f"{run.name}-recorder"
        old_uid = (rig.kube.get("pod", pod) or {}).get("metadata", {}).get("uid")
        fault_wall = time.time()
        row.note = go(rig, run)
        run.sleep_until(RECORD_S)
        if target != "0":  # a replacement pod must be up and recording before the Stop
            deadline = time.monotonic() + 240
            while True:
                p = rig.kube.get("pod", pod) or {}
                ready = any(c.get("ready") for c in (p.get("status") or {}).get("containerStatuses") or [])
                if p and p["metadata"]["uid"] != old_uid and ready:
                    break
                if time.monotonic() > deadline:
                    row.note += "; no ready replacement pod within 240 s"
                    break
                time.sleep(0.5)
            t_ready = time.time()
            time.sleep(4.0)
            row.note += f"; replacement ready {t_ready - fault_wall:.0f} s after the fault"
        st = rig.kube.status(run.name)
        end = fault_wall
        if st.get("phase") in ("recording", "paused"):
            run.stop_wall = end = time.time()
            rig.kube.patch_spec(run.name, {"action": "Stop", "actionSeq": 1})
        else:
            row.note += f"; phase {st.get('phase')} at Stop time"
        deadline = time.monotonic() + 300
        while (st := rig.kube.status(run.name)).get("phase") != "finished":
            assert time.monotonic() < deadline, f"not finished: {st}"
            time.sleep(0.5)
        time.sleep(1.0)  # the callback is sent before `finished` is written; let it land
        res = st.get("result") or {}
        row.note += f"; restarts={st.get('restarts', 0)}"
        d = {"Status": st.get("phase"), "Result": {"ErrorCode": res.get("errorCode"),
                                                   "ErrorMessage": res.get("errorMessage"),
                                                   "Videos": res.get("videos") or []}}
        finish_row(row, run, d, end, fault_wall)
    except Exception as exc:  # noqa: BLE001
        row.status, row.verdict = "ERROR", "MISS"
        row.note = (row.note + f"; {type(exc).__name__}: {exc}")[:400]
        traceback.print_exc()
        return row
    return judge(row)


def _pod_delete(rig: NodeRig, run: NodeRun) -> str:
    rig.kube.kubectl("delete", "pod", f"{run.name}-recorder", "--wait=false")
    return "kubectl delete pod (default grace period)"


def _pod_evict(rig: NodeRig, run: NodeRun) -> str:
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                       "metadata": {"name": f"{run.name}-recorder", "namespace": rig.ns}})
    out = rig.kube.kubectl("create", "--raw",
                           f"/api/v1/namespaces/{rig.ns}/pods/{run.name}-recorder/eviction",
                           "-f", "-", input=body, check=False)
    assert out.returncode == 0, out.stderr
    return "POST pods/<recorder>/eviction (policy/v1)"


def _operator_pods_kill(rig: NodeRig, run: NodeRun) -> str:
    rig.kube.kubectl("delete", "pod", "-l", "app.kubernetes.io/component=operator",
                     "--grace-period=0", "--force", "--wait=false")
    return "both operator pods force-deleted (grace 0); the Deployment starts new ones"


def fault_node(pages: PageServer) -> list[Row]:
    names = [("recorder pod deleted (real node)", "<=1 seg", _pod_delete),
             ("pod evicted, Eviction API (real node)", "<=1 seg", _pod_evict),
             ("operator pods killed (real node)", "0", _operator_pods_kill)]
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from node.cluster_ctl import NodeCluster
    except Exception as exc:  # noqa: BLE001
        return [Row(n, "node cluster", t, status="not run", verdict="-", note=f"no node tooling: {exc}")
                for n, t, _ in names]
    rows: list[Row] = []
    with workdir(prefix="faults-node-") as tmp:
        try:
            with NodeCluster.from_environment() as cluster:
                rig = None
                try:
                    rig = NodeRig(cluster, Path(tmp))
                    for n, t, go in names:
                        print(f"#   {n}", file=sys.stderr, flush=True)
                        rows.append(_node_fault(rig, n, t, go))
                finally:
                    if rig is not None:
                        rig.close()
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            done = {r.fault for r in rows}
            rows += [Row(n, "node cluster", t, status="not run", verdict="-",
                         note=f"node setup failed: {type(exc).__name__}: {exc}"[:300])
                     for n, t, _ in names if n not in done]
    return rows


# ---------------------------------------------------------------------------------------


def not_run(name: str, backend: str, target: str, reason: str) -> Callable[[PageServer], Row]:
    def f(pages: PageServer) -> Row:
        return Row(name, backend, target, status="not run", verdict="-", note=reason)
    return f


FAULTS: list[tuple[str, Callable[[PageServer], Row | list[Row]]]] = [
    ("baseline", fault_baseline),
    ("chromium", fault_sigkill_chromium),
    ("ffmpeg", fault_sigkill_ffmpeg),
    ("recorder", fault_sigkill_recorder_tree),
    ("storage-60s", fault_storage_down_temporarily),
    ("storage-forever", fault_storage_down_for_good),
    ("callback", fault_callback_down),
    ("callback-forever", fault_callback_down_for_good),
    ("disk-full", fault_disk_full),
    ("operator-killed", fault_operator_killed),
    ("apiserver-restart", fault_apiserver_restarted),
    ("pod-deleted", fault_pod_deleted),
    ("pod-evicted", fault_pod_evicted),
    ("unreachable", fault_unreachable),
    ("unreachable-hang", fault_unreachable_hang),
    ("node", fault_node),
]


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


HEADER = ("| fault | backend | lost s (down s) | video s / expected s | Status | ErrorCode | plays "
          "| callback | target | result | notes |")


def format_row(r: Row) -> str:
    lost = "-" if r.lost is None else f"{r.lost:.1f} ({fmt(r.down)})"
    vid = "-" if r.video_s is None else f"{r.video_s:.1f} / {fmt(r.expected_s)}"
    tgt = {"0": "0 s lost", "kept": "UploadFailed + where kept"}.get(
        r.target, f"<= 1 segment ({SEGMENT_SECONDS} s)")
    return (f"| {r.fault} | {r.backend} | {lost} | {vid} | {r.status} | {r.error} | {r.plays} | "
            f"{r.callback} | {tgt} | {r.verdict} | {r.note.replace('|', '/')} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="run this fault (repeatable); see --list")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory (logs)")
    args = ap.parse_args()
    global KEEP
    KEEP = args.keep
    if args.list:
        for name, fn in FAULTS:
            print(name)
        return 0
    chosen = [(n, f) for n, f in FAULTS if not args.only or n in args.only]
    if not chosen:
        ap.error(f"unknown fault {args.only}; --list")
    rows: list[Row] = []
    with PageServer() as pages:
        for name, fn in chosen:
            print(f"# {name} ...", file=sys.stderr, flush=True)
            t = time.monotonic()
            out = fn(pages)
            got = out if isinstance(out, list) else [out]
            for r in got:
                print(format_row(r), file=sys.stderr, flush=True)
            print(f"# {name}: {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
            rows.extend(got)
    print(f"segment rotation WEBRECORD_SEGMENT_SECONDS={SEGMENT_SECONDS}; {RECORD_S:.0f} s of page "
          f"per run, fault at {FAULT_AT_S:.0f} s; 'nothing lost' allows {NOTHING_TOL_S} s")
    print(HEADER)
    print("|" + "---|" * 11)
    for r in rows:
        print(format_row(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

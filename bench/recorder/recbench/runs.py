"""One measured run: the recorder (`webrecord record` / `webrecord recorder`) or the bare baseline,
with the CPU of its whole process tree sampled while it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from recbench import proctree
from recbench.bare import BareCapture, chromium_command

FPS = 30


def webrecord_cmd() -> list[str]:
    return [sys.executable, "-m", "webrecord.cli"]


@dataclass
class Run:
    name: str
    kind: str  # "recorder" | "baseline"
    width: int
    height: int
    duration: float  # requested recording seconds
    out: Path
    launch_wall: float  # time.time() when the command was launched (the page's t0)
    launch_mono: float
    exit_code: int | None = None
    wall_s: float = 0.0  # launch to exit
    total_cpu_s: float = 0.0  # rusage of the whole tree, start-up and shutdown included
    sampler: proctree.TreeSampler | None = None
    chromium_argv: list[str] = field(default_factory=list)
    ffmpeg_argv: list[str] = field(default_factory=list)
    log: str = ""
    extra: dict = field(default_factory=dict)
    busy_at_launch: float = field(default_factory=proctree.machine_busy)
    other_load: float | None = None  # cores busy with other work while this ran (noise)

    busy_s: float | None = None  # machine-wide busy CPU seconds while this ran

    def close_accounting(self) -> None:
        if self.busy_s is None:
            self.busy_s = proctree.machine_busy() - self.busy_at_launch
        if self.wall_s > 0:
            self.other_load = max(0.0, self.busy_s - self.total_cpu_s) / self.wall_s

    def mono_of_clock(self, clock_ms: int) -> float:
        """Monotonic time of a page clock value (ms since launch_wall)."""
        return self.launch_mono + clock_ms / 1000.0

    def steady_cpu(self, first_clock_ms: int, last_clock_ms: int) -> tuple[float, float]:
        """(CPU s, wall s) of the tree while recording: from 3 s after the first captured page
        frame to 1 s before the last (less in short runs: 25% and 10% of the span)."""
        assert self.sampler is not None
        span = (last_clock_ms - first_clock_ms) / 1000
        head, tail = min(3.0, 0.25 * span), min(1.0, 0.1 * span)
        t0 = self.mono_of_clock(first_clock_ms) + head
        t1 = self.mono_of_clock(last_clock_ms) - tail
        self.extra["steady_window_s"] = round(t1 - t0, 2)
        self.extra["steady_clock_ms"] = (first_clock_ms + head * 1000, last_clock_ms - tail * 1000)
        cpu, wall = self.sampler.window(t0, t1)
        if wall > 0:
            self.extra["steady_cpu_per_s_by_process"] = {
                k: round(v / wall, 4) for k, v in self.sampler.by_process(t0, t1).items()}
        return cpu, wall


def _recorder_chromium(sampler: proctree.TreeSampler) -> list[str]:
    """The browser process's command line: the Chromium binary that Playwright started (it has
    --remote-debugging-pipe; its children have --type=, crashpad is another binary)."""
    for argv in sampler.seen.values():
        if argv and os.path.basename(argv[0]) in ("chromium", "chrome", "chromium-browser") \
                and "--remote-debugging-pipe" in argv \
                and not any(a.startswith("--type=") for a in argv):
            return argv
    return []


def _recorder_ffmpeg(sampler: proctree.TreeSampler) -> list[str]:
    for argv in sampler.seen.values():
        if argv and os.path.basename(argv[0]) == "ffmpeg" and "x11grab" in argv:
            return argv
    return []


def _finish(run: Run, proc: subprocess.Popen, cpu_before: float, timeout: float) -> None:
    try:
        run.exit_code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proctree.kill_tree([proc.pid], timeout=5)
        run.exit_code = proc.wait()
        run.extra["timed_out"] = True
    run.wall_s = time.monotonic() - run.launch_mono
    assert run.sampler is not None
    # Whatever of the tree outlives the recorder is a leak: give it 2 s, then kill and count it.
    leftovers = proctree.reap_orphans(run.sampler.keys(), timeout=2)
    run.sampler.stop()
    if leftovers:
        run.extra["killed_leftovers"] = len(leftovers)
    run.total_cpu_s = proctree.children_cpu() - cpu_before
    run.close_accounting()
    run.extra["sampled_cpu_by_process"] = {
        k: round(v, 3) for k, v in run.sampler.by_process(0, float("inf")).items() if v >= 0.005}
    run.chromium_argv = _recorder_chromium(run.sampler)
    run.ffmpeg_argv = _recorder_ffmpeg(run.sampler)


class RecordProcess:
    """`webrecord record URL -o OUT --width W --height H --duration S`, started now."""

    def __init__(self, name: str, page_url: str, width: int, height: int, duration: float,
                 work: Path, fps: int = FPS) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.cpu_before = proctree.children_cpu()
        launch_wall, launch_mono = time.time(), time.monotonic()
        url = _with_t0(page_url, launch_wall, name)
        out = work / f"{name}.mp4"
        self.run = Run(name=name, kind="recorder", width=width, height=height, duration=duration,
                       out=out, launch_wall=launch_wall, launch_mono=launch_mono,
                       log=str(work / f"{name}.log"))
        argv = [*webrecord_cmd(), "record", url, "-o", str(out), "--width", str(width),
                "--height", str(height), "--duration", f"{duration:g}"]
        self.run.extra["argv"] = argv
        with open(self.run.log, "wb") as log:
            # The frame rate as a deployment sets it (the baseline copies the resulting argv).
            env = dict(os.environ, WEBRECORD_FPS=str(fps))
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, cwd=work, env=env)
        proctree.LAUNCHED.add(self.proc.pid)
        self.run.sampler = proctree.TreeSampler(self.proc.pid)
        self.run.sampler.start()

    def wait(self, timeout: float, concurrent: bool = False) -> Run:
        _finish(self.run, self.proc, self.cpu_before, timeout)
        if concurrent:
            # rusage of our children would include the sibling recordings: use the samples.
            assert self.run.sampler is not None
            self.run.total_cpu_s = self.run.sampler.cpu_between(0, float("inf"))
            self.run.extra["cpu_source"] = "sampled (concurrent run)"
            self.run.close_accounting()  # other load now includes the sibling recordings
        return self.run

    def kill(self) -> None:
        if self.proc.poll() is None:
            proctree.kill_tree([self.proc.pid], timeout=3)
            self.proc.wait()


def record(name: str, page_url: str, width: int, height: int, duration: float, work: Path,
           fps: int = FPS) -> Run:
    rp = RecordProcess(name, page_url, width, height, duration, work, fps)
    try:
        return rp.wait(duration + 90)
    finally:
        rp.kill()


def baseline(name: str, page_url: str, width: int, height: int, duration: float, work: Path,
             recorder_chromium: list[str] | None, wait_shown, audio: bool = False,
             attempts: int = 2, recorder_ffmpeg: list[str] | None = None) -> Run:
    """The bare capture: ffmpeg starts with Chromium and runs until `duration` s after the page
    showed its first frame (wait_shown(run, timeout) -> monotonic time or None); stop = 'q'.
    A Chromium that never shows the page (seen rarely under heavy load) is retried once."""
    for attempt in range(1, attempts + 1):
        try:
            run = _baseline_once(f"{name}" if attempt == 1 else f"{name}-retry{attempt - 1}",
                                 page_url, width, height, duration, work, recorder_chromium,
                                 wait_shown, audio, recorder_ffmpeg)
            run.extra["attempt"] = attempt
            return run
        except PageNotShown:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


class PageNotShown(RuntimeError):
    pass


def _baseline_once(name: str, page_url: str, width: int, height: int, duration: float, work: Path,
                   recorder_chromium: list[str] | None, wait_shown, audio: bool,
                   recorder_ffmpeg: list[str] | None) -> Run:
    work.mkdir(parents=True, exist_ok=True)
    cpu_before = proctree.children_cpu()
    launch_wall, launch_mono = time.time(), time.monotonic()
    out = work / f"{name}.ts"
    run = Run(name=name, kind="baseline", width=width, height=height, duration=duration, out=out,
              launch_wall=launch_wall, launch_mono=launch_mono, log=str(work / f"{name}-logs"))
    cap = BareCapture(_with_t0(page_url, launch_wall, name), width, height, out,
                      chromium_command(recorder_chromium, width, height), audio=audio,
                      log_dir=work / f"{name}-logs", ffmpeg_template=recorder_ffmpeg)
    # Everything this process starts from now on is the baseline's tree (our new children).
    run.sampler = proctree.TreeSampler(os.getpid())
    run.sampler.roots.clear()
    try:
        run.sampler.start()
        cap.start()
        shown = wait_shown(name, 30)
        if shown is None:
            raise PageNotShown(f"{name}: the page never showed (logs in {run.log})")
        time.sleep(max(0.0, shown + duration - time.monotonic()))
        run.extra["stop_latency_s"] = cap.stop_capture()
    finally:
        cap.close()
        proctree.kill_keys(run.sampler.keys())  # e.g. crashpad handlers re-parented to us
        run.wall_s = time.monotonic() - launch_mono
        run.sampler.stop()
        run.total_cpu_s = proctree.children_cpu() - cpu_before
        run.close_accounting()
        run.extra["sampled_cpu_by_process"] = {
            k: round(v, 3) for k, v in run.sampler.by_process(0, float("inf")).items() if v >= 0.005}
        run.chromium_argv = list(cap.chromium_argv)
        run.ffmpeg_argv = list(cap.ffmpeg_argv)
        run.exit_code = cap.ffmpeg.returncode if cap.ffmpeg else None
    return run


def _with_t0(url: str, launch_wall: float, run: str = "") -> str:
    """The page URL with its clock origin (the launch time) and the run's name (for its beacon)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}t0={int(launch_wall * 1000)}&id={run}"


# ---------------------------------------------------------------------------- task mode

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _wait_for(predicate, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def task_run(name: str, page_url: str, width: int, height: int, seconds: float, work: Path,
             output: dict | None = None) -> Run:
    """`webrecord recorder --task` with a control endpoint: record `seconds` (from the status
    turning `recording`), POST Stop and time the way to `finished`."""
    work.mkdir(parents=True, exist_ok=True)
    work_dir = work / f"{name}-work"
    delivered = work / f"{name}-delivered"
    delivered.mkdir(exist_ok=True)
    token = "bench-token"
    (work / "token").write_text(token + "\n")
    status_file, port_file = work / f"{name}-status.json", work / f"{name}-port"
    cpu_before = proctree.children_cpu()
    launch_wall, launch_mono = time.time(), time.monotonic()
    task = {"taskId": name, "createTime": int(launch_wall),
            "spec": {"recordUrl": _with_t0(page_url, launch_wall, name), "width": width,
                     "height": height, "maxDurationLimit": int(seconds) + 600, "storageType": "cfs",
                     **({"output": output} if output else {})}}
    (work / f"{name}-task.json").write_text(json.dumps(task))
    argv = [*webrecord_cmd(), "recorder", "--task", str(work / f"{name}-task.json"),
            "--work-dir", str(work_dir), "--control-host", "127.0.0.1", "--control-port", "0",
            "--token-file", str(work / "token"), "--status-file", str(status_file),
            "--port-file", str(port_file)]
    # The bench plays the local backend, which lets recorders reach pages on loopback.
    env = dict(os.environ, WEBRECORD_OUTPUT_DIR=str(delivered),
               WEBRECORD_EGRESS_ALLOW_LOOPBACK="true")
    run = Run(name=name, kind="recorder", width=width, height=height, duration=seconds,
              out=Path(), launch_wall=launch_wall, launch_mono=launch_mono,
              log=str(work / f"{name}.log"), extra={"argv": argv})
    with open(run.log, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True)
    proctree.LAUNCHED.add(proc.pid)
    run.sampler = proctree.TreeSampler(proc.pid)
    run.sampler.start()
    try:
        def status() -> dict:
            return _read_json(status_file) or {}

        recording = _wait_for(lambda: status().get("status") == "recording", 60)
        if not recording:
            raise RuntimeError(f"{name}: never reached status recording: {status()} (log {run.log})")
        t_recording = time.monotonic()
        run.extra["status_recording_s"] = t_recording - launch_mono
        port = int(_wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 10) or 0)
        time.sleep(max(0.0, seconds - (time.monotonic() - t_recording)))
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/control", data=json.dumps({"action": "Stop", "seq": 1}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST")
        t_stop_wall, t_stop = time.time(), time.monotonic()
        with urllib.request.urlopen(req, timeout=60) as resp:
            reply = json.loads(resp.read())
        run.extra["stop_reply_s"] = time.monotonic() - t_stop
        run.extra["stop_reply_status"] = reply.get("status")
        run.extra["stop_request_clock_ms"] = int((t_stop_wall - launch_wall) * 1000)
        finished = _wait_for(lambda: status().get("status") == "finished", 120, interval=0.01)
        run.extra["stop_to_finished_s"] = (time.monotonic() - t_stop) if finished else None
        final = status()
        run.extra["result"] = final.get("result")
        _finish(run, proc, cpu_before, 60)
        run.extra["stop_to_exit_s"] = time.monotonic() - t_stop
    finally:
        if proc.poll() is None:
            proctree.kill_tree([proc.pid], timeout=3)
            proc.wait()
    videos = sorted(list(delivered.rglob("*.mp4")) + list(work_dir.rglob("output/*.mp4")),
                    key=lambda p: p.stat().st_size, reverse=True)
    if videos:
        run.out = videos[0]
    return run

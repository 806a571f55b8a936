"""The baseline: a bare capture of the same page, no recorder around it.

Xvfb (the recorder's arguments) + the same Chromium binary launched plainly with the same flags
and window size (no Playwright) + ffmpeg with the recorder's own capture command
(`webrecord.recorder.capture.ffmpeg_argv`), minus the PulseAudio input unless `audio` is set
(then a PulseAudio daemon with the recorder's arguments is started as well).
"""

from __future__ import annotations

import inspect
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from recbench import proctree

# Arguments Playwright adds for its own plumbing, which a plain launch must not have.
# The egress proxy belongs to the recorder run and is gone when the baseline starts; the bare
# capture connects directly (the proxy's cost is the recorder's overhead).
_PLUMBING_PREFIXES = ("--remote-debugging-pipe", "--remote-debugging-port", "--user-data-dir=",
                      "--no-startup-window", "--proxy-server=", "--proxy-bypass-list=")


def chromium_command(captured: list[str] | None, width: int, height: int) -> list[str]:
    """argv for a plain Chromium: the recorder's browser command line as captured from /proc
    (same binary, same flags) without Playwright's pipe and profile; the recorder's declared
    flags when nothing was captured. URL and profile are appended by the caller."""
    if captured:
        args = [a for a in captured[1:]
                if a.startswith("-") and not a.startswith(_PLUMBING_PREFIXES)]
        # Same size as asked for, whatever size the captured command was for.
        args = [f"--window-size={width},{height}" if a.startswith("--window-size=") else a
                for a in args]
        return [captured[0], *args]
    from webrecord.recorder.browser import BASE_ARGS
    from webrecord.recorder.settings import RecorderSettings

    args = [*BASE_ARGS, f"--window-size={width},{height}"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return [RecorderSettings().chromium_path, *args]


_AUDIO_OUTPUT_OPTS = {"-c:a", "-acodec", "-b:a", "-ar", "-ac", "-af", "-filter:a", "-q:a", "-aq"}


_GLOBAL_FLAGS = {"-hide_banner", "-nostats", "-stats", "-y", "-n", "-nostdin"}
_GLOBAL_WITH_VALUE = {"-loglevel", "-v", "-stats_period", "-filter_threads"}


def strip_audio(argv: list[str]) -> list[str]:
    """The recorder's ffmpeg command without its PulseAudio input and audio encoding: the
    pulse input group goes (its global options stay), maps are renumbered, audio options go."""
    inputs = [i for i, a in enumerate(argv) if a == "-i"]
    if not inputs:
        raise ValueError("no -i in the ffmpeg command")
    out: list[str] = [argv[0]]
    start = 1
    kept: dict[int, int] = {}  # old input index -> new
    for n, i in enumerate(inputs):
        group = argv[start:i + 2]
        pulse = any(group[j] == "-f" and group[j + 1] in ("pulse", "alsa") for j in range(len(group) - 1))
        if pulse:
            j = 0
            while j < len(group):  # keep global options that happen to sit in this group
                if group[j] in _GLOBAL_FLAGS:
                    out.append(group[j])
                elif group[j] in _GLOBAL_WITH_VALUE:
                    out += group[j:j + 2]
                    j += 1
                j += 1
        else:
            kept[n] = len(kept)
            out += group
        start = i + 2
    if len(kept) != len(inputs) - 1:
        raise ValueError(f"expected exactly one audio input in {argv}")
    rest = argv[start:]
    j = 0
    while j < len(rest):
        a = rest[j]
        if a == "-map":
            src, _, sel = rest[j + 1].partition(":")
            if src.isdigit() and int(src) in kept:
                out += ["-map", f"{kept[int(src)]}:{sel}" if sel else str(kept[int(src)])]
            j += 2
        elif a in _AUDIO_OUTPUT_OPTS:
            j += 2
        else:
            out.append(a)
            j += 1
    return out


def recorder_ffmpeg_argv(build, settings, display: str, width: int, height: int, out: Path) -> list[str]:
    """Call the recorder's ffmpeg_argv, whatever optional arguments it grew (e.g. epoch)."""
    params = inspect.signature(build).parameters
    kwargs: dict[str, object] = {}
    if "epoch" in params:
        kwargs["epoch"] = time.time() - 1.0  # what Capture.start passes
    if "first_index" in params:  # the segmenting capture: a directory and a first number
        argv = build(settings, display, width, height, out.parent, first_index=0, **kwargs)
        argv[-1] = str(out)
        return single_file(argv)
    return build(settings, display, width, height, out, **kwargs)


def from_captured_ffmpeg(argv: list[str], display: str, out: Path) -> list[str]:
    """The recorder run's own ffmpeg command (read from /proc) re-aimed at our display and file:
    the x11grab input, the output path and the -itsoffset epoch are replaced, nothing else."""
    argv = list(argv)
    epoch = f"-{time.time() - 1.0:.6f}"  # what Capture.start passes: shortly before the spawn
    for i, a in enumerate(argv[:-1]):
        if a == "-itsoffset" and argv[i + 1].startswith("-") and float(argv[i + 1]) < -1e8:
            argv[i + 1] = epoch
    inputs = [i for i, a in enumerate(argv) if a == "-i"]
    start = 0
    for i in inputs:
        group = argv[start:i]
        if "x11grab" in group:
            target = argv[i + 1]
            screen = target[target.index("."):] if "." in target else ".0+0,0"
            argv[i + 1] = display + screen
        start = i + 2
    argv[-1] = str(out)
    return single_file(argv)


# The segment muxer's own options (each takes a value), dropped: the baseline writes one
# file with the inner format. Every -segment_* one, and these.
_SEGMENT_OPTS = {"-reset_timestamps"}


def _segment_option(arg: str) -> bool:
    return arg.startswith("-segment_") or arg in _SEGMENT_OPTS


def single_file(argv: list[str]) -> list[str]:
    """The recorder's segmenting output turned into one file of its segment format (the cost of
    cutting files every few seconds is nil; a template name is not a file name)."""
    if "segment" not in argv:
        return argv
    inner = argv[argv.index("-segment_format") + 1] if "-segment_format" in argv else "mpegts"
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if _segment_option(a):
            i += 2
            continue
        if a == "-f" and i + 1 < len(argv) and argv[i + 1] == "segment":
            out += ["-f", inner]
            i += 2
            continue
        out.append(a)
        i += 1
    return out


class BareCapture:
    def __init__(self, url: str, width: int, height: int, out: Path,
                 chromium_argv: list[str], audio: bool = False, log_dir: Path | None = None,
                 ffmpeg_template: list[str] | None = None) -> None:
        self.url = url
        self.width = width
        self.height = height
        self.out = out
        self.chromium_argv = chromium_argv
        self.ffmpeg_template = ffmpeg_template  # the recorder run's ffmpeg command, if known
        self.audio = audio
        self.tmp = Path(tempfile.mkdtemp(prefix="recbench-bare-"))  # profile, pulse socket
        self.log_dir = log_dir or self.tmp
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen] = []
        self.xvfb: subprocess.Popen | None = None
        self.pulse: subprocess.Popen | None = None
        self.chromium: subprocess.Popen | None = None
        self.ffmpeg: subprocess.Popen | None = None
        self.ffmpeg_argv: list[str] = []
        self.env: dict[str, str] = {}

    def _spawn(self, argv: list[str], log: str, **kw) -> subprocess.Popen:
        with open(self.log_dir / log, "ab") as f:
            proc = subprocess.Popen(argv, stdout=f, stderr=f, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        from webrecord.recorder.capture import ffmpeg_argv
        from webrecord.recorder.settings import RecorderSettings

        settings = RecorderSettings()
        display = self._start_xvfb(settings.xvfb_path)
        env = dict(os.environ)
        env.pop("WAYLAND_DISPLAY", None)
        env["DISPLAY"] = display
        if self.audio:
            env.update(self._start_pulse(settings))
        self.env = env
        profile = self.tmp / "profile"
        profile.mkdir()
        self.chromium = self._spawn([*self.chromium_argv, f"--user-data-dir={profile}", self.url],
                                    "chromium.log", env=env, stdin=subprocess.DEVNULL)
        if self.ffmpeg_template:
            argv = from_captured_ffmpeg(self.ffmpeg_template, display, self.out)
        else:
            argv = recorder_ffmpeg_argv(ffmpeg_argv, settings, display, self.width, self.height, self.out)
        self.ffmpeg_argv = argv if self.audio else strip_audio(argv)
        with open(self.log_dir / "ffmpeg.log", "ab") as f:
            self.ffmpeg = subprocess.Popen(self.ffmpeg_argv, stdin=subprocess.PIPE, stdout=f,
                                           stderr=f, start_new_session=True, env=env)
        self.procs.append(self.ffmpeg)

    def _start_xvfb(self, xvfb: str) -> str:
        read_fd, write_fd = os.pipe()
        try:
            with open(self.log_dir / "xvfb.log", "ab") as f:
                self.xvfb = subprocess.Popen(
                    [xvfb, "-displayfd", str(write_fd), "-screen", "0",
                     f"{self.width}x{self.height}x24", "-nolisten", "tcp", "-noreset", "-dpi", "96"],
                    stdin=subprocess.DEVNULL, stdout=f, stderr=f, pass_fds=(write_fd,),
                    start_new_session=True)
            self.procs.append(self.xvfb)
        finally:
            os.close(write_fd)
        # Xvfb writes the number and then "\n" in two write()s and dies (EPIPE) if the pipe is
        # closed in between: read up to the newline before closing.
        data = b""
        deadline = time.monotonic() + 10
        try:
            while b"\n" not in data and time.monotonic() < deadline:
                ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                chunk = os.read(read_fd, 64)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(read_fd)
        number = data.decode(errors="replace").strip()
        if not number.isdigit():
            raise RuntimeError(f"Xvfb did not start (see {self.log_dir}/xvfb.log)")
        return f":{number}"

    def _start_pulse(self, settings) -> dict[str, str]:
        # The recorder's daemon arguments (webrecord.recorder.audio.PulseAudio.start).
        from webrecord.recorder.audio import MONITOR, SINK

        rt = self.tmp / "pulse"
        rt.mkdir()
        sock = rt / "native"
        env = dict(os.environ, HOME=str(rt), XDG_RUNTIME_DIR=str(rt),
                   XDG_CONFIG_HOME=str(rt / "config"), PULSE_RUNTIME_PATH=str(rt),
                   PULSE_STATE_PATH=str(rt / "state"))
        self.pulse = self._spawn(
            [settings.pulseaudio_path, "-n", "--daemonize=no", "--system=false",
             "--exit-idle-time=-1", "--use-pid-file=no", "--log-target=stderr",
             "--disallow-exit", "--no-cpu-limit",
             f"--load=module-native-protocol-unix socket={sock} auth-anonymous=1",
             f"--load=module-null-sink sink_name={SINK} rate={settings.audio_rate} channels=2",
             "--load=module-always-sink"], "pulse.log", env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or self.pulse.poll() is not None:
                raise RuntimeError(f"PulseAudio did not start (see {self.log_dir}/pulse.log)")
            time.sleep(0.02)
        time.sleep(0.1)
        return {"PULSE_SERVER": f"unix:{sock}", "PULSE_SINK": SINK, "PULSE_SOURCE": MONITOR,
                "PULSE_RUNTIME_PATH": str(rt), "PULSE_COOKIE": str(rt / "cookie")}

    def stop_capture(self) -> float:
        """Send 'q' to ffmpeg; seconds until it exited (its file complete)."""
        assert self.ffmpeg is not None
        t = time.monotonic()
        try:
            assert self.ffmpeg.stdin is not None
            self.ffmpeg.stdin.write(b"q")
            self.ffmpeg.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.ffmpeg.wait(10)
        except subprocess.TimeoutExpired:
            self.ffmpeg.kill()
            self.ffmpeg.wait()
        return time.monotonic() - t

    def close(self) -> None:
        """Stop everything (ffmpeg first so its file is finished), then remove the temp dir."""
        if self.ffmpeg is not None and self.ffmpeg.poll() is None:
            self.stop_capture()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proctree.kill_tree([proc.pid], timeout=5)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


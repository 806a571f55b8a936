"""A private PulseAudio daemon per recording with one null sink ("rec") whose monitor we capture.

Private because several recordings share a machine: each gets its own runtime dir and socket,
so no page hears another page and nothing depends on a user session's sound server.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from webrecord.api.models import ErrorCode
from webrecord.egress.childenv import minimal_env
from webrecord.logs import event
from webrecord.recorder import procs
from webrecord.recorder.errors import RecorderError
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

SINK = "rec"
MONITOR = "rec.monitor"


class PulseAudio:
    def __init__(self, settings: RecorderSettings, log_dir: Path) -> None:
        self.settings = settings
        # Unix socket paths are limited to ~108 bytes and the work dir may be deep: use a short
        # private dir under the temp dir, removed on stop.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="webrecord-pulse-"))
        self.log_dir = log_dir
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "native"

    def client_env(self) -> dict[str, str]:
        """Environment for processes that play into or record from this daemon."""
        return {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_SINK": SINK,
            "PULSE_SOURCE": MONITOR,
            # No autospawn of a second daemon and no cookie lookups in a HOME that may not exist.
            "PULSE_RUNTIME_PATH": str(self.runtime_dir),
            "PULSE_COOKIE": str(self.runtime_dir / "cookie"),
        }

    async def start(self) -> None:
        # HOME/XDG dirs inside the runtime dir: works as root and as a user without a home.
        env = minimal_env(dict(
            HOME=str(self.runtime_dir),
            XDG_RUNTIME_DIR=str(self.runtime_dir),
            XDG_CONFIG_HOME=str(self.runtime_dir / "config"),
            PULSE_RUNTIME_PATH=str(self.runtime_dir),
            PULSE_STATE_PATH=str(self.runtime_dir / "state"),
        ))
        argv = [
            self.settings.pulseaudio_path, "-n", "--daemonize=no", "--system=false",
            "--exit-idle-time=-1", "--use-pid-file=no", "--log-target=stderr",
            "--disallow-exit", "--no-cpu-limit",
            f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1",
            f"--load=module-null-sink sink_name={SINK} rate={self.settings.audio_rate} channels=2",
            "--load=module-always-sink",
        ]
        if self.settings.pulse_keepalive:
            # Left alone, the null sink renders 2 s ahead while no one plays, and the first
            # record stream then waits that long for its first sound. A silent loopback keeps it
            # rendering in small blocks; 200 ms (no rate adjustment) rather than 20 ms costs the
            # sound server a third as much (0.008 vs 0.023 cores). While the page plays, the sink
            # runs at Chromium's far shorter latency; while nothing plays, silence comes in
            # ~100 ms bursts and its stamps jitter by that much (silence: nothing to hear).
            argv += [
                f"--load=module-null-source source_name=silence rate={self.settings.audio_rate} channels=2",
                f"--load=module-loopback source=silence sink={SINK} latency_msec=200 adjust_time=0 "
                "source_dont_move=true sink_dont_move=true",
            ]
        log_file = open(self.log_dir / "pulseaudio.log", "ab")
        try:
            self.proc = await procs.spawn(argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                                          stdout=log_file, stderr=log_file)
        finally:
            log_file.close()
        await self._wait_ready()
        event(log, "pulseaudio started", socket=str(self.socket))

    async def _wait_ready(self) -> None:
        # Startup only: poll the socket until it accepts a connection (bounded).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.audio_start_timeout
        while loop.time() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                break
            if self.socket.exists():
                try:
                    _, writer = await asyncio.open_unix_connection(str(self.socket))
                    writer.close()
                    return
                except OSError:
                    pass
            await asyncio.sleep(0.02)
        await self.stop()
        raise RecorderError(ErrorCode.INTERNAL, "audio server (PulseAudio) failed to start; see pulseaudio.log")

    async def warm_up(self) -> None:
        """Open and close one record stream on the monitor. The daemon's first record stream
        can take a second or more to start; paid here (while Chromium starts), not in the
        first segment, where it would delay the sound behind the picture."""
        try:
            proc = await procs.spawn(
                [self.settings.ffmpeg_path, "-nostdin", "-v", "error", "-f", "pulse",
                 "-i", MONITOR, "-t", "0.05", "-f", "null", "-"],
                env=minimal_env(self.client_env()), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        except OSError:
            return
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except (asyncio.TimeoutError, TimeoutError):
            pass
        finally:
            await procs.terminate(proc, timeout=1.0)

    async def stop(self) -> None:
        await procs.terminate(self.proc, timeout=3.0)
        self.proc = None
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

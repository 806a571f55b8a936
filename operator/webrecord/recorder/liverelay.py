"""One live output: the recording's MPEG-TS copied (`ffmpeg -c copy`, no encode) to one
RTMP(S) or SRT receiver, reconnected with backoff when the receiver goes away.

The relay owns a bounded buffer. `offer()` never waits: when the receiver (or the network to
it) is slower than the recording, bytes are dropped for this receiver only; the recording and
the other receivers do not notice. Each connect first judges the host with the egress policy
and connects to the address it judged, so a DNS answer that changes in between cannot redirect
the stream. rtmps too: ffmpeg's TLS gets the name separately (`-verifyhost`: the SNI and the
name the certificate must carry), and the certificate is verified (`-tls_verify 1`, against
the system's CAs or `live_ca_file`) unless `live_tls_verify` is off: ffmpeg would otherwise
send the stream key to whoever answers. Every text that leaves this module (logs, status) has
the stream key scrubbed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time

from webrecord.api.live import LiveUrl, scrub
from webrecord.api.models import LiveOutputStatus, LiveState
from webrecord.egress.policy import EgressPolicy
from webrecord.egress.resolver import lookup
from webrecord.logs import event
from webrecord.recorder import procs
from webrecord.recorder.settings import RecorderSettings

log = logging.getLogger(__name__)

_COMPONENT = re.compile(r"^\[(\w+) @ 0x[0-9a-f]+\] ")  # "[tls @ 0x55d0...] ": the pointer is noise
# Lines about the input, not the receiver: joining the recording mid-stream, the probe decodes
# frames before the first keyframe ("[h264 @ ...] non-existing PPS 0 referenced", ~100 lines a
# connect on a busy machine), and ffmpeg folds repeats into "Last message repeated N times".
_INPUT_NOISE = re.compile(r"^(\[(h264|hevc|aac|mp3|mpegts) @ 0x[0-9a-f]+\] |Last message repeated )")
_KEPT_LINES = 8


class Relay:
    def __init__(self, target: LiveUrl, settings: RecorderSettings, policy: EgressPolicy,
                 on_change: collections.abc.Callable[[], None] | None = None) -> None:
        self.target = target
        self.settings = settings
        self.policy = policy
        self.on_change = on_change
        self.state = LiveState.CONNECTING
        self.message: str | None = None
        self.reconnects = 0
        self.sent_bytes = 0
        self.dropped_bytes = 0
        self.paused = False
        self.live_since: float | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffered = 0
        self._accepting = False  # only while an ffmpeg runs: a reconnect starts from now
        self._closed = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._stderr: list[str] = []  # the attempt's first lines about the receiver

    @property
    def url(self) -> str:
        return self.target.url

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def status(self) -> LiveOutputStatus:
        state = self.state
        if self.paused and state == LiveState.LIVE:
            state = LiveState.PAUSED
        return LiveOutputStatus(url=self.target.redacted, state=state, message=self.message,
                                reconnects=self.reconnects, sent_bytes=self.sent_bytes,
                                dropped_bytes=self.dropped_bytes)

    def offer(self, chunk: bytes) -> None:
        """Queue `chunk` for the receiver, or drop it when its buffer is full (never waits)."""
        if not self._accepting:
            return
        if self._buffered + len(chunk) > self.settings.live_buffer_bytes:
            self.dropped_bytes += len(chunk)
            return
        self._buffered += len(chunk)
        self._queue.put_nowait(chunk)

    def _set(self, state: LiveState, message: str | None = None) -> None:
        changed = (state, message) != (self.state, self.message)
        self.state, self.message = state, message
        if changed:
            event(log, "live output " + state.value, url=self.target.redacted,
                  message=message, reconnects=self.reconnects)
            if self.on_change is not None:
                self.on_change()

    async def _judge(self) -> tuple[str | None, str | None]:
        """(the URL to give ffmpeg, None) or (None, why the host is refused)."""
        target = self.target
        reason = self.policy.host_refusal(target.host)  # a metadata name, a refused literal
        if reason is not None:
            return None, f"host {target.host} is {reason}"
        addresses = await lookup(target.host, self.policy)
        if not addresses:
            return None, f"host {target.host} does not resolve"
        for address in addresses:
            if (reason := self.policy.refusal(address)) is not None:
                return None, f"host {target.host} resolves to {address}, {reason}"
        return target.with_address(addresses[0]), None

    def _argv(self, url: str) -> list[str]:
        s = self.settings
        argv = [s.ffmpeg_path, "-hide_banner", "-nostats", "-loglevel", "error",
                # Progress blocks start once the output is open (connected): the "live" signal.
                "-progress", "pipe:1", "-stats_period", "0.5",
                # The recording joins mid-stream: probing waits for the next keyframe's headers.
                "-probesize", "5000000", "-analyzeduration", str(int(s.live_probe_seconds * 1e6)),
                "-f", "mpegts", "-i", "pipe:0", "-map", "0", "-c", "copy"]
        target = self.target
        if target.scheme == "srt":
            return [*argv, "-f", "mpegts", "-flush_packets", "1", url]
        if target.scheme == "rtmps":
            argv += tls_options(s, target)
        if url != target.url:
            # Connected by address; the receiver still sees the URL's host in tcUrl.
            app = target.path.strip("/").split("/")[0]
            argv += ["-rtmp_tcurl", f"{target.scheme}://{target.host}:{target.port}/{app}"]
        return [*argv, "-f", "flv", "-flvflags", "no_duration_filesize", url]

    async def _run(self) -> None:
        failures = 0
        while not self._closed.is_set():
            url, refusal = await self._judge()
            if refusal is not None:
                # The policy does not change while the recorder runs: trying again is pointless
                # unless the name resolves differently later; keep trying slowly.
                self._set(LiveState.REFUSED, refusal)
                failures += 1
            else:
                assert url is not None
                if await self._connect(url):
                    failures = 0
                failures += 1
                if self._closed.is_set():
                    break
                self.reconnects += 1
                self._set(LiveState.RETRYING, self._error())
            delay = min(self.settings.live_retry_max_seconds,
                        self.settings.live_retry_min_seconds * 2 ** max(0, failures - 1))
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)
        self._set(LiveState.STOPPED, None)

    async def _connect(self, url: str) -> bool:
        """Run one ffmpeg until it exits; True if it got as far as sending."""
        self._stderr.clear()
        self._set(LiveState.CONNECTING, None)
        self._proc = await procs.spawn(self._argv(url), stdin=asyncio.subprocess.PIPE,
                                       stdout=asyncio.subprocess.PIPE,
                                       stderr=asyncio.subprocess.PIPE)
        self._accepting = True
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write(self._proc))
        errors = loop.create_task(self._errors(self._proc, url))
        went_live = False
        try:
            assert self._proc.stdout is not None
            async for raw in self._proc.stdout:
                if raw.startswith(b"progress=") and not went_live:
                    went_live = True
                    self.live_since = time.monotonic()
                    self._set(LiveState.LIVE, None)
            await self._proc.wait()
            await asyncio.wait_for(errors, 2)
        finally:
            self._accepting = False
            for task in (writer, errors):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                    await task
            self._drain_queue()
            await procs.terminate(self._proc, timeout=2.0)
        return went_live

    async def _errors(self, proc: asyncio.subprocess.Process, url: str) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line and not _INPUT_NOISE.match(line) and len(self._stderr) < _KEPT_LINES:
                self._stderr.append(scrub(scrub(line, url), self.target.url)[:300])

    def _error(self) -> str:
        """The attempt's first error line: ffmpeg logs the cause first ("[tls] The
        certificate's owner does not match hostname ..."), then its generic consequences
        ("rtmps://...: Input/output error")."""
        if not self._stderr:
            return "the receiver closed the connection"
        return _COMPONENT.sub(r"[\1] ", self._stderr[0])

    async def _write(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        try:
            while True:
                chunk = await self._queue.get()
                self._buffered -= len(chunk)
                proc.stdin.write(chunk)
                await proc.stdin.drain()  # a slow receiver blocks this relay only
                self.sent_bytes += len(chunk)
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass  # ffmpeg exited; _connect sees it

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._buffered = 0

    async def close(self) -> None:
        """End the stream: ffmpeg gets end of input (a clean end for the receiver), bounded."""
        self._closed.set()
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(proc), 2.0)
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(proc.wait(), self.settings.live_stop_timeout)
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            if not self._task.done():
                self._task.cancel()
        await procs.terminate(proc, timeout=2.0)

    async def _flush(self, proc: asyncio.subprocess.Process) -> None:
        """What is queued goes out, then end of input."""
        assert proc.stdin is not None
        while not self._queue.empty() and proc.returncode is None:
            await asyncio.sleep(0.02)
        proc.stdin.close()


def tls_options(settings: RecorderSettings, target: LiveUrl) -> list[str]:
    """ffmpeg's TLS options for an rtmps receiver (rtmp passes them on to its tls:// layer)."""
    options = ["-tls_verify", "1" if settings.live_tls_verify else "0"]
    if settings.live_ca_file:
        options += ["-ca_file", settings.live_ca_file]
    if target.address is None:  # a name: SNI and the certificate's name, whatever we dial
        options += ["-verifyhost", target.host]
    return options

"""The recording state machine: one task, from an empty screen to packaged files.

Everything that changes the recording (controls from the endpoint, page hooks, timers, a dead
browser or encoder) goes through one queue consumed by one loop, so there is never a race
between, say, a Pause and a crash. The loop sleeps on the queue with a timeout equal to the
next deadline (MaxDurationLimit, ManualStart timeout): no polling.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from webrecord.api.models import (Action, ErrorCode, LiveOutput, Phase, RecorderStatus,
                                  RecordingTask, Result)
from webrecord.egress.policy import EgressPolicy, EgressSettings
from webrecord.egress.proxy import EgressProxy
from webrecord.logs import event, now
from webrecord.recorder.audio import PulseAudio
from webrecord.recorder.browser import Browser
from webrecord.recorder.capture import Capture, cut_phase
from webrecord.recorder.display import Display
from webrecord.recorder.encoding import encoding_for
from webrecord.recorder.idle import IdleWatch
from webrecord.recorder.pageprep import PagePrep
from webrecord.recorder.errors import InvalidAction, RecorderError
from webrecord.recorder.live import LiveOutputs
from webrecord.recorder.livehls import LiveHls
from webrecord.recorder.package import (Packaged, closed_segment_facts, drop_torn_tail,
                                        package_hls, package_mp4, usable_segments)
from webrecord.recorder.reserve import DiskReserve
from webrecord.recorder.resume import StoredParts
from webrecord.recorder.settings import RecorderSettings
from webrecord.recorder.snapshots import take_snapshots
from webrecord.recorder.stage import Stage

log = logging.getLogger(__name__)

_HOOK_ACTIONS = {
    "pauseRecord": Action.PAUSE,
    "resumeRecord": Action.RESUME,
    "refreshPage": Action.REFRESH,
    "stopRecord": Action.STOP,
}
_START = "start"  # window.startRecord()


class _Stop(Exception):
    """Leaves the control loop: the recording is over."""


class _Suspend(Exception):
    """Leaves the control loop: this recorder goes away, the task goes on in another one."""


class Session:
    def __init__(self, task: RecordingTask, work_dir: Path,
                 settings: RecorderSettings | None = None,
                 on_status: Callable[[RecorderStatus], Any] | None = None,
                 output: Path | None = None,
                 manual_start_timeout: float | None = None,
                 on_segment: Callable[[Path], Any] | None = None,
                 egress: EgressSettings | None = None, stage: Stage | None = None) -> None:
        self.task = task
        self.spec = task.spec
        self.settings = settings or RecorderSettings()
        self.work_dir = work_dir
        self.seg_dir = work_dir / "segments"
        self.log_dir = work_dir / "logs"
        self.reserve = DiskReserve(work_dir / ".disk-reserve", self.settings.disk_reserve_mb << 20)
        self.on_status = on_status
        self.on_segment = on_segment  # called with each closed segment (the segment store)
        video = self.spec.output.video
        self.encoding = encoding_for(self.settings, self.spec)
        idle = self.spec.idle
        blank = idle.blank_seconds if idle and idle.blank_seconds is not None \
            else self.settings.blank_page_seconds
        self.idle_watch = IdleWatch(self.settings, idle.seconds if idle else None, blank,
                                    video=not self.encoding.audio_only)
        # Per closed segment: its span probe, its idle/blank look.
        self._segment_work: set[asyncio.Task] = set()
        suffix = ".m3u8" if video.muxer == "hls" else ".m4a" if video.audio_only else ".mp4"
        default = work_dir / "output" / (task.task_id + suffix)
        if video.muxer == "hls" and output is None:
            default = work_dir / "output" / "hls" / (task.task_id + suffix)
        self.output = output.with_suffix(suffix) if output is not None else default
        self.manual_start_timeout = manual_start_timeout or self.settings.manual_start_timeout
        self.status = RecorderStatus(task_id=task.task_id, create_time=task.create_time or now())
        self.packaged: Packaged | None = None
        self.captures: list[Capture] = []
        self.current: Capture | None = None
        self.egress_settings = egress or EgressSettings()
        # Display, sound, egress proxy, Chromium: a standby slot's, started before the task
        # (recorder/standby.py), or started by _setup.
        self.stage = stage
        self._queue: asyncio.Queue[tuple[str, Any, asyncio.Future | None, int | None]] = asyncio.Queue()
        self._canceled = False
        self.suspended = False  # ended by suspend(): the segments are stored, nothing packaged
        # A Pause that came before the first frame (or a replaced recorder of a paused task):
        # the recording starts paused.
        self._start_paused = self.settings.start_paused
        self._paused_since = 0.0
        self._created = time.monotonic()
        self._browser_restarts = 0
        self._encoder_restarts = 0
        self.started_event = asyncio.Event()  # set once the first segment runs
        self.stored = StoredParts()  # segments an earlier recorder of this task left (resume)
        # Live receivers of this recording's encode (extension); they follow self.current.
        self.live = LiveOutputs(self.settings, EgressPolicy(self.egress_settings),
                                lambda: self.current, on_change=self._update)
        # Live HLS of output.liveHls (recorder/livehls.py), set up by the caller (runtask).
        self.live_hls: LiveHls | None = None

    @property
    def display(self) -> Display | None:
        return self.stage.display if self.stage is not None else None

    @property
    def audio(self) -> PulseAudio | None:
        return self.stage.audio if self.stage is not None else None

    @property
    def browser(self) -> Browser | None:
        return self.stage.browser if self.stage is not None else None

    @property
    def egress(self) -> EgressProxy | None:
        return self.stage.egress if self.stage is not None else None

    def continue_from(self, stored: StoredParts, start_time: int | None = None) -> None:
        """Resume the task: `stored` (already in seg_dir) is the start of the recording; its
        time counts against MaxDurationLimit. Keeps the task's original start_time if known."""
        self.stored = stored
        if stored.segments:  # the task started before; when is known only from its status
            self.status.start_time = start_time or self.status.start_time or now()
        event(log, f"resumed with {len(stored.segments)} stored segments, {stored.seconds:.1f} s",
              segments=len(stored.segments), seconds=round(stored.seconds, 3),
              dropped=stored.dropped, start_time=self.status.start_time)
        self._update()

    # ---- inputs -------------------------------------------------------------------------
    async def control(self, action: Action, seq: int | None = None) -> RecorderStatus:
        """Apply a control and return the status once it took effect (InvalidAction if it can't)."""
        if seq is not None and seq <= self.status.last_action_seq:
            return self.status  # a retry of a control already applied
        if not self.status.status.active:
            raise InvalidAction(f"{action.value} does not apply: the task is {self.status.status.value}")
        if self._control_before_start(action, seq):
            return self.status
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("action", action, future, seq))
        return await future

    async def set_live(self, outputs: list[LiveOutput]) -> RecorderStatus:
        """Make the live receivers exactly `outputs` while the task is active (added ones
        connect, removed ones end; the recording itself is not touched)."""
        if not self.status.status.active:
            raise InvalidAction(f"live outputs do not apply: the task is {self.status.status.value}")
        self.spec.output.live = outputs or None
        if self.status.status != Phase.NORMAL:  # before the start: connected when it starts
            await self.live.set(outputs)
        self._update()
        return self.status

    def request(self, action: Action) -> None:
        """Fire-and-forget control (signals, page hooks)."""
        self._queue.put_nowait(("action", action, None, None))

    def suspend(self) -> None:
        """Hand the task over (SIGTERM of a pod being drained, evicted or deleted): close and
        store the segment in progress and end without packaging or finishing the task, so a
        new recorder resumes it from the segment store."""
        self._queue.put_nowait(("suspend", None, None, None))

    def _control_before_start(self, action: Action, seq: int | None) -> bool:
        """Pause/Resume while the task is `normal`: they decide how the recording starts (the
        loop does not run yet while the browser launches). True when handled here."""
        if self.status.status != Phase.NORMAL or action not in (Action.PAUSE, Action.RESUME):
            return False
        if action == Action.RESUME and not self._start_paused:
            raise InvalidAction("Resume does not apply: the task is normal")
        self._start_paused = action == Action.PAUSE
        note = ("paused before the first frame: the recording starts paused"
                if self._start_paused else "waiting to start")
        self._update(message=note, **({"last_action_seq": seq} if seq is not None else {}))
        return True

    def _hook(self, name: str) -> bool:
        if name == "startRecord":
            self._queue.put_nowait(("start", None, None, None))
        else:
            self.request(_HOOK_ACTIONS[name])
        return True

    def _crash(self, what: str, generation: int) -> None:
        self._queue.put_nowait(("crash", (what, generation), None, None))

    # ---- status -------------------------------------------------------------------------
    def recorded_seconds(self) -> float:
        return self.stored.seconds + sum(c.elapsed() for c in self.captures)

    def bytes_recorded(self) -> int:
        return sum(c.size() for c in self.captures)

    def _update(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.status, key, value)
        self.status.recorded_seconds = round(self.recorded_seconds(), 3)
        self.status.segments = len(self.stored.segments) + sum(
            max(1, len(c.paths)) for c in self.captures)
        self.status.live = self.live.status()
        self.status.live_hls = self.live_hls.status() if self.live_hls is not None else None
        if self.on_status is not None:
            self.on_status(self.status)

    def live_status(self) -> RecorderStatus:
        """The status with the recorded time as of now (it moves between status changes)."""
        self.status.recorded_seconds = round(self.recorded_seconds(), 3)
        self.status.live = self.live.status()
        self.status.live_hls = self.live_hls.status() if self.live_hls is not None else None
        return self.status

    def set_phase(self, phase: Phase, message: str | None = None) -> None:
        """For the stages after packaging (upload, callback), reported by the delivery stage."""
        self._update(status=phase, message=message or phase.value)

    def finish(self, result: Result | None = None) -> RecorderStatus:
        if result is not None:
            self.status.result = result
        self._update(status=Phase.FINISHED, finish_time=now())
        return self.status

    # ---- the run ------------------------------------------------------------------------
    async def run(self) -> RecorderStatus:
        """Record until stopped, then package. Leaves status at TRANSCODE (done) or with an error
        in status.result; the caller delivers and calls finish()."""
        for d in (self.seg_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.reserve.hold()
        error: RecorderError | None = None
        try:
            try:
                if self.settings.resume_stopped:  # stopped before: deliver what is stored
                    self._update(status=Phase.CANCELED, cancel_time=self.status.cancel_time or now(),
                                 message="resumed after the stop: packaging the stored segments")
                else:
                    await self._setup()
                    await self._loop()
            except RecorderError as exc:
                error = exc
                event(log, "recording failed", logging.ERROR, code=exc.code.value, error=exc.message)
            except Exception as exc:  # noqa: BLE001 - a bug still ends in a Result, not a hang
                log.exception("recorder failed unexpectedly")
                error = RecorderError(ErrorCode.INTERNAL, f"recorder failed: {type(exc).__name__}: {exc}")
            finally:
                await self._close_segment()
                if self.suspended:
                    pass  # the task goes on elsewhere: its phase stays what it was
                elif self.status.status.active:
                    self._update(status=Phase.CANCELED, cancel_time=self.status.cancel_time or now())
                if self.status.start_time is not None:
                    self._update(stop_time=self.status.stop_time or now())
                await self._teardown()
                self._reject_pending()
            if self.suspended and error is None:
                self._update(message="suspended: segments stored for the recorder that resumes")
                return self.status
            if self._canceled:
                self._discard_segments()
                self.status.result = Result(error_code=ErrorCode.CANCELED,
                                            error_message="canceled: no video produced")
                return self.status
            self.reserve.release()  # its room is for packaging (and a full disk's last segment)
            self._update(status=Phase.TRANSCODE, message="packaging")
            try:
                self.packaged = await self._package()
            except RecorderError as exc:
                error = error or exc
                self.packaged = None
            if error is not None:
                self.status.result = Result(error_code=error.code, error_message=error.message)
            elif self.packaged is None:
                self.status.result = Result(error_code=ErrorCode.NOTHING_RECORDED,
                                            error_message="nothing was recorded")
            self._update(message="packaged" if self.packaged else "no video")
            return self.status
        finally:
            await self._teardown()

    async def _check_url(self) -> None:
        """RecordURL judged again here, before anything starts: every path (adapter, kubectl,
        `record`) reaches a recorder, and only this one sees the network the page will see."""
        from webrecord.api.urls import UrlRejected
        from webrecord.urlcheck import url_refusal

        try:
            # The same policy the egress proxy applies to every connection of this session.
            _, reason = await url_refusal(self.spec.record_url, EgressPolicy(self.egress_settings))
        except UrlRejected as exc:
            reason = exc.rule
        if reason is not None:
            raise RecorderError(ErrorCode.INVALID_PARAM, f"RecordURL: {reason}")

    def _explained(self, exc: RecorderError) -> RecorderError:
        """A page-load failure with what the egress proxy saw: Chromium only says the SOCKS
        connection failed, not that the port was closed or the address refused."""
        if exc.code != ErrorCode.PAGE_LOAD_FAILED or self.egress is None:
            return exc
        parts = urlsplit(self.spec.record_url)
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
        except ValueError:
            return exc
        why = self.egress.stats.problems.get(f"{parts.hostname}:{port}")
        return RecorderError(exc.code, f"{exc.message} ({parts.hostname}:{port}: {why})") if why else exc

    async def _setup(self) -> None:
        await self._check_url()
        warm = self.stage is not None
        if self.stage is None:
            self.stage = Stage(self.settings, self.egress_settings, self.spec.width,
                               self.spec.height, self.log_dir, self.work_dir / "profile",
                               refresh=self.encoding.fps)
            await self.stage.start(self._hook, self._browser_gone)
        else:  # a standby slot's stage: its events are this task's from now on
            assert self.stage.browser is not None
            # Claimed: its start is a task's now, no longer background work of the pool.
            await self.stage.priority.restore()
            self.stage.browser.on_hook, self.stage.browser.on_crash = self._hook, self._browser_gone
            await self.stage.resize(self.spec.width, self.spec.height, self.encoding.fps)
        assert self.browser is not None
        await self._prepare_page()
        try:
            await self.browser.goto(self.spec.record_url)
        except RecorderError as exc:
            raise self._explained(exc) from exc
        event(log, "page loaded", warm=warm)
        if self.spec.manual_start:
            self._update(message="waiting for window.startRecord()")
        else:
            await self._start_recording()

    async def _prepare_page(self) -> None:
        """The task's page control on the open context, and on every relaunch after it."""
        assert self.browser is not None
        page = self.spec.page
        self.browser.console_signals = page is None or page.console_signals
        if page is None:
            return
        prep = PagePrep(page, self.spec.record_url, self.spec.width, self.spec.height)
        self.browser.page_setup = prep.apply
        assert self.browser.context is not None and self.browser.page is not None
        await prep.apply(self.browser.context, self.browser.page)

    def _browser_env(self) -> dict[str, str]:
        assert self.stage is not None
        return self.stage.env()

    def _browser_gone(self, what: str) -> None:
        self._crash(what, self.browser.launches if self.browser else 0)

    async def _start_recording(self) -> None:
        if self.stage is not None:
            await self.stage.priority.restore()  # the page and its capture at full weight
        if self._start_paused:
            self._paused_since = time.monotonic()
            self._update(status=Phase.PAUSED, start_time=self.status.start_time or now(),
                         message="paused")
        else:
            await self._open_segment()
            self._update(status=Phase.RECORDING, start_time=self.status.start_time or now(),
                         message="recording")
        self.live.pause(self._start_paused)
        await self.live.set(self.spec.output.live or [])
        self.started_event.set()

    async def _open_segment(self) -> None:
        assert self.display is not None and self.audio is not None
        index = self.captures[-1].next_index if self.captures else self.stored.next_index
        capture = Capture(self.settings, self.display.name, self.spec.width, self.spec.height,
                          self._browser_env(), self.seg_dir, index, self._epoch(),
                          on_closed=self._segment_closed, encoding=self.encoding,
                          phase=cut_phase(self.task.task_id, self.settings.segment_seconds),
                          frame_locked=self.display.frame_locked)
        await capture.start()
        self.captures.append(capture)
        self.current = capture
        asyncio.get_running_loop().create_task(self._watch_capture(capture))
        # Controls answer once the recording really runs; a dying ffmpeg is handled by the
        # watcher (a queued "encoder" event), not here.
        await capture.wait_ready(self.settings.encoder_start_timeout)

    async def _watch_capture(self, capture: Capture) -> None:
        assert capture.exited is not None and capture.ready is not None
        if await capture.ready and await capture.measure_start():
            self._queue.put_nowait(("tick", None, None, None))  # deadlines moved: recompute
        await capture.exited
        if not capture.stopping:
            self._queue.put_nowait(("encoder", capture, None, None))

    def _epoch(self) -> float:
        """Wall-clock time that timestamp 0 stands for in every segment of this task (every
        recorder of the task computes the same one from createTime, so resumed segments are on
        the same clock). Ten minutes of slack for a node clock behind the operator's; MPEG-TS
        timestamps wrap after 26.5 h, which the wall-clock cap keeps a task below."""
        return min(float(self.status.create_time or now()) - 600.0, time.time() - 1.0)

    def _segment_closed(self, path: Path) -> None:
        """A rotated segment is complete: to the segment store at once."""
        if self.on_segment is not None and not self._canceled:
            try:
                self.on_segment(path)
            except Exception:  # noqa: BLE001 - storing a copy must not stop the recording
                log.exception("segment store failed")
        if self.live_hls is not None and not self._canceled:
            self.live_hls.put(path)  # queued: the upload never holds up the capture
        # Probed now, not at Stop (package.closed_segment_facts remembers it).
        self._background(closed_segment_facts(path, self.settings))
        if self.idle_watch.wanted and self.status.status == Phase.RECORDING \
                and self.status.cancel_time is None:
            self._background(self._look(path))
        self._update()

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Segment work that must not hold up the loop; kept referenced until done."""
        task = asyncio.get_running_loop().create_task(work)
        self._segment_work.add(task)
        task.add_done_callback(self._segment_work.discard)

    async def _look(self, path: Path) -> None:
        """Judge a closed segment for an idle or blank page; the verdict goes to the loop."""
        verdict = await self.idle_watch.feed(path)
        if verdict is not None:
            self._queue.put_nowait(("idle", verdict, None, None))

    async def _idle(self, verdict: str, phase: Phase) -> None:
        if phase != Phase.RECORDING:
            return
        watch = self.idle_watch
        if verdict == "blank":
            raise RecorderError(ErrorCode.PAGE_BLANK,
                                f"the page stayed blank (one flat colour, no sound) for "
                                f"{watch.blank_for:.0f} s after recording began")
        why = f"the page was unchanged and silent for {watch.still_for:.0f} s"
        event(log, "page idle", action=self.spec.idle.action if self.spec.idle else "stop",
              still_for=round(watch.still_for, 2))
        if self.spec.idle is not None and self.spec.idle.action == "pause":
            await self._apply(Action.PAUSE, phase)
            self._update(message=f"paused: {why}")
        else:
            await self._stop(f"stopped: {why}")

    def segment_paths(self) -> list[Path]:
        """Every segment of the task so far, in order (stored ones first)."""
        return [*self.stored.segments,
                *(p for c in self.captures for p in (c.paths or [c.path]))]

    async def _close_segment(self, torn: bool = False) -> None:
        """Stop the current capture and store its last segment; `torn`: ffmpeg died mid-write
        (a full disk), so the segment's partly written last packet goes first."""
        capture, self.current = self.current, None
        if capture is not None:
            await capture.stop()
            last = capture.last_path
            if last is not None and last.exists() and last.stat().st_size > 0:
                if torn:
                    await drop_torn_tail(last, self.settings)
                self._segment_closed(last)

    def _wall_left(self) -> float:
        """Seconds until the task's wall-clock cap (from createTime; survives replacements)."""
        created = float(self.status.create_time or now())
        return created + self.settings.max_wall_seconds - time.time()

    def _deadline(self) -> float | None:
        """Seconds until the next timer fires in the current phase."""
        phase = self.status.status
        if phase == Phase.NORMAL:
            left = self._created + self.manual_start_timeout - time.monotonic()
        elif phase == Phase.RECORDING:
            left = self.spec.max_duration_limit - self.recorded_seconds()
        elif phase == Phase.PAUSED:
            left = self._paused_since + self.settings.max_paused_seconds - time.monotonic()
        else:
            return None
        return min(left, self._wall_left())

    async def _loop(self) -> None:
        while True:
            timeout = self._deadline()
            try:
                kind, arg, future, seq = await asyncio.wait_for(self._queue.get(), max(timeout, 0) if timeout is not None else None)
            except (asyncio.TimeoutError, TimeoutError):
                try:
                    await self._timer_fired()
                except _Stop:
                    pass
                return
            try:
                await self._handle(kind, arg, seq)
            except (_Stop, _Suspend):
                if future is not None and not future.done():
                    future.set_result(self.status)
                return
            except InvalidAction as exc:
                if future is not None and not future.done():
                    future.set_exception(exc)
                continue
            except RecorderError as exc:
                if future is not None and not future.done():
                    future.set_exception(InvalidAction(exc.message))
                raise
            if future is not None and not future.done():
                future.set_result(self.status)

    async def _timer_fired(self) -> None:
        phase = self.status.status
        if self._wall_left() <= 0:
            event(log, "auto stop", reason="wall-clock cap reached",
                  max_wall_seconds=self.settings.max_wall_seconds)
            await self._stop(f"stopped: the task reached its wall-clock cap "
                             f"({self.settings.max_wall_seconds:g} s since it was created)")
        if phase == Phase.NORMAL:
            raise RecorderError(
                ErrorCode.MANUAL_START_TIMEOUT,
                f"the page did not call window.startRecord() within {self.manual_start_timeout:g} s")
        reason = "maxDurationLimit reached" if phase == Phase.RECORDING else "paused too long"
        event(log, "auto stop", reason=reason)
        await self._stop(reason)

    async def _handle(self, kind: str, arg: Any, seq: int | None) -> None:
        phase = self.status.status
        if kind == "tick":
            return
        if kind == "suspend":
            self.suspended = True
            event(log, "suspending: the task continues in a new recorder", phase=phase.value)
            raise _Suspend
        if kind == "start":
            if phase == Phase.NORMAL:
                await self._start_recording()
            return
        if kind == "crash":
            what, generation = arg
            if self.browser is not None and generation == self.browser.launches:
                await self._recover_browser(what)
            return
        if kind == "encoder":
            if arg is self.current:
                await self._recover_encoder(arg)
            return
        if kind == "idle":
            await self._idle(arg, phase)
            return
        action: Action = arg
        if seq is not None:
            if seq <= self.status.last_action_seq:
                return
        if seq is not None and action in (Action.STOP, Action.CANCEL):
            self.status.last_action_seq = seq  # _apply does not return for these
        await self._apply(action, phase)
        if seq is not None:
            self._update(last_action_seq=seq)

    async def _apply(self, action: Action, phase: Phase) -> None:
        if action == Action.PAUSE:
            if phase != Phase.RECORDING:
                raise InvalidAction(f"Pause does not apply: the task is {phase.value}")
            await self._close_segment()
            self._paused_since = time.monotonic()
            self.live.pause(True)
            self._update(status=Phase.PAUSED, message="paused")
        elif action == Action.RESUME:
            if phase != Phase.PAUSED:
                raise InvalidAction(f"Resume does not apply: the task is {phase.value}")
            self.idle_watch.reset()
            await self._open_segment()
            self.live.pause(False)
            self._update(status=Phase.RECORDING, message="recording")
        elif action == Action.REFRESH:
            assert self.browser is not None
            await self.browser.reload()
            self._update(message="page reloaded")
        elif action in (Action.STOP, Action.CANCEL):
            self._canceled = action == Action.CANCEL
            await self._stop("canceled" if self._canceled else "stopped")

    async def _stop(self, reason: str) -> None:
        self._update(cancel_time=now(), message=reason)
        await self._close_segment()
        self._update(status=Phase.CANCELED,
                     stop_time=now() if self.status.start_time is not None else None)
        raise _Stop

    async def _recover_browser(self, what: str) -> None:
        """Relaunch a crashed Chromium on the task's page. The capture keeps running meanwhile
        (it grabs the display, not the browser): the video shows the relaunch as it happened,
        with no cut in its timeline, and no recorded second is lost."""
        assert self.browser is not None
        self._browser_restarts += 1
        if self._browser_restarts > self.settings.max_browser_restarts:
            raise RecorderError(ErrorCode.BROWSER_CRASHED,
                                f"Chromium crashed {self._browser_restarts} times ({what}); giving up")
        event(log, "restarting chromium", logging.WARNING, what=what, restarts=self._browser_restarts)
        self._update(message=f"Chromium {what} crashed; restarting")
        await self.browser.close_browser()
        await self.browser.launch(self.spec.record_url)
        if self.status.status == Phase.RECORDING:
            self._update(message="recording (browser restarted)")

    async def _recover_encoder(self, capture: Capture) -> None:
        if capture.disk_full:
            await self._disk_full(capture)
        await self._close_segment()
        self._encoder_restarts += 1
        if self._encoder_restarts > self.settings.max_encoder_restarts:
            raise RecorderError(ErrorCode.ENCODER_FAILED,
                                f"ffmpeg failed {self._encoder_restarts} times: {capture.error_text()}")
        event(log, "restarting ffmpeg", logging.WARNING, restarts=self._encoder_restarts)
        await self._open_segment()
        self._update(message="recording (encoder restarted)")

    async def _disk_full(self, capture: Capture) -> None:
        """The disk filled while recording. The reserve's room lets the segment that hit the
        limit lose its torn last packet and be stored, so everything recorded until then is
        kept and packaged below. Without a reserve there may be no room for either: the
        segment stays as it is, and packaging ends in DiskFull when it cannot write."""
        freed = self.reserve.release()
        await self._close_segment(torn=True)
        kept = [p for p in self.segment_paths() if p.exists() and p.stat().st_size > 0]
        self._update()
        raise RecorderError(
            ErrorCode.DISK_FULL, f"disk full while recording ({capture.error_text()}); "
            f"recorded until then: {len(kept)} segments kept in {self.seg_dir}"
            + ("" if freed else " (no disk reserve held: the last one may be cut short)"))

    def _reject_pending(self) -> None:
        while not self._queue.empty():
            _, _, future, _ = self._queue.get_nowait()
            if future is not None and not future.done():
                future.set_exception(InvalidAction(f"the task is {self.status.status.value}"))

    async def _teardown(self) -> None:
        """Stop every child; safe to call twice and on any exit path."""
        await self._close_segment()
        await self.live.close()
        if self._segment_work:  # a probe or look at a segment: short (one ffmpeg), let it end
            await asyncio.wait(set(self._segment_work), timeout=10)
        self.reserve.release()
        for capture in self.captures:
            if capture.running:
                await capture.stop()
        stage, self.stage = self.stage, None
        if stage is not None:
            await stage.close()

    def _discard_segments(self) -> None:
        shutil.rmtree(self.seg_dir, ignore_errors=True)

    async def _package(self) -> Packaged | None:
        segments = await usable_segments(self.segment_paths(), self.settings,
                                         audio_only=self.encoding.audio_only)
        if not segments:
            return None
        video = self.spec.output.video
        if video.muxer == "hls":
            packaged = await package_hls(segments, self.output, self.work_dir, self.settings,
                                         video.encrypt_key, video.auth_url)
        else:
            packaged = await package_mp4(segments, self.output, self.work_dir, self.settings)
        return await take_snapshots(packaged, self.spec.output.snapshots, self.settings)

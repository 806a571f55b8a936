"""The recording engine end to end: a real X server (Xorg dummy, or Xvfb), PulseAudio, Chromium and ffmpeg on local pages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from webrecord.api.models import Action, ErrorCode, Phase, RecordingSpec, RecordingTask
from webrecord.recorder.errors import InvalidAction
from webrecord.recorder.session import Session
from webrecord.recorder.settings import RecorderSettings

from .conftest import marked_processes
from .media import assert_av, mean_volume_db, mp4_top_level_boxes

pytestmark = pytest.mark.browser


def make_session(tmp_path: Path, url: str, settings: RecorderSettings | None = None,
                 manual_start_timeout: float | None = None, **spec) -> tuple[Session, list]:
    task = RecordingTask(task_id="t1", spec=RecordingSpec(record_url=url, **spec))
    history: list = []
    # Segment counts asserted here come from Pause/Resume only: no timed rotation (a cut at each
    # 10 s multiple of the wall clock) unless a test asks for it (see test_rotation.py).
    session = Session(task, tmp_path / "work", settings or RecorderSettings(segment_seconds=3600),
                      on_status=lambda st: history.append((st.status, st.message, st.segments,
                                                          time.monotonic())),
                      manual_start_timeout=manual_start_timeout)
    return session, history


@contextlib.asynccontextmanager
async def running(session: Session):
    """session.run() as a task that is always finished (children stopped) when the test ends."""
    task = asyncio.create_task(session.run())
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        await asyncio.wait([task], timeout=30)


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_records_page_with_sound_until_max_duration(tmp_path, page_server):
    session, _ = make_session(tmp_path, f"{page_server}/recorder_sound.html", max_duration_limit=4)
    started = time.monotonic()
    async with running(session) as run:
        status = await asyncio.wait_for(run, 40)
    assert status.result.error_code is None, status.result
    assert status.status == Phase.TRANSCODE and status.segments == 1
    out = session.packaged.path
    assert out.suffix == ".mp4" and session.packaged.muxer == "mp4"
    info = assert_av(out, 1280, 720)  # 0/unset means the protocol's default size
    assert 3.3 <= info["duration"] <= 5.0, info
    assert abs(session.packaged.duration - info["duration"]) < 0.01
    assert mean_volume_db(out) > -25, "the page's tone must be audible"
    boxes = mp4_top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart
    assert status.start_time and status.stop_time and status.cancel_time
    assert time.monotonic() - started < 20


@pytest.mark.timeout(60)
async def test_pause_is_not_in_the_output(tmp_path, page_server):
    session, history = make_session(tmp_path, f"{page_server}/recorder_sound.html", width=640, height=360)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        first_recording = session.captures[0].spawned
        await asyncio.sleep(2)
        st = await session.control(Action.PAUSE, 1)
        assert st.status == Phase.PAUSED
        # Rotation (every segment_seconds, at the wall-clock multiple) may have cut one already.
        segments_at_pause = st.segments
        assert segments_at_pause >= 1
        with pytest.raises(InvalidAction):
            await session.control(Action.PAUSE)
        await asyncio.sleep(3)
        st = await session.control(Action.RESUME, 2)
        # Nothing is cut while paused; Resume opens exactly one new segment.
        assert st.status == Phase.RECORDING and st.segments == segments_at_pause + 1
        await asyncio.sleep(2)
        t0 = time.monotonic()
        st = await session.control(Action.STOP, 3)
        stop_latency = time.monotonic() - t0
        assert st.status == Phase.CANCELED and st.last_action_seq == 3
        wall = time.monotonic() - first_recording
        status = await asyncio.wait_for(run, 30)
        assert status.result.error_code is None
        info = assert_av(session.packaged.path, 640, 360)
        # The output is the recorded time (~4 s), not the wall time (~7 s): 3 s were paused.
        assert abs(info["duration"] - status.recorded_seconds) < 0.5, (info, status)
        assert 3.2 <= status.recorded_seconds <= wall - 2.5, (status, wall)
        assert stop_latency < 2.0
        assert [h[0] for h in history].count(Phase.PAUSED) >= 1


@pytest.mark.timeout(60)
async def test_refresh_reloads_and_recording_continues(tmp_path, page_server):
    session, history = make_session(tmp_path, f"{page_server}/recorder_sound.html", width=640, height=360)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        await asyncio.sleep(1)
        await session.control(Action.REFRESH, 1)
        await session.control(Action.REFRESH, 2)
        await session.control(Action.REFRESH, 2)  # a retried forward: applied once
        assert await session.browser.page.evaluate("window.loadCount") == 3
        await asyncio.sleep(1.5)
        await session.control(Action.STOP, 3)
        status = await asyncio.wait_for(run, 30)
        assert status.result.error_code is None and status.segments == 1
        info = assert_av(session.packaged.path, 640, 360)
        assert info["duration"] >= 2.2, info
        assert any(h[1] == "page reloaded" for h in history)


@pytest.mark.timeout(60)
async def test_manual_start_begins_on_start_record(tmp_path, page_server):
    url = f"{page_server}/recorder_hooks.html?load1=start:1500"
    session, _ = make_session(tmp_path, url, manual_start=True, max_duration_limit=3,
                              width=640, height=360)
    async with running(session) as run:
        await wait_for(lambda: session.browser is not None and session.browser.page is not None)
        await asyncio.sleep(0.5)
        assert session.status.status == Phase.NORMAL and not session.captures
        with pytest.raises(InvalidAction):
            await session.control(Action.RESUME)  # nothing paused yet
        # A Pause before the start is kept for it; a Resume takes it back. The recording then
        # starts on window.startRecord() as if neither had been sent.
        st = await session.control(Action.PAUSE, 1)
        assert st.status == Phase.NORMAL and "starts paused" in st.message
        st = await session.control(Action.RESUME, 2)
        assert st.status == Phase.NORMAL and st.last_action_seq == 2 and not session.captures
        status = await asyncio.wait_for(run, 40)
        assert status.result.error_code is None
        assert status.start_time is not None and status.start_time >= status.create_time + 1
        info = assert_av(session.packaged.path, 640, 360)
        assert 2.3 <= info["duration"] <= 4.2, info


@pytest.mark.timeout(60)
async def test_manual_start_timeout_is_a_clear_error(tmp_path, page_server):
    session, _ = make_session(tmp_path, f"{page_server}/recorder_hooks.html", manual_start=True,
                              manual_start_timeout=2, width=320, height=240)
    started = time.monotonic()
    async with running(session) as run:
        status = await asyncio.wait_for(run, 40)
    assert status.result.error_code == ErrorCode.MANUAL_START_TIMEOUT
    assert "startRecord" in status.result.error_message and "2 s" in status.result.error_message
    assert session.packaged is None and status.start_time is None
    assert time.monotonic() - started < 15


@pytest.mark.timeout(60)
async def test_page_hooks_pause_resume_refresh_stop(tmp_path, page_server):
    url = (f"{page_server}/recorder_hooks.html"
           "?load1=pause:1500,resume:4500,refresh:5000&load2=stop:1000")
    session, history = make_session(tmp_path, url, width=640, height=360)
    async with running(session) as run:
        status = await asyncio.wait_for(run, 40)
    assert status.result.error_code is None, status.result
    phases = [h[0] for h in history]
    assert Phase.PAUSED in phases
    assert any(h[1] == "page reloaded" for h in history)
    assert status.segments == 2
    info = assert_av(session.packaged.path, 640, 360)
    # The 3 s paused (4.5 - 1.5 after load) is not in the output.
    first = session.captures[0].spawned
    last = next(h[3] for h in history if h[0] == Phase.CANCELED)
    assert abs(info["duration"] - status.recorded_seconds) < 0.5, (info, status)
    assert 1.0 <= status.recorded_seconds <= (last - first) - 2.5, (status, last - first)


@pytest.mark.timeout(60)
async def test_page_that_fails_to_load(tmp_path):
    import socket
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session, _ = make_session(tmp_path, f"http://127.0.0.1:{port}/", width=320, height=240)
    started = time.monotonic()
    async with running(session) as run:
        status = await asyncio.wait_for(run, 40)
    assert status.result.error_code == ErrorCode.PAGE_LOAD_FAILED
    assert f"127.0.0.1:{port}" in status.result.error_message
    assert "ERR_CONNECTION_REFUSED" in status.result.error_message
    assert session.packaged is None
    assert time.monotonic() - started < 15


@pytest.mark.timeout(60)
async def test_http_error_page_fails_to_load(tmp_path, page_server):
    session, _ = make_session(tmp_path, f"{page_server}/no-such-page.html", width=320, height=240)
    async with running(session) as run:
        status = await asyncio.wait_for(run, 40)
    assert status.result.error_code == ErrorCode.PAGE_LOAD_FAILED
    assert "HTTP 404" in status.result.error_message


def _chromium_pids(mark: str, renderer: bool) -> list[int]:
    """The browser process, or the renderers that may host the page (Chromium rewrites its
    argv into one string, hence the substring tests)."""
    pids = []
    for pid, comm in marked_processes(mark):
        if "chrom" not in comm or "crashpad" in comm:
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if renderer and "--type=renderer" in cmdline and "--top-chrome-webui" not in cmdline \
                and "--extension-process" not in cmdline:
            pids.append(pid)
        if not renderer and "--type=" not in cmdline:
            pids.append(pid)
    return pids


def _relaunched(history: list) -> int:
    return sum(1 for h in history if "browser restarted" in (h[1] or ""))


@pytest.mark.timeout(90)
async def test_chromium_crash_is_recovered_without_a_cut(tmp_path, page_server, no_leftover_processes):
    """A dead renderer and then a dead browser are relaunched while the capture runs on: one
    ffmpeg from Start to Stop, and the video as long as the time recorded (nothing lost)."""
    session, history = make_session(tmp_path, f"{page_server}/recorder_sound.html", width=640, height=360)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        capture = session.current
        begun = time.monotonic()
        await asyncio.sleep(2)
        # The renderer dies: the page's 'crash' event.
        renderers = _chromium_pids(no_leftover_processes, renderer=True)
        assert renderers
        for pid in renderers:
            os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: _relaunched(history) == 1, 30)
        await asyncio.sleep(2)
        # The whole browser dies: the context's 'close' event.
        browsers = _chromium_pids(no_leftover_processes, renderer=False)
        assert len(browsers) == 1
        os.kill(browsers[0], signal.SIGKILL)
        await wait_for(lambda: _relaunched(history) == 2, 30)
        await asyncio.sleep(2)
        assert session.current is capture and capture.running  # never stopped
        await session.control(Action.STOP)
        recorded = time.monotonic() - begun
        status = await asyncio.wait_for(run, 30)
        assert status.result.error_code is None, status.result
        assert session.browser is None
        assert sum(1 for h in history if "crashed" in (h[1] or "")) == 2, history
        info = assert_av(session.packaged.path, 640, 360)
        # The capture's first frame comes a little after started_event; Stop ends it at once.
        assert recorded - 0.6 <= info["duration"] <= recorded + 0.6, (info, recorded)


@pytest.mark.timeout(60)
async def test_browser_crashing_too_often_ends_with_browser_crashed(tmp_path, page_server, no_leftover_processes):
    settings = RecorderSettings(max_browser_restarts=0)
    session, _ = make_session(tmp_path, f"{page_server}/recorder_sound.html", settings=settings,
                              width=320, height=240)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        await asyncio.sleep(2)
        for pid in _chromium_pids(no_leftover_processes, renderer=False):
            os.kill(pid, signal.SIGKILL)
        status = await asyncio.wait_for(run, 30)
        assert status.result.error_code == ErrorCode.BROWSER_CRASHED
        # What was recorded before the crash is still delivered, as a valid file.
        assert_av(session.packaged.path, 320, 240)


@pytest.mark.timeout(60)
async def test_ffmpeg_killed_is_recovered_then_gives_up(tmp_path, page_server):
    settings = RecorderSettings(max_encoder_restarts=1)
    session, _ = make_session(tmp_path, f"{page_server}/recorder_sound.html", settings=settings,
                              width=320, height=240)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        await asyncio.sleep(2)
        os.kill(session.current.proc.pid, signal.SIGKILL)
        await wait_for(lambda: session.status.segments == 2 and session.current is not None
                       and session.current.running)
        await asyncio.sleep(2)
        assert session.status.status == Phase.RECORDING
        os.kill(session.current.proc.pid, signal.SIGKILL)  # second death: over the limit of 1
        status = await asyncio.wait_for(run, 30)
        assert status.result.error_code == ErrorCode.ENCODER_FAILED
        assert "ffmpeg failed 2 times" in status.result.error_message
        info = assert_av(session.packaged.path, 320, 240)
        assert 3.0 <= info["duration"] <= 5.8, info  # ~2 s + ~2 s


@pytest.mark.timeout(60)
async def test_cancel_produces_no_video(tmp_path, page_server):
    session, _ = make_session(tmp_path, f"{page_server}/recorder_sound.html", width=320, height=240)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        await asyncio.sleep(1)
        await session.control(Action.CANCEL, 1)
        status = await asyncio.wait_for(run, 30)
        assert status.result.error_code == ErrorCode.CANCELED
        assert session.packaged is None
        assert not (tmp_path / "work" / "segments").exists()
        with pytest.raises(InvalidAction):
            await session.control(Action.RESUME)

"""The frame-locked capture: Xorg's dummy display at the capture's rate (xorgconf, display),
the grabber's stream format (mkvraw), its phase rule (framephase) and the whole path on a real
Xorg, Chromium and ffmpeg (framegrab through a Session)."""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webrecord.api.models import Action, Phase
from webrecord.recorder import framephase, mkvraw, xorgconf
from webrecord.recorder.display import Display
from webrecord.recorder.settings import RecorderSettings

from .media import assert_av
from .test_session import make_session, running, wait_for

BENCH = Path(__file__).resolve().parents[2] / "bench" / "recorder"
needs_xorg = pytest.mark.skipif(not Path(RecorderSettings().xorg_path).exists(),
                                reason="Xorg (xserver-xorg-core, scripts/install.sh) not installed")


# ---- mkvraw: what ffmpeg reads --------------------------------------------------------------

def _ffmpeg_frames(args: list[str], stdin: bytes | None = None) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", *args], input=stdin, capture_output=True,
                          check=True, timeout=30).stdout


def test_mkvraw_stream_is_read_by_ffmpeg_pixel_exact_with_its_times():
    width, height = 64, 32
    frame_bytes = width * height * 4
    raw = _ffmpeg_frames(["-f", "lavfi", "-i", f"testsrc=s={width}x{height}", "-frames", "3",
                          "-pix_fmt", "bgr0", "-f", "rawvideo", "-"])
    times_us = [5_000_000, 5_033_100, 5_070_000]  # uneven on purpose: each frame keeps its own
    stream = mkvraw.stream_header(width, height, 30) + b"".join(
        mkvraw.frame_head(t, frame_bytes) + raw[i * frame_bytes:(i + 1) * frame_bytes]
        for i, t in enumerate(times_us))
    back = _ffmpeg_frames(["-f", "matroska", "-i", "-", "-f", "rawvideo", "-pix_fmt", "bgr0", "-"],
                          stdin=stream)
    assert back == raw
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-f", "matroska", "-i", "-", "-show_entries",
         "frame=pts_time:stream=pix_fmt,r_frame_rate", "-of", "csv=p=0"], input=stream,
        capture_output=True, check=True, timeout=30).stdout.decode().split()
    assert "bgr0,30/1" in probe  # the nominal rate reaches the encoder (H.264 timing)
    assert [float(v) for v in probe if "bgr0" not in v] == [5.0, 5.0331, 5.07]


def test_mkvraw_refuses_a_time_before_the_epoch():
    with pytest.raises(ValueError, match="unsigned"):
        mkvraw.frame_head(-1, 16)


# ---- framephase: where to grab ----------------------------------------------------------------

PERIOD = 1 / 30


def test_capture_phase_is_half_a_period_from_the_presentations_across_the_wrap():
    # Presentations straddle the period's end (32 ms and 1 ms): their mean is ~0.1 ms, not 16.
    times = [k * PERIOD + (0.032 if k % 2 else 0.001) for k in range(20)]
    presented = framephase.presentation_phase(times, PERIOD)
    assert presented is not None
    assert min(presented, PERIOD - presented) < 0.001
    want = framephase.capture_phase(times, PERIOD)
    assert want is not None and abs(want - (presented + PERIOD / 2) % PERIOD) < 1e-9


def test_capture_phase_needs_enough_presentations():
    assert framephase.capture_phase([0.0, PERIOD, 2 * PERIOD], PERIOD) is None


def test_phase_error_takes_the_short_way_round():
    assert math.isclose(framephase.phase_error(0.001, 0.032, PERIOD), 0.032 - 0.001 - PERIOD)
    assert math.isclose(framephase.phase_error(0.032, 0.001, PERIOD), PERIOD - 0.031)
    assert math.isclose(framephase.phase_error(0.010, 0.020, PERIOD), 0.010)


def test_next_capture_moves_a_little_when_steady_and_fast_when_catching_up():
    previous = 100 * PERIOD  # phase 0
    want = 0.010
    steady = framephase.next_capture(previous, want, PERIOD, catching_up=False)
    assert math.isclose(steady - previous, PERIOD + framephase.STEADY_STEP)
    fast = framephase.next_capture(previous, want, PERIOD, catching_up=True)
    assert math.isclose(fast - previous, PERIOD + framephase.CATCH_UP_STEP_MAX)
    slow_rate = 1 / 60  # a quarter period (4.2 ms) is more than the cap, so the cap holds
    assert math.isclose(framephase.next_capture(100 * slow_rate, 0.008, slow_rate, True)
                        - 100 * slow_rate, slow_rate + framephase.CATCH_UP_STEP_MAX)
    tiny = 1 / 120  # here a quarter period (2.1 ms) is the limit
    assert math.isclose(framephase.next_capture(0.0, 0.004, tiny, True),
                        tiny + tiny * framephase.CATCH_UP_STEP_FRACTION)
    close = framephase.next_capture(previous, 0.0002, PERIOD, catching_up=True)
    assert math.isclose(close - previous, PERIOD + 0.0002)  # no overshoot
    assert framephase.next_capture(previous, None, PERIOD, catching_up=True) == previous + PERIOD


def test_stamps_stay_on_the_nominal_grid_within_the_slack_of_the_grabs():
    # Grabs following a display 0.4% fast (15.06 Hz at 15 fps): the stamps keep the nominal
    # step except when they move back to the grabs, and never sit more than the slack away.
    period, fast = 1 / 15, 1 / 15.06
    slot, stamps = 0.0, []
    for k in range(200):
        grabbed = k * fast
        slot = framephase.stamp_slot(slot, grabbed)
        stamps.append(slot)
        assert abs(slot - grabbed) <= framephase.STAMP_SLACK
        slot += period
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    nominal = sum(1 for d in steps if math.isclose(d, period, abs_tol=1e-9))
    assert nominal >= 0.9 * len(steps), steps  # ~1 move in 15 frames
    assert all(period - 2 * framephase.STAMP_SLACK <= d <= period + 1e-9 for d in steps)


# ---- xorgconf and the display ---------------------------------------------------------------

@pytest.mark.parametrize("width,height,refresh", [
    (1280, 720, 30), (1920, 1080, 30), (2560, 2560, 30), (1279, 719, 15), (640, 480, 60),
    (200, 128, 1), (2560, 1440, 24)])
def test_mode_refreshes_at_exactly_the_rate_with_a_whole_khz_clock(width, height, refresh):
    clock, htotal, vtotal = xorgconf.mode_timings(width, height, refresh)
    assert xorgconf.refresh_of(clock, htotal, vtotal) == refresh
    assert htotal >= width + 32 and vtotal >= height + 6  # the sync pulses fit the blanking
    assert xorgconf.fits(width, height, refresh)


@pytest.mark.parametrize("width,height,refresh", [(2560, 2560, 60), (199, 720, 30), (640, 100, 30)])
def test_sizes_the_dummy_driver_cannot_show_do_not_fit(width, height, refresh):
    assert not xorgconf.fits(width, height, refresh)


def _randr_refresh(display: str) -> tuple[int, int, float]:
    """(width, height, refresh) of the current mode of the display's first CRTC, as a client
    such as Chromium reads it (XRandR)."""
    class ModeInfo(ctypes.Structure):
        _fields_ = [("id", ctypes.c_ulong), ("width", ctypes.c_uint), ("height", ctypes.c_uint),
                    ("dotClock", ctypes.c_ulong), ("hSyncStart", ctypes.c_uint),
                    ("hSyncEnd", ctypes.c_uint), ("hTotal", ctypes.c_uint), ("hSkew", ctypes.c_uint),
                    ("vSyncStart", ctypes.c_uint), ("vSyncEnd", ctypes.c_uint),
                    ("vTotal", ctypes.c_uint), ("name", ctypes.c_char_p),
                    ("nameLength", ctypes.c_uint), ("modeFlags", ctypes.c_ulong)]

    class ScreenResources(ctypes.Structure):
        _fields_ = [("timestamp", ctypes.c_ulong), ("configTimestamp", ctypes.c_ulong),
                    ("ncrtc", ctypes.c_int), ("crtcs", ctypes.POINTER(ctypes.c_ulong)),
                    ("noutput", ctypes.c_int), ("outputs", ctypes.POINTER(ctypes.c_ulong)),
                    ("nmode", ctypes.c_int), ("modes", ctypes.POINTER(ModeInfo))]

    class CrtcInfo(ctypes.Structure):
        _fields_ = [("timestamp", ctypes.c_ulong), ("x", ctypes.c_int), ("y", ctypes.c_int),
                    ("width", ctypes.c_uint), ("height", ctypes.c_uint), ("mode", ctypes.c_ulong)]

    x11 = ctypes.CDLL("libX11.so.6")
    xrandr = ctypes.CDLL("libXrandr.so.2")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xrandr.XRRGetScreenResourcesCurrent.restype = ctypes.POINTER(ScreenResources)
    xrandr.XRRGetScreenResourcesCurrent.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    xrandr.XRRGetCrtcInfo.restype = ctypes.POINTER(CrtcInfo)
    xrandr.XRRGetCrtcInfo.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong]
    dpy = x11.XOpenDisplay(display.encode())
    assert dpy, f"cannot open {display}"
    try:
        res = xrandr.XRRGetScreenResourcesCurrent(dpy, x11.XDefaultRootWindow(dpy)).contents
        for c in range(res.ncrtc):
            crtc = xrandr.XRRGetCrtcInfo(dpy, ctypes.byref(res), res.crtcs[c]).contents
            if not crtc.mode:
                continue
            for m in range(res.nmode):
                mode = res.modes[m]
                if mode.id == crtc.mode:
                    return crtc.width, crtc.height, mode.dotClock / (mode.hTotal * mode.vTotal)
        raise AssertionError("no active mode")
    finally:
        x11.XCloseDisplay(dpy)


@needs_xorg
@pytest.mark.timeout(30)
async def test_display_is_xorg_at_the_capture_rate(tmp_path):
    display = Display(1280, 720, RecorderSettings(), tmp_path, refresh=25)
    await display.start()
    try:
        assert display.server == "xorg" and display.frame_locked
        width, height, refresh = _randr_refresh(display.name)
        assert (width, height) == (1280, 720)
        assert refresh == pytest.approx(25.0, abs=1e-6)
    finally:
        await display.stop()
    assert (tmp_path / "xorg.log").exists()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", ["missing", "crashes", "too small", "above 1080p", "xvfb asked",
                                  "no rate"])
async def test_display_falls_back_to_xvfb(tmp_path, case):
    broken = tmp_path / "Xorg-broken"
    broken.write_text("#!/bin/sh\necho 'Fatal server error: no screens found' >&2\nexit 1\n")
    broken.chmod(0o755)
    settings = RecorderSettings(
        xorg_path={"missing": str(tmp_path / "nowhere"), "crashes": str(broken)}.get(
            case, RecorderSettings().xorg_path),
        display_server="xvfb" if case == "xvfb asked" else "xorg")
    width, height = {"too small": (150, 100), "above 1080p": (1920, 1082)}.get(case, (320, 240))
    display = Display(width, height, settings, tmp_path, refresh=None if case == "no rate" else 30)
    await display.start()
    try:
        assert display.server == "xvfb" and not display.frame_locked
        assert display.name.startswith(":")
    finally:
        await display.stop()
    if case == "crashes":
        assert "no screens found" in (tmp_path / "xorg-stderr.log").read_text()


# ---- the whole path ---------------------------------------------------------------------------

def _fidelity(path: Path):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    from recbench.analysis import analyse_barcode_video

    fidelity, _codes = analyse_barcode_video(path, 30)
    return fidelity


@needs_xorg
@pytest.mark.browser
@pytest.mark.timeout(90)
async def test_frame_locked_recording_takes_each_page_frame_once(tmp_path, bench_pages):
    """Chromium draws at the display's 30 Hz (60 on Xvfb) and each grab shows the next page
    frame: no repeats, no missing slots."""
    session, _ = make_session(tmp_path, f"{bench_pages}/frames.html?t0={int(time.time() * 1000)}",
                              max_duration_limit=5)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 40)
        assert session.display.frame_locked and session.current.grabber is not None
        status = await asyncio.wait_for(run, 40)
    assert status.result.error_code is None, status.result
    fidelity = _fidelity(session.packaged.path)
    assert fidelity.window >= 120, fidelity
    assert fidelity.page_fps == pytest.approx(30, abs=1.5), fidelity  # Chromium at the display's rate
    assert fidelity.captured_fps == pytest.approx(30, abs=0.3), fidelity
    # One repeat or missing slot in 150 is allowed for a loaded test machine; the bench measures.
    assert fidelity.repeats + fidelity.missing_slots <= 2, fidelity
    assert fidelity.good / fidelity.window >= 0.98, fidelity
    # Evenly stamped: ffprobe reads the task's rate (uneven stamps at the start read as 240/1).
    rate = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                           "stream=r_frame_rate", "-of", "csv=p=0", str(session.packaged.path)],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert rate == "30/1", rate


@needs_xorg
@pytest.mark.browser
@pytest.mark.timeout(90)
async def test_grabber_killed_is_recovered_like_the_encoder(tmp_path, page_server):
    """A dead grabber ends ffmpeg's input: the capture restarts (a new segment), the recording
    goes on, and what was grabbed before is delivered."""
    session, _ = make_session(tmp_path, f"{page_server}/recorder_sound.html", width=320, height=240)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 40)
        await asyncio.sleep(2)
        first = session.current
        os.kill(first.grabber.pid, signal.SIGKILL)
        await wait_for(lambda: session.status.segments == 2 and session.current is not first
                       and session.current.running, timeout=20)
        assert session.current.grabber is not None and session.current.grabber.returncode is None
        await asyncio.sleep(2)
        assert session.status.status == Phase.RECORDING
        await session.control(Action.STOP)
        status = await asyncio.wait_for(run, 40)
    assert status.result.error_code is None, status.result
    info = assert_av(session.packaged.path, 320, 240)
    assert info["duration"] >= 3.0, info  # ~2 s before the kill and ~2 s after
    assert first.grabber.returncode is not None

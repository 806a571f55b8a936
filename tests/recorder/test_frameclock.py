"""The frame clock through the real ffmpeg, fed grab stamps like x11grab's (the probe frame, a
start-up burst, slots plus a random wait, a grabber falling behind): frames come out at least
one step apart, on their slots when on time, on the wall clock when late."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from webrecord.recorder.frameclock import ANCHOR_MOVE_US, frame_step_us, video_clock_filters

STEP = frame_step_us(30)
SLOT0 = 2_000_000  # the first slot, us
# Start-up: ffmpeg opens the sound input after the display, and the grabber catches up on the
# slots it missed (0-9, the first 0.3 s) in a burst.
BURST = 10


def _stamped(grab_times: str, frames: int) -> np.ndarray:
    """Output stamps (us) of `frames` frames grabbed at `grab_times` (an ffmpeg expression of
    N, in us; random(0) is ffmpeg's generator, the same sequence every run)."""
    chain = ",".join([f"settb=1/1000000,setpts='{grab_times}'", *video_clock_filters(30),
                      "showinfo"])
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-f", "lavfi",
         "-i", f"testsrc=size=64x36:rate=30:duration={frames / 30}",
         "-vf", chain, "-fps_mode", "passthrough", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.array([int(p) for p in re.findall(r"\] n:\s*\d+ pts:\s*(\d+)", done.stderr)])


@pytest.mark.timeout(60)
def test_after_a_start_up_burst_frames_land_on_their_slots() -> None:
    # The burst 1 ms apart from 0.3 s on; then each slot plus a wait of 0-12 ms.
    grab = (f"if(lt(N,{BURST}),{SLOT0}+300000+N*1000,"
            f"{SLOT0}+N*{STEP}+floor(random(0)*12000))")
    stamps = _stamped(grab, 300)
    assert np.all(np.diff(stamps) >= STEP), np.diff(stamps)  # never two in one frame slot
    # The last 250 frames are all there, one step apart, each on its own slot (to within the
    # anchor's tolerance over the least wait seen), not on the burst's late clock.
    settled = stamps[-250:]
    late = settled - (SLOT0 + np.arange(50, 300) * STEP)
    assert np.all((late >= 0) & (late <= ANCHOR_MOVE_US + 1000)), late
    assert np.all(np.diff(settled) == STEP)


@pytest.mark.timeout(60)
def test_a_steady_grabber_loses_no_frame_but_the_probe_frame() -> None:
    stamps = _stamped(f"{SLOT0}+N*{STEP}+floor(random(0)*1500)", 200)
    assert len(stamps) == 199 and np.all(np.diff(stamps) == STEP), np.diff(stamps)
    assert 0 <= stamps[0] - (SLOT0 + STEP) <= 1500


@pytest.mark.timeout(60)
def test_the_probe_frame_does_not_stand_alone_before_the_sound_input_opens() -> None:
    # Frame 0 is grabbed while ffmpeg probes the display (slot 0); opening the sound input then
    # takes 0.4 s, the grabber catches up on slots 1-12 in a burst and is on time from 13 on.
    grab = (f"if(eq(N,0),{SLOT0},if(lte(N,12),{SLOT0}+400000+N*1000,"
            f"{SLOT0}+N*{STEP}+floor(random(0)*3000)))")
    stamps = _stamped(grab, 200)
    assert np.all(np.diff(stamps) == STEP), np.diff(stamps)  # one run, no gap at its start
    assert abs(stamps[0] - (SLOT0 + 400000)) <= STEP, stamps[0] - SLOT0


@pytest.mark.timeout(60)
def test_a_grab_late_by_less_than_a_step_keeps_its_slot() -> None:
    # A busy machine: every 7th grab waits 20-30 ms for the CPU (more than half a step), the
    # next one is on time again. Each keeps its own slot: no gap, no frame dropped.
    late = f"if(eq(mod(N,7),3),20000+floor(random(0)*10000),floor(random(1)*3000))"
    stamps = _stamped(f"{SLOT0}+N*{STEP}+{late}", 200)
    assert len(stamps) == 199 and np.all(np.diff(stamps) == STEP), np.diff(stamps)


@pytest.mark.timeout(60)
def test_a_grabber_falling_behind_stays_on_the_wall_clock() -> None:
    # Each grab 5 ms later than the last slot's (an encoder that cannot keep up): by frame 150
    # the grabber is 0.75 s behind its schedule. Constant-rate output repeated frames to keep
    # the picture on the clock; here the late frames keep their time and leave gaps.
    stamps = _stamped(f"{SLOT0}+N*{STEP}+N*5000", 150)
    assert np.all(np.diff(stamps) % STEP == 0) and np.all(np.diff(stamps) >= STEP)
    last_grab = SLOT0 + 149 * STEP + 149 * 5000
    assert abs(stamps[-1] - last_grab) <= STEP // 2, stamps[-1] - last_grab

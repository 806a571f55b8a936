"""Where in each frame period to capture, given when Chromium presented its recent frames.

On a display refreshing at the capture's rate Chromium presents one frame per period, at a
phase of its own that drifts a little and jumps when it restarts its frame clock. A capture
that lands near the presentations sees some frames twice and misses others (a repeat and a
skip, as the presentation jitters across it); one half a period away from them sees each frame
once. Measured (bench/recorder, three 720p30 recordings at once on 2 cores): capturing 2 ms
before the presentations kept 84-87% of the frames, half a period away 99.1-99.8%."""

from __future__ import annotations

import math
from collections.abc import Sequence

# How far one capture may move against the last: the frames' timestamps stay evenly spaced to
# the eye (33.3 +- 0.5 ms at 30 fps) while the capture follows a drifting phase.
STEADY_STEP = 0.0005
# At the start (and after a jump) the phase is unknown or far off: converge in a few frames,
# by at most a quarter period and 4 ms a frame. Larger steps made uneven frame times that
# ffprobe reads as another rate (a 15 fps file with 50/83 ms steps came out as "60/1").
CATCH_UP_STEP_FRACTION = 0.25
CATCH_UP_STEP_MAX = 0.004
MIN_SAMPLES = 5


def presentation_phase(times: Sequence[float], period: float) -> float | None:
    """The circular mean of the presentation times modulo the period (None: too few)."""
    if len(times) < MIN_SAMPLES:
        return None
    sx = sum(math.cos(2 * math.pi * (t % period) / period) for t in times)
    sy = sum(math.sin(2 * math.pi * (t % period) / period) for t in times)
    if math.hypot(sx, sy) < 1e-9 * len(times):
        return None  # spread evenly: no phase to avoid
    return (math.atan2(sy, sx) / (2 * math.pi) * period) % period


def capture_phase(times: Sequence[float], period: float) -> float | None:
    """Half a period away from where the frames are presented."""
    presented = presentation_phase(times, period)
    return None if presented is None else (presented + period / 2) % period


def phase_error(now_phase: float, want: float, period: float) -> float:
    """The shortest move from now_phase to want, in (-period/2, period/2]."""
    return -((now_phase - want + period / 2) % period - period / 2)


def next_capture(previous: float, want: float | None, period: float, catching_up: bool) -> float:
    """The time of the capture after `previous`: one period on, nudged toward phase `want`."""
    if want is None:
        return previous + period
    limit = (min(period * CATCH_UP_STEP_FRACTION, CATCH_UP_STEP_MAX) if catching_up
             else STEADY_STEP)
    error = phase_error((previous + period) % period, want, period)
    return previous + period + max(-limit, min(limit, error))


# How far a frame's stamp (its slot on an even grid of the nominal rate) may sit from the time
# it was grabbed before the grid is moved to the grab. Chromium's rate is not always exactly
# the display's (15.06 Hz on a 15 Hz mode): grabs that follow it drift off the grid, and stamps
# that followed the grabs exactly made a 15 fps file that ffprobe reads as "181/12".
STAMP_SLACK = 0.004


def stamp_slot(slot: float, grabbed_at: float) -> float:
    """The time to stamp a grab with: its nominal slot, or the grab's own time when the two
    are more than STAMP_SLACK apart (the grid moves there; the intervals stay even otherwise)."""
    return slot if abs(grabbed_at - slot) <= STAMP_SLACK else grabbed_at

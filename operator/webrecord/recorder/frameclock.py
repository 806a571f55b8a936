"""Frame timestamps: each grabbed frame stamped with the time slot it was grabbed in.

x11grab grabs on a fixed schedule (slot k = its start + k * step, step = 1/fps rounded to whole
microseconds; it never skips a slot: a late grab only shortens the next wait) and stamps each
frame with the wall clock after the wait, i.e. its slot plus however long it waited for the
CPU. Two ways to turn that into a file both failed before:
- ffmpeg's constant-rate output rounds the stamps onto a grid of its own, counted from
  timestamp 0, which sits anywhere up to half a frame from the slots: the picture moved against
  the sound by a different amount each run (commit 3e27d14: A/V centres -52..+19 ms);
- passing the stamps through kept their jitter, and consumers that round to the frame rate saw
  repeated timestamps (tests/recorder/test_disk_full's decode check).

Here the grid is the grabber's own: its phase (the anchor) is the earliest slot-0 estimate,
stamp - k * step, i.e. the grab that waited least, and each frame goes to the last grid point
at or before its stamp (ANCHOR_MOVE_US of tolerance). On time, or late by less than a step,
that is its own slot k, exactly one step after the last: a grab that waited 20 ms for a busy
CPU keeps its slot (rounding to the nearest point moved it onto the next slot, whose own frame
was then dropped: a gap, 5-10 per 15 s in each of three 720p30 recordings on 2 cores). A grabber
that falls behind by more (an overloaded machine) leaves a gap where constant-rate output would
repeat a frame, so the picture stays on the sound's clock. The anchor only moves down, and only
by more than ANCHOR_MOVE_US (start-up: ffmpeg opens the sound input after the display, so the
first grabs come late, in a burst); a frame that would land less than one step after the
previous kept one is dropped (select), so consumers never see two frames in one frame slot.

The first frame is dropped too: ffmpeg grabs it while probing the display input, before it
opens the sound input, which takes 0.1-0.4 s on a busy machine; it stood alone before that gap
(up to 11 missing slots at the start of each of three 720p30 recordings starting together).
"""

from __future__ import annotations

# A grab this much earlier than the anchor's schedule moves the anchor (and costs one frame):
# smaller improvements are left, so stamps sit at most this far after their slots.
ANCHOR_MOVE_US = 2000


def frame_step_us(fps: int) -> int:
    """x11grab's step between grab slots: 1/fps rounded to whole microseconds (its time base)."""
    return round(1_000_000 / fps)


def video_clock_filters(fps: int) -> list[str]:
    """ffmpeg video filters, in x11grab's time base of 1/1000000, for the stamps above.

    Registers (st/ld, kept from frame to frame): 0 = this frame's slot-0 estimate, 1 = the
    anchor."""
    step = frame_step_us(fps)
    stamp = (f"st(0,PTS-N*{step});"
             f"st(1,if(eq(N,0)+lt(ld(0),ld(1)-{ANCHOR_MOVE_US}),ld(0),ld(1)));"
             f"ld(1)+(N+floor((ld(0)-ld(1)+{ANCHOR_MOVE_US})/{step}))*{step}")
    keep = f"gt(n,0)*(isnan(prev_selected_pts)+gte(pts-prev_selected_pts,{step}))"
    # Quoted for the filter graph parser: the expressions hold ',' and ';'.
    return [f"setpts='{stamp}'", f"select='{keep}'"]

"""The recorder's audio timestamps (capture.audio_filter) on the real ffmpeg: chunks stamped at
the time their read returned, each late by its own wait, come out sample-counted from the
least-delayed read, and a stall that lost samples starts the count over."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest

from webrecord.recorder.capture import audio_filter, ffmpeg_argv
from webrecord.recorder.encoding import encoding_for
from webrecord.recorder.settings import RecorderSettings

RATE = 48000
CHUNK = 2400  # 50 ms, the default pulse read
_SHOWN = re.compile(r"n:\s*(\d+)\s+pts:\s*(-?\d+)")


def stamped_like_pulse_reads(delay_expr: str, seconds: float, settings: RecorderSettings
                             ) -> tuple[list[int], list[int]]:
    """pts (1/48000 s) of synthetic chunks as a read would stamp them (end of chunk + delay_expr
    samples), and the same chunks after the recorder's filter."""
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info",
            "-f", "lavfi", "-i", f"sine=f=1000:r={RATE}:samples_per_frame={CHUNK}", "-t", str(seconds),
            "-af", f"asetpts='PTS+{CHUNK}+{delay_expr}',ashowinfo,{audio_filter(settings)},ashowinfo",
            "-f", "null", "-"]
    err = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stderr
    stamped: list[int] = []
    out: list[int] = []
    for line in err.splitlines():
        if "Parsed_ashowinfo_1" in line and (m := _SHOWN.search(line)):
            stamped.append(int(m.group(2)))
        elif "Parsed_ashowinfo_3" in line and (m := _SHOWN.search(line)):
            out.append(int(m.group(2)))
    assert len(stamped) == len(out) >= 20
    return stamped, out


def test_reads_that_waited_do_not_move_the_sound() -> None:
    # Every read waits 0-20 ms (random), the first two not at all.
    stamped, out = stamped_like_pulse_reads("if(lt(N,4800),0,random(0)*960)", 5,
                                            RecorderSettings())
    made = [k * CHUNK for k in range(len(out))]  # when each chunk's first sample was made
    assert max(s - m for s, m in zip(stamped, made)) > 2400 + 700  # the jitter is there
    creep = 0.0005 * len(out) * CHUNK  # the anchor may rise 500 ppm between its minima
    for got, want in zip(out, made):
        assert 0 <= got - want <= creep + 1
    # Contiguous but for the creep given back when a quicker read comes: never backwards.
    steps = [b - a for a, b in zip(out, out[1:])]
    assert all(CHUNK - 60 <= step <= CHUNK + 2 for step in steps), steps


def test_a_stall_that_lost_samples_starts_the_count_over() -> None:
    # From the 40th chunk on, reads come 0.5 s later than the samples counted so far
    # (0.5 s of sound lost): from the third such read on, the sound follows the clock.
    stamped, out = stamped_like_pulse_reads(f"if(gte(N,{40 * CHUNK}),{RATE // 2},0)", 6,
                                            RecorderSettings())
    counted = [k * CHUNK for k in range(42)]
    assert all(abs(got - want) <= 2 for got, want in zip(out[:42], counted)), out[:42]
    assert out[42] == 42 * CHUNK + RATE // 2
    assert out[-1] == stamped[-1] - CHUNK


def test_one_late_read_whose_sound_was_kept_moves_nothing() -> None:
    # The 40th read waited 0.3 s (the sound server kept the samples), the next ones did not.
    _, out = stamped_like_pulse_reads(f"if(eq(N,{40 * CHUNK}),{int(RATE * 0.3)},0)", 4,
                                      RecorderSettings())
    assert all(abs(got - k * CHUNK) <= 2 for k, got in enumerate(out)), out


def test_fixed_delay_and_the_demuxer_clock() -> None:
    _, out = stamped_like_pulse_reads("0", 1, RecorderSettings(audio_delay_ms=10))
    assert out[:3] == [480, 480 + CHUNK, 480 + 2 * CHUNK]
    assert audio_filter(RecorderSettings(pulse_read_timestamps=False)) is None


@pytest.mark.parametrize("audio_only", [False, True])
def test_the_capture_command_carries_the_filter(tmp_path, audio_only) -> None:
    settings = RecorderSettings()
    enc = dataclasses.replace(encoding_for(settings, width=640, height=360), audio_only=audio_only)
    argv = ffmpeg_argv(settings, ":99", 640, 360, tmp_path, 0, epoch=0.0, enc=enc)
    assert argv[argv.index("-af") + 1] == audio_filter(settings)
    assert ("-c:v" in argv) is not audio_only

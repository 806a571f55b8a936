"""A closed segment is probed once (package.closed_segment_facts): concurrent askers share the
probe, later ones get the remembered answer, and a rewritten file is probed again."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from webrecord.recorder.package import closed_segment_facts
from webrecord.recorder.settings import RecorderSettings


def _segment(path: Path, seconds: float) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size=160x90:rate=30:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency=1000:duration={seconds}", "-c:v", "libx264", "-c:a", "aac",
                    "-f", "mpegts", str(path)], check=True, timeout=60)


@pytest.mark.timeout(60)
async def test_a_closed_segment_is_probed_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    counting = tmp_path / "ffprobe"
    counting.write_text(f'#!/bin/sh\necho x >> "{calls}"\nexec "{shutil.which("ffprobe")}" "$@"\n')
    counting.chmod(0o755)
    settings = RecorderSettings(ffprobe_path=str(counting))
    seg = tmp_path / "seg_0000.ts"
    _segment(seg, 1.0)

    first = await asyncio.gather(*(closed_segment_facts(seg, settings) for _ in range(3)))
    again = await closed_segment_facts(seg, settings)
    assert calls.read_text().count("x") == 1
    facts = first[0]
    assert facts is not None and all(f == facts for f in first) and again == facts
    assert {"video", "audio"} <= facts.kinds
    assert facts.streams["video"][1] == pytest.approx(1.0, abs=0.05)
    assert facts.duration == pytest.approx(1.0, abs=0.1)

    _segment(seg, 2.0)  # rewritten in place (as drop_torn_tail does): another file
    os.utime(seg)
    changed = await closed_segment_facts(seg, settings)
    assert calls.read_text().count("x") == 2
    assert changed is not None and changed.streams["video"][1] == pytest.approx(2.0, abs=0.05)


@pytest.mark.timeout(60)
async def test_a_segment_holding_only_the_start_of_a_sound_packet_has_no_sound(tmp_path: Path) -> None:
    """Its first 8 packets: PAT, PMT and the start of one AAC PES. ffprobe reads the stream as
    mp2 at 0 Hz; packaging must not take it for sound (the mp4 writer failed on it in CI)."""
    whole = tmp_path / "whole.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000:duration=1", "-c:a", "aac",
                    "-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts", str(whole)],
                   check=True, timeout=60)
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole.read_bytes()[:8 * 188])
    settings = RecorderSettings()
    whole_facts, cut_facts = await closed_segment_facts(whole, settings), await closed_segment_facts(cut, settings)
    assert whole_facts is not None and "audio" in whole_facts.kinds
    assert cut_facts is not None and "audio" not in cut_facts.kinds

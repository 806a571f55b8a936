"""MaxDurationLimit is recorded time (pauses excluded); a separate wall-clock cap from the
task's creation ends a task that is paused or stuck."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from webrecord.api.models import Action, RecordingSpec, RecordingTask
from webrecord.recorder.session import Session
from webrecord.recorder.settings import RecorderSettings

from .media import probe
from .test_session import running

pytestmark = pytest.mark.browser


async def _run(tmp_path: Path, page: str, settings: RecorderSettings, limit: int,
               pause_after: float, pause_for: float | None) -> tuple[Session, float]:
    """Record, pause after `pause_after` s for `pause_for` s (None: stay paused); returns the
    session once it stopped by itself, and the wall seconds from its first frame."""
    task = RecordingTask(task_id="lim", create_time=int(time.time()),
                         spec=RecordingSpec(record_url=page, width=640, height=360,
                                            max_duration_limit=limit))
    session = Session(task, tmp_path / "work", settings)
    async with running(session) as run:
        await asyncio.wait_for(session.started_event.wait(), 30)
        began = time.monotonic()
        await asyncio.sleep(pause_after)
        await session.control(Action.PAUSE)
        if pause_for is not None:
            await asyncio.sleep(pause_for)
            await session.control(Action.RESUME)
        status = await asyncio.wait_for(run, 60)
    assert status.result.error_code is None, status.result
    return session, time.monotonic() - began


@pytest.mark.timeout(90)
async def test_max_duration_counts_recorded_time_not_pauses(tmp_path, page_server):
    session, wall = await _run(tmp_path, f"{page_server}/recorder_sound.html",
                               RecorderSettings(), limit=3, pause_after=1.5, pause_for=3.0)
    duration = probe(session.packaged.path)["duration"]
    print(f"limit 3 s: video {duration:.2f} s after {wall:.1f} s of wall time")
    assert wall >= 5.5  # 3 s recorded + 3 s paused
    assert duration == pytest.approx(3.0, abs=0.6)
    assert session.status.recorded_seconds == pytest.approx(3.0, abs=0.6)


@pytest.mark.timeout(90)
async def test_wall_clock_cap_ends_a_paused_task(tmp_path, page_server):
    session, wall = await _run(tmp_path, f"{page_server}/recorder_sound.html",
                               RecorderSettings(max_wall_seconds=8), limit=3600,
                               pause_after=1.5, pause_for=None)
    st = session.status
    assert 7 <= st.cancel_time - st.create_time <= 10, st  # stopped at the cap, by itself
    assert wall < 12
    assert probe(session.packaged.path)["duration"] == pytest.approx(1.5, abs=0.6)

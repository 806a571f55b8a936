"""Idle and blank pages with real pages: a blank one fails PageBlank, a still one stops (or
pauses) by itself with its video delivered, an animated one records on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from webrecord.api.models import Action, ErrorCode, Phase, RecordingSpec, RecordingTask
from webrecord.recorder.session import Session
from webrecord.recorder.settings import RecorderSettings

from .media import probe

pytestmark = pytest.mark.browser

# Segments (the unit of judgement) every 2 s, so the tests stay short.
FAST = RecorderSettings(segment_seconds=2.0)


def _session(tmp_path: Path, url: str, **spec) -> Session:
    task = RecordingTask(task_id="idle", spec=RecordingSpec(record_url=url, width=640,
                                                            height=360, **spec))
    return Session(task, tmp_path / "work", FAST)


@pytest.mark.timeout(90)
async def test_blank_page_fails_page_blank(tmp_path, page_server):
    session = _session(tmp_path, f"{page_server}/blank.html", max_duration_limit=60,
                       idle={"blank_seconds": 4})
    status = await asyncio.wait_for(session.run(), 60)
    assert status.result.error_code == ErrorCode.PAGE_BLANK, status.result
    assert "stayed blank" in status.result.error_message
    assert status.recorded_seconds < 12, status.recorded_seconds  # not the 60 s limit


@pytest.mark.timeout(90)
async def test_still_page_stops_by_itself_with_its_video(tmp_path, page_server):
    session = _session(tmp_path, f"{page_server}/still.html", max_duration_limit=60,
                       idle={"seconds": 5, "blank_seconds": 4})
    status = await asyncio.wait_for(session.run(), 60)
    assert status.result.error_code is None, status.result  # shown, so not blank
    assert 5 <= status.recorded_seconds <= 12, status.recorded_seconds  # stopped itself, not at 60
    assert probe(session.packaged.path)["duration"] >= 5  # the video is delivered


@pytest.mark.timeout(90)
async def test_still_page_pauses_when_asked(tmp_path, page_server):
    session = _session(tmp_path, f"{page_server}/still.html", max_duration_limit=60,
                       idle={"seconds": 5, "action": "pause"})
    run = asyncio.create_task(session.run())
    for _ in range(300):
        if session.status.status == Phase.PAUSED:
            break
        await asyncio.sleep(0.1)
    assert session.status.status == Phase.PAUSED, session.status
    assert "unchanged and silent" in session.status.message
    await session.control(Action.STOP)
    status = await asyncio.wait_for(run, 60)
    assert status.result.error_code is None and session.packaged is not None


@pytest.mark.timeout(90)
async def test_animated_page_records_on(tmp_path, page_server):
    session = _session(tmp_path, f"{page_server}/recorder_framecode.html", max_duration_limit=10,
                       idle={"seconds": 5, "blank_seconds": 4})
    status = await asyncio.wait_for(session.run(), 60)
    assert status.result.error_code is None, status.result
    assert status.recorded_seconds >= 9.5, status.recorded_seconds  # ran to its limit

"""The whole flow through real HTTP with a real recorder recording a local page:
Start -> Pause -> Resume -> Refresh -> Stop -> Describe until finished, then play the file."""

from __future__ import annotations

import time

import pytest

from .conftest import LiveServer
from .helpers import play, probe_duration, video_path, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def test_full_flow_signed(make_server, page_server: str) -> None:
    server: LiveServer = make_server(auth_enabled=True)
    key = "AKIDalice"

    def describe() -> dict:
        reply = server.call("Describe", {"TaskID": task_id}, key=key)
        assert reply.status == 200, reply.body
        return reply.body

    started = server.call("Start", {
        "RecordURL": f"{page_server}/recorder_sync.html", "Width": 640, "Height": 360,
        "MaxDurationLimit": 120,
    }, key=key)
    assert started.status == 200, started.body
    assert set(started.body) == {"TaskID", "RequestID"}
    task_id = started.body["TaskID"]

    first = describe()
    assert first["Status"] in ("normal", "recording")
    assert "CreateTime" in first and "StopTime" not in first and "FinishTime" not in first
    assert first["Result"] == {"ErrorCode": "", "ErrorMessage": "", "Videos": []}

    rec = wait_for(describe, lambda d: d["Status"] == "recording", 90, "recording")
    assert rec["StartTime"] >= rec["CreateTime"]
    time.sleep(1.5)

    assert server.call("Pause", {"TaskID": task_id}, key=key).status == 200
    assert describe()["Status"] == "paused"
    again = server.call("Pause", {"TaskID": task_id}, key=key)
    assert (again.status, again.body["ErrorCode"]) == (409, "InvalidAction")
    assert again.body["ErrorMessage"] == (
        "Pause is not allowed while the task is 'paused' (allowed when: normal, recording)"
    )
    time.sleep(1.0)

    assert server.call("Resume", {"TaskID": task_id}, key=key).status == 200
    assert describe()["Status"] == "recording"
    wrong = server.call("Resume", {"TaskID": task_id}, key=key)
    assert (wrong.status, wrong.body["ErrorCode"]) == (409, "InvalidAction")
    assert wrong.body["ErrorMessage"] == (
        "Resume is not allowed while the task is 'recording' (allowed when: normal, paused)"
    )
    # Two Refreshes are two reloads (each a new control, not a duplicate).
    assert server.call("Refresh", {"TaskID": task_id}, key=key).status == 200
    assert server.call("Refresh", {"TaskID": task_id}, key=key).status == 200
    time.sleep(1.5)

    assert server.call("Stop", {"TaskID": task_id}, key=key).status == 200
    done = wait_for(describe, lambda d: d["Status"] == "finished", 90, "finished")
    assert done["Result"]["ErrorCode"] == "", done
    assert done["CreateTime"] <= done["StartTime"] <= done["StopTime"] <= done["FinishTime"]
    videos = done["Result"]["Videos"]
    assert len(videos) == 1
    path = video_path(videos[0])
    assert path.is_file() and path.stat().st_size == videos[0]["FileSize"] > 0
    duration = probe_duration(path)
    # ~1.5 s + ~3 s recorded (the 1 s pause is not in the video).
    assert 2.5 < duration < 8.0, duration
    assert abs(duration - videos[0]["FileDuration"]) < 0.5
    assert play(path) > 30

    after = server.call("Pause", {"TaskID": task_id}, key=key)
    assert (after.status, after.body["ErrorCode"]) == (409, "InvalidAction")
    assert after.body["ErrorMessage"] == (
        "Pause is not allowed while the task is 'finished' (allowed when: normal, recording)"
    )
    listed = server.call("List", {}, key=key).body
    assert listed["TotalCount"] == 1 and listed["Tasks"][0]["TaskID"] == task_id
    assert listed["Tasks"][0]["Status"] == "finished"

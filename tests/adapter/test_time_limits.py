"""MaxDurationLimit on the local backend: recorded time, pauses excluded (the same meaning as
the recorder's and the operator's, see tests/recorder/test_time_limits.py)."""

from __future__ import annotations

import time

import pytest

from .conftest import LiveServer
from .helpers import video_path, wait_for

pytestmark = pytest.mark.browser


@pytest.mark.timeout(180)
def test_pauses_do_not_count_against_max_duration(server: LiveServer, page_server: str) -> None:
    task = server.call("Start", {"RecordURL": f"{page_server}/recorder_sound.html", "Width": 640,
                                 "Height": 360, "MaxDurationLimit": 3}).body["TaskID"]
    describe = lambda: server.call("Describe", {"TaskID": task}).body  # noqa: E731
    wait_for(describe, lambda d: d["Status"] == "recording", 90, "recording")
    began = time.monotonic()
    time.sleep(1.0)
    assert server.call("Pause", {"TaskID": task}).status == 200
    time.sleep(3.0)
    assert describe()["Status"] == "paused"  # 4 s of wall time: a wall-clock limit would be over
    assert server.call("Resume", {"TaskID": task}).status == 200
    done = wait_for(describe, lambda d: d["Status"] == "finished", 60, "finished")
    wall = time.monotonic() - began
    [video] = done["Result"]["Videos"]
    print(f"local backend, limit 3 s: video {video['FileDuration']:.2f} s after {wall:.1f} s")
    assert done["Result"]["ErrorCode"] == "" and wall >= 6
    assert video["FileDuration"] == pytest.approx(3.0, abs=0.7)
    assert video_path(video).exists()

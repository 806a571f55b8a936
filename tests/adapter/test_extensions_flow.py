"""Issue 15 extensions through real HTTP: a Start with Output.Video, Page and Idle fields runs a
real recorder subprocess, which honours them (frame rate in the file, an idle page stopped by
itself) and Describe reports the result as for any task."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import LiveServer
from .helpers import describe, video_path, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def test_extensions_reach_the_recorder(make_server, page_server: str) -> None:
    server: LiveServer = make_server()
    started = server.call("Start", {
        "RecordURL": f"{page_server}/still.html", "Width": 640, "Height": 360,
        "MaxDurationLimit": 120,
        "Output": {"Video": {"FrameRate": 15, "VideoBitrate": 500, "KeyframeInterval": 1}},
        "Page": {"UserAgent": "webrecord-ext/1", "Styles": ["body { background: #123 }"]},
        "Idle": {"Seconds": 5},
    })
    assert started.status == 200, started.body
    task_id = started.body["TaskID"]
    # The still page stops itself after ~5 s idle (plus at most one 10 s segment), not at 120.
    done = wait_for(lambda: describe(server, task_id), lambda d: d["Status"] == "finished", 150,
                    "finished")
    assert done["Result"]["ErrorCode"] == "", done
    assert done["StopTime"] - done["StartTime"] < 40, done
    [video] = done["Result"]["Videos"]
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=r_frame_rate", "-of", "json", str(video_path(video))],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out)["streams"][0]["r_frame_rate"] == "15/1"

"""Admission by measured cost with real recorders: a task that would push the running ones past
the CPU budget waits `normal`, says why in Describe's Message, and starts when room frees up."""

from __future__ import annotations

import pytest

from .conftest import LiveServer
from .helpers import describe as _describe
from .helpers import wait_for

pytestmark = pytest.mark.browser


@pytest.mark.timeout(180)
def test_a_task_beyond_the_cpu_budget_waits_with_its_reason(make_server, page_server: str) -> None:
    # 640x360 at 30 fps costs ~0.28 cores: a 0.5-core budget holds one, not two; the cap of 8
    # recorders does not come into it.
    server: LiveServer = make_server(capacity_cpu_cores=0.5, max_concurrent=8)
    url = f"{page_server}/recorder_sync.html"
    first = server.call("Start", {"RecordURL": url, "Width": 640, "Height": 360}).body["TaskID"]
    second = server.call("Start", {"RecordURL": url, "Width": 640, "Height": 360}).body["TaskID"]
    waiting = _describe(server, second)
    assert waiting["Status"] == "normal" and "StartTime" not in waiting
    assert waiting["Message"].startswith("queued: waiting for capacity (needs 0.28 CPU cores"), waiting
    assert "1 recording(s) use 0.28 of 0.50 cores" in waiting["Message"], waiting
    health = server.request("GET", "/healthz").body
    assert health["running"] == 1 and health["queued"] == 1, health
    assert health["capacity"]["cpuCores"] == 0.5 and health["capacity"]["cpuCoresUsed"] == 0.28

    wait_for(lambda: _describe(server, first), lambda d: d["Status"] == "recording", 90, "recording")
    assert _describe(server, second)["Status"] == "normal"  # still waiting while the first records
    assert server.call("Stop", {"TaskID": first}).status == 200
    wait_for(lambda: _describe(server, first), lambda d: d["Status"] == "finished", 60, "first finished")
    started = wait_for(lambda: _describe(server, second), lambda d: d["Status"] == "recording", 90,
                       "the waiting task to start once the first finished")
    assert "waiting for capacity" not in started.get("Message", "")
    assert server.call("Cancel", {"TaskID": second}).status == 200

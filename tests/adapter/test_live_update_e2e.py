"""UpdateLive end to end on the local backend: a real adapter, a real recorder subprocess and
real receivers (nginx-rtmp, srt-live-transmit). Start streams to RTMP; UpdateLive swaps it for
SRT; each receiver got frames of the recording (the page's frame codes) from its own span of
it only, the RTMP publish ended when it was removed, and the file recorded on whole."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from recorder.media import assert_file_whole, frame_codes, packet_hashes
from recorder.receivers import NginxRtmp, SrtListener

from .conftest import LiveServer
from .helpers import describe, video_path, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

KEY = "secret-rtmp-key"


def live(body: dict) -> list[tuple[str, str]]:
    return [(o["Url"], o["State"]) for o in body.get("Live") or []]


def test_update_live_swaps_receivers_while_recording(make_server, page_server: str,
                                                     tmp_path: Path) -> None:
    nginx = NginxRtmp(tmp_path / "nginx").start()
    srt = SrtListener(tmp_path / "srt").start()
    try:
        server: LiveServer = make_server()
        started = server.call("Start", {
            "RecordURL": f"{page_server}/recorder_framecode.html", "Width": 640, "Height": 360,
            "MaxDurationLimit": 120, "Output": {"Live": [{"Url": nginx.url(KEY)}]}})
        assert started.status == 200, started.body
        task_id = started.body["TaskID"]
        rtmp_shown = f"rtmp://127.0.0.1:{nginx.port}/live/***"
        srt_shown = f"srt://127.0.0.1:{srt.port}?***"
        wait_for(lambda: describe(server, task_id), lambda d: live(d) == [(rtmp_shown, "live")],
                 90, "the RTMP output live")
        time.sleep(4)

        swap = server.call("UpdateLive", {"TaskID": task_id, "Live": [{"Url": srt.url}]})
        assert swap.status == 200 and swap.body["TaskID"] == task_id, swap.body
        swapped_at = time.monotonic()
        # The RTMP publish ends at once (nginx finishes its recording file).
        wait_for(lambda: describe(server, task_id), lambda d: live(d) == [(srt_shown, "live")],
                 30, "only the SRT output, live")
        time.sleep(2)
        # The same list again: nothing changes (the SRT connection goes on, not a reconnect).
        again = server.call("UpdateLive", {"TaskID": task_id, "Live": [{"Url": srt.url}]})
        assert again.status == 200, again.body
        time.sleep(3)
        now = describe(server, task_id)
        assert live(now) == [(srt_shown, "live")] and now["Live"][0]["Reconnects"] == 0, now
        assert time.monotonic() - swapped_at >= 5

        assert server.call("Stop", {"TaskID": task_id}).status == 200
        done = wait_for(lambda: describe(server, task_id), lambda d: d["Status"] == "finished",
                        90, "finished")
        assert done["Result"]["ErrorCode"] == "", done
        late = server.call("UpdateLive", {"TaskID": task_id, "Live": [{"Url": nginx.url(KEY)}]})
        assert (late.status, late.body["ErrorCode"]) == (409, "InvalidAction"), late.body
        assert "while the task is 'finished'" in late.body["ErrorMessage"], late.body
        srt.proc.wait(15)  # the relay ended the SRT stream at Stop: the listener exits

        recorded = video_path(done["Result"]["Videos"][0])
        assert_file_whole(recorded)
        [rtmp_file] = nginx.recordings(KEY)  # one publish: from Start to the swap
        rtmp_hashes, file_hashes = packet_hashes(rtmp_file), set(packet_hashes(recorded))
        assert len(rtmp_hashes) >= 3 * 30 and set(rtmp_hashes) <= file_hashes  # same encode
        _, rtmp_clock = frame_codes(rtmp_file)
        _, srt_clock = frame_codes(srt.files[0])
        _, file_clock = frame_codes(recorded)
        for clock, seconds in ((rtmp_clock, 3), (srt_clock, 4)):
            assert len(clock) >= seconds * 25, len(clock)
            assert np.all(np.diff(clock) >= 0)
            assert clock[-1] - clock[0] >= seconds * 0.8, (clock[0], clock[-1])
            assert file_clock[0] - 0.05 <= clock[0] and clock[-1] <= file_clock[-1] + 0.05
        # Each got its own span: SRT starts where RTMP ended (removed before SRT connected).
        assert srt_clock[0] >= rtmp_clock[-1], (rtmp_clock[-1], srt_clock[0])
        assert srt_clock[0] - rtmp_clock[-1] < 4, (rtmp_clock[-1], srt_clock[0])
    finally:
        nginx.kill()
        srt.kill()

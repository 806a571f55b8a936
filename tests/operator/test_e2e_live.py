"""Live outputs through the operator: a WebRecording with spec.output.live streams to a real
nginx-rtmp receiver; a receiver added to spec.output.live while recording is passed on to the
recorder and gets the stream (and is no control: the last one is not forwarded again);
.status.live shows both with their keys redacted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from kubelet import BUCKET, Kubelet, delivered_video, supervised
from opkit import Kube, recording, wait_for
from recorder.media import frame_codes
from recorder.receivers import NginxRtmp, SrtListener

pytestmark = [pytest.mark.cluster, pytest.mark.browser, pytest.mark.timeout(300)]


def live_states(kube: Kube, name: str) -> list[tuple[str, str]]:
    return [(o["url"], o["state"]) for o in kube.status(name).get("live") or []]


def test_spec_output_live_changes_reach_the_recorder(
    kube: Kube, start_operator: Any, moto: str, page_server: str, pod_env: dict[str, str],
    tmp_path: Path,
) -> None:
    nginx = NginxRtmp(tmp_path / "nginx").start()
    srt = SrtListener(tmp_path / "srt").start()
    try:
        start_operator(**pod_env)
        kube.apply(recording(
            "live", recordUrl=f"{page_server}/recorder_framecode.html", width=640, height=360,
            storageType="cos",
            output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": "live"},
                    "live": [{"url": nginx.url("rtmp-key")}]},
        ))
        wait_for(lambda: kube.get("pod", "live-recorder"), 30, "the recorder pod")
        kubelet = Kubelet(kube, "live-recorder")
        rtmp_shown = f"rtmp://127.0.0.1:{nginx.port}/live/***"
        srt_shown = f"srt://127.0.0.1:{srt.port}?***"
        with supervised(kubelet, kube, "live"):
            kubelet.start()
            wait_for(lambda: live_states(kube, "live") == [(rtmp_shown, "live")], 60,
                     "the RTMP output live in .status.live")
            time.sleep(2)
            # A Pause and a Resume before the live change: the change is no control, so the
            # Resume is not forwarded again (it would be refused: "while recording").
            kube.patch_spec("live", {"action": "Pause", "actionSeq": 1})
            kube.wait_phase("live", "paused", timeout=30)
            kube.patch_spec("live", {"action": "Resume", "actionSeq": 2})
            kube.wait_phase("live", "recording", timeout=30)
            resumed = kube.get("webrecording", "live")["metadata"]["generation"]
            kube.patch_spec("live", {"output": {"live": [{"url": nginx.url("rtmp-key")},
                                                         {"url": srt.url}]}})
            wait_for(lambda: live_states(kube, "live") == [(rtmp_shown, "live"),
                                                          (srt_shown, "live")], 60,
                     "the added SRT output live in .status.live")
            obj = kube.get("webrecording", "live")
            assert obj["metadata"]["generation"] == resumed + 1
            wait_for(lambda: kube.status("live").get("observedGeneration") == resumed + 1, 30,
                     "the live change observed")
            [applied] = [c for c in kube.status("live")["conditions"]
                         if c["type"] == "ActionApplied"]
            assert (applied["status"], applied["reason"], applied["observedGeneration"]) == (
                "True", "Resume", resumed), applied
            time.sleep(3)
            kube.patch_spec("live", {"action": "Stop", "actionSeq": 3})
            assert kubelet.report_exit(timeout=120) == 0
            status = kube.wait_phase("live", "finished", timeout=60)
        delivered_video(status, moto, "live/", 4.0)
        assert "rtmp-key" not in json.dumps(status) and "secret-srt-key" not in json.dumps(status)
        srt.proc.wait(15)
        [rtmp_file] = nginx.recordings("rtmp-key")
        for received, seconds in ((rtmp_file, 4), (srt.files[0], 2)):
            _, clock = frame_codes(received)
            clock = clock[clock < 655.35]  # all bits set: a white page before the first paint
            assert len(clock) >= seconds * 25 and clock[-1] - clock[0] >= seconds * 0.8, received
            assert (clock[1:] >= clock[:-1]).all(), received
    finally:
        nginx.kill()
        srt.kill()

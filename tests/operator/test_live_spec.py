"""Live outputs (extension) in a WebRecording: the API server lets spec.output.live change on a
running resource (add or remove a receiver while recording) and keeps the rest of output
immutable."""

from __future__ import annotations

import json

import pytest
import yaml

from opkit import Kube, recording

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

RTMP = "rtmp://live.test/app/key-1"
SRT = "srt://live.test:9000?streamid=key-2"


def _patch(kube: Kube, name: str, spec: dict) -> tuple[int, str]:
    result = kube.kubectl("patch", "webrecording", name, "--type=merge", "-p",
                          json.dumps({"spec": spec}), check=False)
    return result.returncode, result.stderr


def test_output_live_may_change_the_rest_of_output_may_not(kube: Kube) -> None:
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(
        recording("live", output={"live": [{"url": RTMP}]})))
    code, err = _patch(kube, "live", {"output": {"live": [{"url": RTMP}, {"url": SRT}]}})
    assert code == 0, err
    assert kube.get("webrecording", "live")["spec"]["output"]["live"] == [
        {"url": RTMP}, {"url": SRT}]
    code, err = _patch(kube, "live", {"output": {"live": None}})
    assert code == 0, err
    for change in ({"video": {"muxer": "hls"}}, {"cos": {"targetDir": "x"}}):
        code, err = _patch(kube, "live", {"output": change})
        assert code != 0 and "output is immutable except output.live" in err, (change, err)
    assert "live" not in kube.get("webrecording", "live")["spec"]["output"]


def test_more_live_outputs_than_allowed_are_refused(kube: Kube) -> None:
    urls = [{"url": f"rtmp://live.test/app/k{i}"} for i in range(6)]
    result = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(
        recording("too-many", output={"live": urls})), check=False)
    assert result.returncode != 0 and "must have at most 5 items" in result.stderr, result.stderr

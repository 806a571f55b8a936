"""UpdateLive through the adapter's kubernetes backend, against the real API server: the list
becomes spec.output.live (a merge patch with the resourceVersion it was computed from), only
while the WebRecording records or is paused; a live change is no control, so the control
written next does not wait for one that is not there. The status is written here as the
operator would (no operator runs: what is asserted is the adapter's patch)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opkit import Kube
from webrecord.adapter.backends import base, kubernetes as kbackend
from webrecord.adapter.settings import AdapterSettings
from webrecord.api.models import Action, LiveOutput, OutputSpec, RecordingSpec, RecordingTask
from webrecord.api.resource import pending_action

RTMP = "rtmp://live.test/app/key-1"
SRT = "srt://live.test:9000?streamid=key-2"


def _set_status(kube: Kube, name: str, status: dict[str, Any]) -> None:
    kube.kubectl("patch", "webrecording", name, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status}))


@pytest.mark.cluster
@pytest.mark.timeout(120)
async def test_update_live_patches_spec_output_live(kube: Kube,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kbackend, "CONTROL_WAIT_S", 1.0)
    backend = kbackend.create(AdapterSettings(backend="kubernetes", namespace=kube.ns,
                                              kubeconfig=kube.cp.kubeconfig,
                                              cluster_filesystem_output=True))
    await backend.open()
    name = "wr-live"
    spec = RecordingSpec(record_url="https://example.test/", width=640, height=360,
                         output=OutputSpec(live=[LiveOutput(url=RTMP)]))
    try:
        await backend.start(RecordingTask(task_id=name, spec=spec, create_time=1_700_000_000),
                            "key-1")
        with pytest.raises(base.ActionNotAllowed, match="UpdateLive is not allowed while the task "
                           r"is 'normal' \(allowed when: paused, recording\)"):
            await backend.set_live(name, "key-1", [LiveOutput(url=SRT)])
        with pytest.raises(base.TaskNotFound):
            await backend.set_live(name, "key-2", [])  # another tenant's task looks absent

        # Recording, after a Pause and a Resume the operator forwarded (observedAction/Seq).
        kube.patch_spec(name, {"action": "Resume", "actionSeq": 2})
        generation = kube.get("webrecording", name)["metadata"]["generation"]
        _set_status(kube, name, {"phase": "recording", "observedGeneration": generation,
                                 "observedAction": "Resume", "observedActionSeq": 2})
        before = kube.get("webrecording", name)

        described = await backend.set_live(name, "key-1", [LiveOutput(url=SRT), LiveOutput(url=RTMP)])
        assert described.status.value == "recording"
        after = kube.get("webrecording", name)
        assert after["spec"]["output"]["live"] == [{"url": SRT}, {"url": RTMP}]
        assert after["spec"]["action"] == "Resume" and after["spec"]["actionSeq"] == 2
        assert {k: v for k, v in after["spec"].items() if k != "output"} == \
            {k: v for k, v in before["spec"].items() if k != "output"}
        assert after["metadata"]["generation"] == generation + 1
        # The same list again: nothing changes (not even the generation).
        await backend.set_live(name, "key-1", [LiveOutput(url=SRT), LiveOutput(url=RTMP)])
        assert kube.get("webrecording", name)["metadata"]["generation"] == generation + 1

        # The live change left the Resume as forwarded: the next control is written at once
        # (before, it waited for "the previous control" and was refused after the wait).
        assert pending_action(after["spec"], after["metadata"], after["status"]) is None
        await backend.control(name, "key-1", Action.PAUSE)
        spec_now = kube.get("webrecording", name)["spec"]
        assert (spec_now["action"], spec_now["actionSeq"]) == ("Pause", 3)

        _set_status(kube, name, {"phase": "paused"})
        await backend.set_live(name, "key-1", [])  # [] ends all: the field goes
        assert "live" not in kube.get("webrecording", name)["spec"]["output"]

        _set_status(kube, name, {"phase": "finished"})
        with pytest.raises(base.ActionNotAllowed, match="while the task is 'finished'"):
            await backend.set_live(name, "key-1", [LiveOutput(url=RTMP)])
        assert "live" not in kube.get("webrecording", name)["spec"]["output"]
    finally:
        await backend.close()


def test_a_live_change_is_no_control() -> None:
    """pending_action: the generation moved, but (action, actionSeq) is what was forwarded."""
    spec = {"action": "Refresh", "actionSeq": 4, "output": {"live": [{"url": RTMP}]}}
    meta = {"generation": 9}
    forwarded = {"observedGeneration": 8, "observedAction": "Refresh", "observedActionSeq": 4}
    assert pending_action(spec, meta, forwarded) is None  # no second Refresh
    assert pending_action({**spec, "actionSeq": 5}, meta, forwarded) is Action.REFRESH
    assert pending_action({**spec, "action": "Stop"}, meta, forwarded) is Action.STOP
    # Written by an operator before observedAction existed: as before, the generation decides.
    assert pending_action(spec, meta, {"observedGeneration": 8, "observedActionSeq": 4}) \
        is Action.REFRESH
    assert pending_action(spec, meta, {**forwarded, "observedGeneration": 9}) is None
    assert pending_action({"actionSeq": 4}, meta, {}) is None

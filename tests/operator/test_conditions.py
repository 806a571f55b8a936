"""Status conditions against the real kube-apiserver, read with the real kubectl: a user's
`kubectl wait --for=condition=Succeeded wrec/NAME` returns when the task succeeded, `Failed`
when it ended with an error, and `kubectl describe` shows each condition with its reason."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from opkit import Kube, recording, wait_for
from test_operator_cluster import _terminated
from webrecord.api.models import Phase, RecorderStatus, Result, VideoFile

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def _finished_with_a_video(name: str) -> str:
    """The recorder's last status (its termination message), finished just now."""
    now = int(time.time())
    return RecorderStatus(
        task_id=name, status=Phase.FINISHED, create_time=now - 9, start_time=now - 8,
        stop_time=now - 1, finish_time=now, recorded_seconds=7.0,
        result=Result(videos=[VideoFile(filename="v.mp4", file_size=1234, file_duration=7.0,
                                        file_url="http://127.0.0.1:9/v.mp4")]),
    ).model_dump_json(by_alias=True, exclude_none=True)


def _conditions(kube: Kube, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in kube.status(name).get("conditions") or []}


def test_kubectl_wait_for_succeeded_and_describe(kube: Kube, start_operator: Any) -> None:
    start_operator()
    kube.apply(recording("fine", ttlSecondsAfterFinished=3600))
    wait_for(lambda: kube.get("pod", "fine-recorder"), 30, "the recorder pod")
    waiting = kube.kubectl("wait", "--for=condition=Succeeded", "wrec/fine", "--timeout=2s", check=False)
    assert waiting.returncode != 0  # not yet: the task has not even started
    kube.set_pod_status("fine-recorder", {"conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
    wait_for(lambda: _conditions(kube, "fine").get("Scheduled", {}).get("status") == "True", 30,
             "Scheduled=True from the pod's PodScheduled")
    kube.set_pod_status("fine-recorder", {"phase": "Succeeded", "containerStatuses": [
        _terminated(_finished_with_a_video("fine"))]})
    done = kube.kubectl("wait", "--for=condition=Succeeded", "wrec/fine", "--timeout=30s",
                        check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    conds = _conditions(kube, "fine")
    generation = kube.get("webrecording", "fine")["metadata"]["generation"]
    for type_ in ("Scheduled", "Delivered", "Succeeded", "Finished"):
        assert conds[type_]["status"] == "True", conds[type_]
    assert conds["Failed"]["status"] == "False" and conds["Recording"]["status"] == "False"
    for cond in conds.values():
        assert cond["observedGeneration"] == generation, cond
        assert cond["lastTransitionTime"].endswith("Z") and cond["reason"] and cond["message"]
    described = kube.kubectl("describe", "wrec", "fine").stdout
    assert "Succeeded" in described and "Delivered" in described and "video file(s)" in described


def test_kubectl_wait_for_failed_names_the_error(kube: Kube, start_operator: Any) -> None:
    start_operator()
    kube.apply(recording("refused", recordUrl="http://2130706433/", ttlSecondsAfterFinished=3600))
    done = kube.kubectl("wait", "--for=condition=Failed", "wrec/refused", "--timeout=30s",
                        check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    conds = _conditions(kube, "refused")
    assert conds["Failed"]["reason"] == "InvalidParam" and "recordUrl" in conds["Failed"]["message"]
    assert conds["Succeeded"]["status"] == "False" and conds["Delivered"]["status"] == "False"
    out = kube.kubectl("get", "wrec", "refused", "-o",
                       "jsonpath={.status.conditions[?(@.type=='Failed')].observedGeneration}").stdout
    assert json.loads(out) == 1

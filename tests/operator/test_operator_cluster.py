"""The operator against the real kube-apiserver; the test plays the kubelet by writing pod status.

These cover what needs no browser: creation, pod failure/eviction/never started, the final
status carried by the termination message, restart of the operator mid-task, deletion with the
finalizer, and the concurrency limit. tests/operator/test_e2e.py runs a real recorder.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from opkit import Kube, recording, wait_for
from webrecord.api.models import Phase, RecorderStatus, Result, VideoFile

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def _terminated(message: str, exit_code: int = 0, reason: str = "Completed") -> dict[str, Any]:
    return {"name": "recorder", "image": "webrecord/recorder", "imageID": "", "ready": False,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}}


def _running() -> dict[str, Any]:
    return {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}


def _final(name: str) -> str:
    status = RecorderStatus(
        task_id=name, status=Phase.FINISHED, create_time=1, start_time=2, stop_time=8,
        finish_time=9, recorded_seconds=6.0,
        result=Result(videos=[VideoFile(filename="v.mp4", file_size=1234, file_duration=6.0,
                                        file_url="http://127.0.0.1:9/v.mp4")]),
    )
    return status.model_dump_json(by_alias=True, exclude_none=True)


def test_create_makes_a_locked_down_pod_and_token_secret(kube: Kube, start_operator: Any) -> None:
    # The API server's Pod Security admission must accept the recorder pod at the strictest level.
    kube.cp.kubectl("label", "namespace", kube.ns, "pod-security.kubernetes.io/enforce=restricted")
    start_operator()
    kube.apply(recording("first", width=1920, height=1080))
    status = wait_for(lambda: (s := kube.status("first")).get("podName") and s, 30, "podName")
    assert status["phase"] == "normal"
    assert status["observedGeneration"] == 1
    owner = kube.get("webrecording", "first")
    assert "webrecord.io/stop-recording" in owner["metadata"]["finalizers"]
    pod = kube.get("pod", "first-recorder")
    secret = kube.get("secret", "first-recorder")
    for obj in (pod, secret):
        [ref] = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == owner["metadata"]["uid"] and ref["controller"] is True
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The measured cost (webrecord.api.cost): 0.154 + 0.018 x 2.07 MP x 30 fps cores.
    assert container["resources"]["requests"]["cpu"] == "1274m"
    token = base64.b64decode(secret["data"]["token"]).decode()
    task = json.loads(base64.b64decode(secret["data"]["task.json"]))
    assert len(token) >= 40 and task["taskId"] == "first" and task["spec"]["width"] == 1920
    reasons = wait_for(lambda: {e["reason"] for e in kube.events("first")} or None, 20, "events")
    assert "PhaseNormal" in reasons


def test_pod_that_never_starts_ends_with_recorder_lost_and_a_callback(
    kube: Kube, start_operator: Any, callback_receiver: Any
) -> None:
    start_operator(WEBRECORD_OPERATOR_START_DEADLINE_S="3")
    kube.apply(recording("stuck", callbackUrl=callback_receiver.url))
    status = kube.wait_phase("stuck", "finished", timeout=40)
    assert status["result"]["errorCode"] == "RecorderLost"
    assert "did not start within 3 s" in status["result"]["errorMessage"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Finished"]["status"] == "True"
    assert conditions["Finished"]["reason"] == "RecorderLost"
    body = wait_for(lambda: callback_receiver.bodies, 20, "the callback")[0]
    # Same shape as the delivery stage's callback: sent while the task is in `callback`.
    assert body["TaskID"] == "stuck" and body["Status"] == "callback"
    assert body["Result"]["ErrorCode"] == "RecorderLost"
    assert "FinishTime" in body and "CreateTime" in body
    wait_for(lambda: kube.get("pod", "stuck-recorder") is None, 20, "the stuck pod to be deleted")
    reasons = {e["reason"] for e in kube.events("stuck")}
    assert {"RecorderLost", "PhaseFinished"} <= reasons


def test_evicted_pod_ends_with_recorder_lost_when_no_restarts_are_left(
        kube: Kube, start_operator: Any) -> None:
    start_operator(WEBRECORD_OPERATOR_MAX_RESTARTS="0")
    kube.apply(recording("evicted"))
    wait_for(lambda: kube.get("pod", "evicted-recorder"), 30, "the pod")
    kube.set_pod_status("evicted-recorder", _running())
    kube.set_pod_status("evicted-recorder", {
        "phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory.",
        "containerStatuses": [_terminated("", 137, "OOMKilled")],
    })
    status = kube.wait_phase("evicted", "finished")
    assert status["result"]["errorCode"] == "RecorderLost"
    assert "reason Evicted" in status["message"] and "OOMKilled" in status["message"]
    assert "no restarts left" in status["message"]


def _evict(kube: Kube, pod: str) -> None:
    kube.set_pod_status(pod, _running())
    kube.set_pod_status(pod, {"phase": "Failed", "reason": "Evicted",
                              "containerStatuses": [_terminated("", 137, "OOMKilled")]})


def test_lost_recorder_pods_are_replaced_then_the_task_ends(kube: Kube, start_operator: Any) -> None:
    """Failed (evicted) or deleted: a new pod of the same name, counted in status.restarts and
    in Events, until max_restarts; then RecorderLost."""
    start_operator(WEBRECORD_OPERATOR_MAX_RESTARTS="2", WEBRECORD_OPERATOR_RESTART_BACKOFF_S="0.5")
    kube.apply(recording("phoenix"))
    first = wait_for(lambda: kube.get("pod", "phoenix-recorder"), 30, "the pod")["metadata"]["uid"]
    _evict(kube, "phoenix-recorder")
    second = wait_for(lambda: (p := kube.get("pod", "phoenix-recorder")) and
                      p["metadata"]["uid"] != first and p, 30, "a replacement pod")
    status = wait_for(lambda: (s := kube.status("phoenix")).get("restarts") == 1 and s, 20,
                      "restarts == 1")
    assert status["phase"] != "finished", status
    kube.kubectl("delete", "pod", "phoenix-recorder", "--wait=true")  # deleted: replaced too
    third = wait_for(lambda: (p := kube.get("pod", "phoenix-recorder")) and
                     p["metadata"]["uid"] != second["metadata"]["uid"] and p, 30, "another pod")
    wait_for(lambda: kube.status("phoenix").get("restarts") == 2, 20, "restarts == 2")
    _evict(kube, "phoenix-recorder")  # no restarts left
    status = kube.wait_phase("phoenix", "finished")
    assert status["result"]["errorCode"] == "RecorderLost" and status["restarts"] == 2
    assert "no restarts left (2 of 2 used)" in status["message"], status["message"]
    assert kube.get("pod", "phoenix-recorder") is None or kube.get(
        "pod", "phoenix-recorder")["metadata"]["uid"] == third["metadata"]["uid"]
    reasons = [e["reason"] for e in kube.events("phoenix")]
    assert reasons.count("RecorderRestarted") == 2 and "RecorderLost" in reasons, reasons


def test_final_status_comes_from_the_termination_message(kube: Kube, start_operator: Any) -> None:
    start_operator()
    kube.apply(recording("done"))
    wait_for(lambda: kube.get("pod", "done-recorder"), 30, "the pod")
    kube.set_pod_status("done-recorder", {"phase": "Succeeded",
                                          "containerStatuses": [_terminated(_final("done"))]})
    status = kube.wait_phase("done", "finished")
    assert "errorCode" not in status["result"]
    assert status["result"]["videos"][0]["filename"] == "v.mp4"
    assert status["recordedSeconds"] == 6.0 and status["stopTime"] == 8
    out = kube.kubectl("get", "wrec", "done").stdout
    assert "finished" in out and "http://127.0.0.1:9/page" in out  # printer columns


def test_operator_restarted_mid_task_loses_nothing(kube: Kube, start_operator: Any) -> None:
    first = start_operator()
    kube.apply(recording("survivor"))
    wait_for(lambda: kube.status("survivor").get("podName"), 30, "podName")
    pod_uid = kube.get("pod", "survivor-recorder")["metadata"]["uid"]
    first.stop(hard=True)  # SIGKILL: no cleanup at all
    kube.set_pod_status("survivor-recorder", {"phase": "Succeeded",
                                              "containerStatuses": [_terminated(_final("survivor"))]})
    start_operator()
    status = kube.wait_phase("survivor", "finished")
    assert status["result"]["videos"][0]["fileSize"] == 1234
    pod = kube.get("pod", "survivor-recorder")  # not recreated (a finished task's pod goes)
    assert pod is None or pod["metadata"]["uid"] == pod_uid


def test_delete_lets_go_and_garbage_collects(kube: Kube, start_operator: Any) -> None:
    start_operator()
    kube.apply(recording("bye"))
    wait_for(lambda: kube.get("pod", "bye-recorder"), 30, "the pod")
    kube.kubectl("delete", "webrecording", "bye", "--wait=false")
    wait_for(lambda: kube.get("webrecording", "bye") is None, 30, "the finalizer to let go")
    if kube.cp.has_controller_manager:
        wait_for(lambda: kube.get("pod", "bye-recorder") is None and
                 kube.get("secret", "bye-recorder") is None, 60, "garbage collection")


def test_concurrency_limit_queues_tasks(kube: Kube, start_operator: Any) -> None:
    start_operator(WEBRECORD_OPERATOR_MAX_CONCURRENT="1", WEBRECORD_OPERATOR_QUEUE_RETRY_S="0.5")
    kube.apply(recording("one"))
    wait_for(lambda: kube.get("pod", "one-recorder"), 30, "the first pod")
    kube.apply(recording("two"))
    status = wait_for(lambda: (s := kube.status("two")).get("message", "").startswith("queued") and s,
                      30, "the second task to be queued")
    assert status["phase"] == "normal" and kube.get("pod", "two-recorder") is None
    kube.set_pod_status("one-recorder", {"phase": "Succeeded",
                                         "containerStatuses": [_terminated(_final("one"))]})
    kube.wait_phase("one", "finished")
    wait_for(lambda: kube.get("pod", "two-recorder"), 30, "the queued task's pod")


def test_no_storage_target_is_refused_at_apply(kube: Kube, start_operator: Any) -> None:
    """Without Output.Cos/Vod and without a filesystem output in the recorder pods, the video
    would die with the pod's emptyDir: the task ends InvalidParam at once, and no pod is made."""
    start_operator(WEBRECORD_OPERATOR_POD_LOCAL_OUTPUT="false")
    kube.apply(recording("nowhere"))
    status = kube.wait_phase("nowhere", "finished")
    assert status["result"]["errorCode"] == "InvalidParam"
    assert "no storage target" in status["result"]["errorMessage"]
    assert kube.get("pod", "nowhere-recorder") is None
    kube.apply(recording("somewhere", output={"cos": {"bucket": "b1", "region": "r"}}))
    wait_for(lambda: kube.get("pod", "somewhere-recorder"), 30, "the pod of a task with a bucket")

"""End to end on one machine: real kube-apiserver, the operator, and a real recorder.

The test plays the kubelet: it reads the Pod the operator created, writes the Secret's files
where the pod mounts them, starts exactly the pod's command and args with the pod's env (Secret volumes
written as files) as a local process, and reports the pod's status (Running with
podIP 127.0.0.1, then Succeeded with the termination message) through the API. Controls go
through `spec.action` / `spec.actionSeq`; the video lands in a moto S3 server on loopback and the
callback in a loopback HTTP receiver.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from opkit import Kube, recording, wait_for
from kubelet import BUCKET, Kubelet, delivered_video, s3, supervised

pytestmark = [pytest.mark.cluster, pytest.mark.browser, pytest.mark.timeout(300)]


def test_record_through_the_operator(kube: Kube, start_operator: Any, callback_receiver: Any,
                                     moto: str, page_server: str, pod_env: dict[str, str]) -> None:
    bucket = BUCKET
    start_operator(**pod_env)
    kube.apply(recording(
        "e2e", recordUrl=f"{page_server}/recorder_sound.html", width=640, height=360,
        maxDurationLimit=120, callbackUrl=callback_receiver.url, storageType="cos",
        output={"cos": {"bucket": bucket, "region": "us-east-1", "targetDir": "e2e"}},
    ))
    wait_for(lambda: kube.get("pod", "e2e-recorder"), 30, "the recorder pod")
    kubelet = Kubelet(kube, "e2e-recorder")
    with supervised(kubelet, kube, "e2e"):
        kubelet.start()
        kube.wait_phase("e2e", "recording", timeout=60)
        time.sleep(1.5)

        kube.patch_spec("e2e", {"action": "Pause", "actionSeq": 1})
        status = kube.wait_phase("e2e", "paused")
        assert status["observedGeneration"] == 2 and status["observedActionSeq"] == 1
        kube.patch_spec("e2e", {"action": "Resume", "actionSeq": 2})
        kube.wait_phase("e2e", "recording")
        # The same action twice: bump actionSeq only.
        kube.patch_spec("e2e", {"action": "Refresh", "actionSeq": 3})
        wait_for(lambda: kube.status("e2e").get("observedActionSeq") == 3, 30, "first Refresh")
        kube.patch_spec("e2e", {"actionSeq": 4})
        wait_for(lambda: kube.status("e2e").get("observedActionSeq") == 4, 30, "second Refresh")
        conditions = {c["type"]: c for c in kube.status("e2e")["conditions"]}
        assert conditions["ActionApplied"]["status"] == "True"
        assert conditions["ActionApplied"]["observedGeneration"] == 5
        time.sleep(1.5)

        kube.patch_spec("e2e", {"action": "Stop", "actionSeq": 5})
        assert kubelet.report_exit(timeout=120) == 0
        status = kube.wait_phase("e2e", "finished", timeout=60)

    video = delivered_video(status, moto, "e2e/", 2.0)
    for name in ("createTime", "startTime", "stopTime", "finishTime"):
        assert status[name] > 0, name
    assert status["recordedSeconds"] >= 2.0

    body = wait_for(lambda: callback_receiver.bodies, 30, "the callback")[-1]
    assert body["TaskID"] == "e2e" and body["Result"]["ErrorCode"] == ""
    assert body["Result"]["Videos"][0]["FileSize"] == video["fileSize"]

    reasons = {e["reason"] for e in kube.events("e2e")}
    assert {"PhaseNormal", "PhaseRecording", "PhasePaused", "PhaseFinished", "ActionApplied"} <= reasons
    out = kube.kubectl("get", "wrec", "e2e").stdout
    assert "finished" in out


def test_time_limit_is_enforced_when_the_recorder_ignores_it(
    kube: Kube, start_operator: Any, page_server: str, pod_env: dict[str, str]
) -> None:
    """MaxDurationLimit 3 s, but the recorder is told 3600 s (it misbehaves): the operator sends
    Stop after limit + grace, and the task still ends cleanly with its video."""
    start_operator(**pod_env, WEBRECORD_OPERATOR_TIME_LIMIT_GRACE_S="1")
    kube.apply(recording(
        "limited", recordUrl=f"{page_server}/recorder_sound.html", width=640, height=360,
        maxDurationLimit=3, storageType="cos",
        output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": "limited"}},
    ))
    wait_for(lambda: kube.get("pod", "limited-recorder"), 30, "the recorder pod")
    kubelet = Kubelet(kube, "limited-recorder")
    try:
        kubelet.start(task_spec_override={"maxDurationLimit": 3600})
        kube.wait_phase("limited", "recording", timeout=60)
        assert kubelet.report_exit(timeout=120) == 0  # stopped by the operator, not by itself
        status = kube.wait_phase("limited", "finished", timeout=60)
    except BaseException:
        sys.stderr.write(f"--- recorder log ---\n{kubelet.log.read_text(errors='replace')[-8000:]}\n")
        raise
    finally:
        kubelet.kill()
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["TimeLimitReached"]["status"] == "True"
    assert "errorCode" not in status["result"], status["result"]
    assert 2.0 <= status["recordedSeconds"] < 20
    assert "TimeLimitReached" in {e["reason"] for e in kube.events("limited")}


def test_deleting_a_recording_stops_it_cleanly(
    kube: Kube, start_operator: Any, callback_receiver: Any, moto: str, page_server: str,
    pod_env: dict[str, str],
) -> None:
    """The finalizer sends Stop and waits (bounded) for the recorder to deliver before the
    resource goes: the video recorded so far is uploaded and the callback sent."""
    start_operator(**pod_env, WEBRECORD_OPERATOR_DELETE_WAIT_S="90")
    kube.apply(recording(
        "deleted", recordUrl=f"{page_server}/recorder_sound.html", width=640, height=360,
        callbackUrl=callback_receiver.url, storageType="cos",
        output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": "deleted"}},
    ))
    wait_for(lambda: kube.get("pod", "deleted-recorder"), 30, "the recorder pod")
    kubelet = Kubelet(kube, "deleted-recorder")
    try:
        kubelet.start()
        kube.wait_phase("deleted", "recording", timeout=60)
        time.sleep(2)
        kube.kubectl("delete", "webrecording", "deleted", "--wait=false")
        assert kubelet.report_exit(timeout=120) == 0
        wait_for(lambda: kube.get("webrecording", "deleted") is None, 60, "the finalizer to let go")
    except BaseException:
        sys.stderr.write(f"--- recorder log ---\n{kubelet.log.read_text(errors='replace')[-8000:]}\n")
        raise
    finally:
        kubelet.kill()
    body = wait_for(lambda: callback_receiver.bodies, 30, "the callback")[-1]
    assert body["TaskID"] == "deleted" and body["Result"]["ErrorCode"] == ""
    [video] = body["Result"]["Videos"]
    listed = s3(moto).list_objects_v2(Bucket=BUCKET, Prefix="deleted/")
    assert any(o["Size"] == video["FileSize"] for o in listed.get("Contents", []))
    assert "Stopping" in {e["reason"] for e in kube.events("deleted")}


def test_operator_restart_mid_recording_loses_nothing(
    kube: Kube, start_operator: Any, page_server: str, pod_env: dict[str, str]
) -> None:
    """The operator is killed while the page records; a control sent meanwhile is forwarded by
    the next operator, which also finishes the task with its result."""
    first = start_operator(**pod_env)
    kube.apply(recording(
        "restart", recordUrl=f"{page_server}/recorder_sound.html", width=640, height=360,
        storageType="cos",
        output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": "restart"}},
    ))
    wait_for(lambda: kube.get("pod", "restart-recorder"), 30, "the recorder pod")
    kubelet = Kubelet(kube, "restart-recorder")
    try:
        kubelet.start()
        kube.wait_phase("restart", "recording", timeout=60)
        first.stop(hard=True)  # SIGKILL mid-task
        kube.patch_spec("restart", {"action": "Pause", "actionSeq": 1})  # nobody listens yet
        time.sleep(1)
        assert kube.status("restart")["phase"] == "recording"
        start_operator(**pod_env)
        status = kube.wait_phase("restart", "paused", timeout=60)
        assert status["observedActionSeq"] == 1
        kube.patch_spec("restart", {"action": "Stop", "actionSeq": 2})
        assert kubelet.report_exit(timeout=120) == 0
        status = kube.wait_phase("restart", "finished", timeout=60)
    except BaseException:
        sys.stderr.write(f"--- recorder log ---\n{kubelet.log.read_text(errors='replace')[-8000:]}\n")
        raise
    finally:
        kubelet.kill()
    assert "errorCode" not in status["result"], status["result"]
    assert status["result"]["videos"][0]["fileDuration"] > 0.5
    pod = kube.get("pod", "restart-recorder")  # not recreated (a finished task's pod goes)
    assert pod is None or pod["metadata"]["uid"] == kubelet.pod["metadata"]["uid"]

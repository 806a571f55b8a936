"""Bounded growth against the real kube-apiserver: a finished WebRecording is deleted
`ttlSecondsAfterFinished` after its finishTime (spec field, else the operator's default), also
when the operator was down at that moment; one with a long TTL stays; a finished task's recorder
pod and token Secret go as soon as it finishes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from opkit import Kube, recording, wait_for
from test_operator_cluster import _terminated
from webrecord.api.models import Phase, RecorderStatus

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

REFUSED = "http://2130706433/"  # ambiguous host: finished with InvalidParam at once, no pod


def _refused(name: str, **spec: Any) -> dict[str, Any]:
    return recording(name, recordUrl=REFUSED, **spec)


def test_finished_recording_expires_after_its_ttl(kube: Kube, start_operator: Any) -> None:
    start_operator()
    kube.apply(_refused("short-lived", ttlSecondsAfterFinished=2))
    kube.apply(_refused("long-lived", ttlSecondsAfterFinished=3600))
    kube.apply(_refused("at-once", ttlSecondsAfterFinished=0))
    finished = kube.wait_phase("short-lived", "finished")
    assert finished["result"]["errorCode"] == "InvalidParam"
    assert not finished.get("podName")
    wait_for(lambda: kube.get("webrecording", "at-once") is None, 15, "the TTL-0 WebRecording to go")
    wait_for(lambda: kube.get("webrecording", "short-lived") is None, 15,
             "the expired WebRecording to be deleted")
    # Not before its time: finishTime is in whole seconds, the deletion came after it + 2 s.
    assert time.time() >= finished["finishTime"] + 2
    kube.wait_phase("long-lived", "finished")
    time.sleep(2)
    assert kube.get("webrecording", "long-lived") is not None


def test_operator_default_ttl_and_keep_forever(kube: Kube, start_operator: Any) -> None:
    # 3 s, not 1: finishTime is in whole seconds, so a 1 s TTL can run out within the poll
    # interval of the finish and the test never sees phase finished (a CI flake).
    op = start_operator(WEBRECORD_OPERATOR_TTL_SECONDS_AFTER_FINISHED="3")  # tests' FAST: 0
    kube.apply(_refused("defaulted"))
    kube.wait_phase("defaulted", "finished")
    wait_for(lambda: kube.get("webrecording", "defaulted") is None, 15, "the default TTL")
    op.stop()
    start_operator(WEBRECORD_OPERATOR_TTL_SECONDS_AFTER_FINISHED="0")
    kube.apply(_refused("kept"))
    kube.wait_phase("kept", "finished")
    time.sleep(3)
    assert kube.get("webrecording", "kept") is not None


def test_expiry_survives_an_operator_restart(kube: Kube, start_operator: Any) -> None:
    """The schedule comes from status.finishTime: a TTL that ran out while no operator ran is
    honoured by the next one, at once."""
    first = start_operator()
    kube.apply(_refused("outlived", ttlSecondsAfterFinished=3))
    status = kube.wait_phase("outlived", "finished")
    first.stop(hard=True)
    time.sleep(max(0.0, status["finishTime"] + 4 - time.time()))
    assert kube.get("webrecording", "outlived") is not None  # nobody deleted it meanwhile
    start_operator()
    wait_for(lambda: kube.get("webrecording", "outlived") is None, 15,
             "the restarted operator to delete the expired WebRecording")


def test_pod_and_secret_go_when_the_task_finishes(kube: Kube, start_operator: Any) -> None:
    start_operator()
    kube.apply(recording("tidy", ttlSecondsAfterFinished=3600))
    wait_for(lambda: kube.get("pod", "tidy-recorder") and kube.get("secret", "tidy-recorder"),
             30, "the pod and its token secret")
    now = int(time.time())
    final = RecorderStatus(task_id="tidy", status=Phase.FINISHED, create_time=now - 9,
                           start_time=now - 8, stop_time=now - 1, finish_time=now)
    kube.set_pod_status("tidy-recorder", {"phase": "Succeeded", "containerStatuses": [
        _terminated(final.model_dump_json(by_alias=True, exclude_none=True))]})
    status = kube.wait_phase("tidy", "finished")
    assert status["finishTime"] == now
    wait_for(lambda: kube.get("pod", "tidy-recorder") is None and
             kube.get("secret", "tidy-recorder") is None, 30, "the pod and secret to be deleted")
    assert kube.status("tidy")["podName"] == "tidy-recorder"  # the record of it stays


def test_pod_left_by_a_stopped_operator_goes_after_restart(kube: Kube, start_operator: Any) -> None:
    """The operator died after the task finished but before it removed the pod: the next one
    removes pod and secret when it sees the finished task."""
    first = start_operator()
    kube.apply(recording("leftover", ttlSecondsAfterFinished=3600))
    wait_for(lambda: kube.status("leftover").get("podName"), 30, "podName")
    first.stop(hard=True)
    kube.kubectl("patch", "webrecording", "leftover", "--subresource=status", "--type=merge",
                 "-p", '{"status": {"phase": "finished", "finishTime": %d}}' % int(time.time()))
    assert kube.get("pod", "leftover-recorder") is not None
    start_operator()
    wait_for(lambda: kube.get("pod", "leftover-recorder") is None and
             kube.get("secret", "leftover-recorder") is None, 30, "the leftover pod and secret")
    assert kube.get("webrecording", "leftover") is not None

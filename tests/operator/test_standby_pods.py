"""Standby recorder pods on a real kube-apiserver: the operator keeps the pool full, a new
WebRecording claims a ready standby pod (the same pod becomes its recorder and records a
video), and every way a claim cannot happen ends in the task's own pod, never in a lost task.

The test plays the kubelet (tests/operator/kubelet.py): it runs a standby pod's command as a
local process with the pod's env and mounted Secrets, and writes pod statuses."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from kubelet import BUCKET, Kubelet, delivered_video, supervised
from opkit import Kube, recording, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

STANDBY = "webrecord.io/standby=true"
POOL = {"WEBRECORD_OPERATOR_STANDBY_CHECK_S": "0.5"}


def standby_pods(kube: Kube) -> list[dict[str, Any]]:
    out = kube.kubectl("get", "pods", "-l", STANDBY, "-o", "json")
    return [p for p in json.loads(out.stdout)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def names(pods: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["name"] for p in pods}


def pool_of(kube: Kube, size: int, without: set[str] = frozenset()) -> set[str]:
    """Wait until the pool holds `size` pods, none of them in `without`."""
    return wait_for(lambda: (n := names(standby_pods(kube))) and len(n) == size
                    and not n & without and n, 30, f"{size} standby pod(s) not in {without}")


def mark_ready(kube: Kube, pod: str) -> None:
    """A kubelet's report of a running, ready pod (nothing listens on its port)."""
    kube.set_pod_status(pod, {
        "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "containerStatuses": [{"name": "recorder", "image": "x", "imageID": "", "ready": True,
                               "restartCount": 0, "state": {"running": {}}}]})


def test_pool_is_refilled_when_a_standby_pod_goes(kube: Kube, start_operator: Any) -> None:
    start_operator(WEBRECORD_OPERATOR_STANDBY_PODS="2", **POOL)
    first = pool_of(kube, 2)
    for name in first:
        # Each has its own token Secret, owned by the pod (garbage collected with it).
        secret = wait_for(lambda: kube.get("secret", name), 10, f"secret {name}")
        [owner] = secret["metadata"]["ownerReferences"]
        assert owner["kind"] == "Pod" and owner["name"] == name
    gone, ended = sorted(first)
    kube.kubectl("delete", "pod", gone, "--wait=false")
    # A standby pod whose Chromium died exits 3 (the recorder's idle end): Failed.
    kube.set_pod_status(ended, {"phase": "Failed", "containerStatuses": [{
        "name": "recorder", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]})
    pool_of(kube, 2, without=first)
    wait_for(lambda: kube.get("pod", ended) is None, 10, "the ended standby pod removed")


def test_a_standby_pod_never_ready_is_replaced(kube: Kube, start_operator: Any) -> None:
    """Not ready within the start deadline (no kubelet runs it here): it would hold its place
    in the pool for ever, so it is replaced."""
    start_operator(WEBRECORD_OPERATOR_STANDBY_PODS="1", WEBRECORD_OPERATOR_START_DEADLINE_S="3",
                   **POOL)
    [stuck] = pool_of(kube, 1)
    pool_of(kube, 1, without={stuck})


def test_a_failed_claim_takes_the_cold_path(kube: Kube, start_operator: Any) -> None:
    """A ready-looking standby pod that does not answer /claim: the task gets its own pod
    and the taken standby pod is deleted, not left as the task's recorder."""
    start_operator(WEBRECORD_OPERATOR_STANDBY_PODS="1", WEBRECORD_OPERATOR_CONTROL_TIMEOUT_S="2",
                   **POOL)
    [dead] = pool_of(kube, 1)
    wait_for(lambda: kube.get("secret", dead), 10, "the standby token")
    mark_ready(kube, dead)
    kube.apply(recording("coldpath"))
    pod = wait_for(lambda: kube.get("pod", "coldpath-recorder"), 30, "the task's own pod")
    assert pod["metadata"]["ownerReferences"][0]["name"] == "coldpath"
    assert kube.status("coldpath")["podName"] == "coldpath-recorder"
    wait_for(lambda: kube.get("pod", dead) is None, 30, "the unclaimable standby pod deleted")
    pool_of(kube, 1, without={dead})


def test_another_size_takes_its_own_pod(kube: Kube, start_operator: Any) -> None:
    """Resources of a running pod cannot change: a 1080p task leaves the 720p standby pod."""
    start_operator(WEBRECORD_OPERATOR_STANDBY_PODS="1", **POOL)
    [idle] = pool_of(kube, 1)
    wait_for(lambda: kube.get("secret", idle), 10, "the standby token")
    mark_ready(kube, idle)
    kube.apply(recording("big", width=1920, height=1080))
    wait_for(lambda: kube.get("pod", "big-recorder"), 30, "the task's own pod")
    assert kube.status("big")["podName"] == "big-recorder"
    time.sleep(1.5)  # a few pool rounds: the idle pod is still the pool's
    assert names(standby_pods(kube)) == {idle}


@pytest.mark.browser
def test_a_webrecording_claims_a_standby_pod_and_records(
        kube: Kube, start_operator: Any, moto: str, page_server: str,
        pod_env: dict[str, str]) -> None:
    start_operator(WEBRECORD_OPERATOR_STANDBY_PODS="1", **POOL, **pod_env)
    [name] = pool_of(kube, 1)
    wait_for(lambda: kube.get("secret", name), 10, "the standby token")
    kubelet = Kubelet(kube, name)
    with supervised(kubelet, kube, "warm"):
        kubelet.start()  # Chromium on a blank page, waiting for the claim
        kube.apply(recording(
            "warm", recordUrl=f"{page_server}/recorder_sound.html", maxDurationLimit=120,
            storageType="cos",
            output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": "warm"}}))
        kube.wait_phase("warm", "recording", timeout=60)
        status = kube.status("warm")
        assert status["podName"] == name  # the standby pod itself records
        pod = kube.get("pod", name)
        assert pod["metadata"]["labels"]["webrecord.io/task"] == "warm"
        assert "webrecord.io/standby" not in pod["metadata"]["labels"]
        [owner] = pod["metadata"]["ownerReferences"]
        assert owner["kind"] == "WebRecording" and owner["name"] == "warm"
        assert pod["spec"]["activeDeadlineSeconds"] > 0
        # The pool starts its replacement at once (not running here: one port on loopback).
        pool_of(kube, 1, without={name})
        time.sleep(2)
        kube.patch_spec("warm", {"action": "Stop", "actionSeq": 1})
        assert kubelet.report_exit(timeout=120) == 0
        status = kube.wait_phase("warm", "finished", timeout=60)
    delivered_video(status, moto, "warm/", 1.5)


def test_a_second_run_reuses_the_claimed_pod(kube: Kube, start_operator: Any) -> None:
    """The creation handler ran again after a claim (a retry, a restarted operator): the pod it
    claimed, found by the task label, stays the task's recorder; no cold pod joins it, and its
    token comes from the standby pod's Secret when the task's was not made yet."""
    claimed = "webrecord-standby-0badc0de"
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": claimed},
                "stringData": {"token": "standby-token"}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": claimed, "labels": {
        "app.kubernetes.io/component": "recorder",
        "app.kubernetes.io/managed-by": "webrecord-operator", "webrecord.io/task": "again"}},
        "spec": {"containers": [{"name": "recorder", "image": "x"}]}})
    start_operator(WEBRECORD_OPERATOR_STANDBY_PODS="1", **POOL)
    pool_of(kube, 1)  # the operator runs and has seen the pods
    kube.apply(recording("again"))
    wait_for(lambda: kube.status("again").get("podName") == claimed, 30, "the claimed pod reused")
    secret = wait_for(lambda: kube.get("secret", "again-recorder"), 10, "the task's Secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == "standby-token"
    time.sleep(1)
    assert kube.get("pod", "again-recorder") is None


def test_idle_standby_pods_go_with_the_charts_owner_configmap(
        kube: Kube, start_operator: Any) -> None:
    """helm uninstall deletes the chart's owner ConfigMap: the idle standby pods (and their
    Secrets) are garbage-collected with it and no new ones are made; a claimed pod belongs to
    its WebRecording and stays."""
    from webrecord.controller.pod import claim_patch
    from webrecord.controller.settings import OperatorSettings
    from webrecord.api.models import RecordingSpec

    owner_name = "rel-webrecord-standby-owner"
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": owner_name}})
    anchor = kube.get("configmap", owner_name)
    start_operator(WEBRECORD_OPERATOR_STANDBY_PODS="2",
                   WEBRECORD_OPERATOR_STANDBY_OWNER=owner_name, **POOL)
    idle = pool_of(kube, 2)
    for pod in standby_pods(kube):
        [ref] = pod["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == ("ConfigMap", owner_name,
                                                          anchor["metadata"]["uid"])
    # The operator's own claim patch (as a claim applies it), with a WebRecording as the owner.
    kube.apply(recording("taker", width=1920, height=1080))  # another size: takes no standby pod
    taker = wait_for(lambda: kube.get("webrecording", "taker"), 10, "the WebRecording")
    claimed = sorted(idle)[0]
    ops = claim_patch(kube.get("pod", claimed), taker,
                      RecordingSpec.model_validate(taker["spec"]), OperatorSettings(), time.time())
    kube.kubectl("patch", "pod", claimed, "--type=json", "-p", json.dumps(ops))
    [ref] = kube.get("pod", claimed)["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"]) == ("WebRecording", "taker")
    pool_of(kube, 2, without={claimed})  # refilled, the new one owned by the ConfigMap too

    kube.kubectl("delete", "configmap", owner_name)
    if kube.cp.has_controller_manager:
        wait_for(lambda: not standby_pods(kube), 60, "the idle standby pods garbage-collected")
        for name in idle - {claimed}:
            wait_for(lambda: kube.get("secret", name) is None, 60, f"secret {name} collected")
    else:  # no garbage collector in this control plane: what the operator does is still seen
        for pod in standby_pods(kube):
            kube.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")
    time.sleep(2)  # four pool rounds: nothing made without the owner
    assert not standby_pods(kube)
    assert kube.get("pod", claimed) is not None  # the WebRecording's now

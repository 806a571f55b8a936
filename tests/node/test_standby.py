"""Standby recorder pods on a real node (`operator.standbyPods`): a WebRecording of the default
size claims the running standby pod (the same pod records and delivers), a new standby pod
takes its place, and an idle standby pod that is deleted is replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from node.flows import BUCKET, Release, dump_namespace
from node.test_user_flows import assert_delivered, is_ready, wait_phase
from opkit import recording, wait_for

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

CHART = Path(__file__).resolve().parents[2] / "charts" / "webrecord"
STANDBY = "webrecord.io/standby=true"


def standby_pods(release: Release) -> list[dict[str, Any]]:
    out = release.kube.kubectl("get", "pods", "-l", STANDBY, "-o", "json")
    return [p for p in json.loads(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready_standby(release: Release, without: set[str] = frozenset()) -> dict[str, Any]:
    return wait_for(lambda: next((p for p in standby_pods(release) if is_ready(p)
                                  and p["metadata"]["name"] not in without), None),
                    240, f"a ready standby pod other than {without}", interval=1)


def test_standby_pod_is_claimed_records_and_is_replaced(release: Release) -> None:
    release.helm_run("upgrade", release.name, str(CHART), "-f", str(release.values_file),
                     "--set", "operator.standbyPods=1", "--wait", "--timeout", "8m")
    kube = release.kube
    try:
        idle = ready_standby(release)["metadata"]["name"]
        # Fault: an idle standby pod deleted is replaced by a new one.
        kube.kubectl("delete", "pod", idle, "--wait=false")
        name = ready_standby(release, without={idle})["metadata"]["name"]

        kube.apply(recording(
            "warm", recordUrl=f"{release.page_base}/recorder_sound.html", width=1280, height=720,
            maxDurationLimit=300, callbackUrl=release.callbacks.url, storageType="cos",
            output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": "warm"}}))
        status = wait_phase(release, "warm", "recording", 60)
        assert status["podName"] == name  # the standby pod itself records
        pod = kube.get("pod", name)
        assert pod["metadata"]["labels"]["webrecord.io/task"] == "warm"
        assert pod["metadata"]["ownerReferences"][0]["name"] == "warm"
        ready_standby(release, without={idle, name})  # the pool refilled
        wait_for(lambda: kube.status("warm").get("recordedSeconds", 0) >= 4, 60, "4 s recorded")
        kube.patch_spec("warm", {"action": "Stop", "actionSeq": 1})
        final = wait_phase(release, "warm", "finished", 240)
        assert_delivered(release, "warm", final, min_seconds=3)
    except BaseException:
        dump_namespace(kube)
        raise
    finally:
        # Off again: the operator removes the idle standby pods it left.
        release.helm_run("upgrade", release.name, str(CHART), "-f", str(release.values_file),
                         "--set", "operator.standbyPods=0", "--wait", "--timeout", "8m")

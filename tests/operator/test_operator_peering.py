"""Several operator replicas: kopf peering lets only the highest priority act; when it goes,
another takes over (the chart runs 2 replicas and creates the KopfPeering)."""

from __future__ import annotations

from typing import Any

import pytest

from opkit import Kube, recording, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_one_replica_acts_and_another_takes_over(kube: Kube, start_operator: Any) -> None:
    kube.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "webrecord"}})
    high = start_operator(["--namespace", kube.ns, "--priority", "200"])
    wait_for(lambda: (kube.get("kopfpeering", "webrecord") or {}).get("status"), 30,
             "the first replica to announce itself in the peering")
    low = start_operator(["--namespace", kube.ns, "--priority", "100"])
    # A replica starts paused and resumes only when the peering shows no higher priority.
    wait_for(lambda: "Initial authentication has finished" in low.log(), 30, "the second replica")

    kube.apply(recording("ha-one"))
    wait_for(lambda: kube.get("pod", "ha-one-recorder"), 30, "the active replica to act")
    wait_for(lambda: kube.status("ha-one").get("phase"), 30, "the status")
    assert "ha-one" in high.log() and "ha-one" not in low.log()
    assert "Resuming operations" not in low.log()  # still standing by

    high.stop()  # graceful: it leaves the peering at once
    wait_for(lambda: "Resuming operations" in low.log(), 60, "the standby replica to take over")
    kube.apply(recording("ha-two"))
    wait_for(lambda: kube.get("pod", "ha-two-recorder"), 30, "the new active replica to act")
    assert "ha-two" in low.log()
    assert kube.status("ha-two")["phase"] == "normal"

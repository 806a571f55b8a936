"""The operator's Prometheus endpoint and kopf liveness probe against the real kube-apiserver,
with the recorder pod's status played like the kubelet would (as in test_conditions): the
metrics follow what happened to the WebRecordings."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import requests

from adapter.helpers import sample, scrape
from delivery.moto_server import free_port
from opkit import Kube, recording, wait_for
from test_conditions import _finished_with_a_video
from test_operator_cluster import _terminated

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def _metrics_url(op: Any) -> str:
    line = wait_for(lambda: next((ln for ln in op.log().splitlines()
                                  if "operator metrics listening" in ln), None), 30,
                    "the operator's metrics endpoint")
    port = re.search(r'"port": (\d+)', line).group(1)
    return f"http://127.0.0.1:{port}/metrics"


def test_metrics_and_liveness_follow_the_recordings(kube: Kube, start_operator: Any) -> None:
    liveness = free_port()
    op = start_operator(WEBRECORD_OPERATOR_METRICS_PORT="0",
                        WEBRECORD_OPERATOR_LIVENESS_PORT=str(liveness))
    url = _metrics_url(op)
    kube.apply(recording("fine", callbackUrl="http://127.0.0.1:9/cb", ttlSecondsAfterFinished=3600))
    wait_for(lambda: kube.get("pod", "fine-recorder"), 30, "the recorder pod")
    waiting = wait_for(lambda: (m := scrape(url)) and sample(
        m, "webrecord_recordings", status="normal") == 1 and m, 30, "one recording in normal")
    assert sample(waiting, "webrecord_recordings", status="recording") == 0
    # kopf runs the probe handlers (and caches their results a while) behind /healthz.
    health = requests.get(f"http://127.0.0.1:{liveness}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["recordings"] == {"normal": 1}, health.text

    kube.set_pod_status("fine-recorder", {"phase": "Succeeded", "containerStatuses": [
        _terminated(_finished_with_a_video("fine"))]})
    done = wait_for(lambda: (m := scrape(url)) and ("webrecord_recordings_finished_total",
                    frozenset({("error_code", "ok")})) in m and m, 30, "the finished count")
    status = kube.status("fine")
    assert status["phase"] == "finished"
    assert sample(done, "webrecord_recordings_finished_total", error_code="ok") == 1
    assert sample(done, "webrecord_delivered_bytes_total") == 1234  # the stand-in's FileSize
    assert sample(done, "webrecord_callbacks_total", outcome="ok") == 1
    assert sample(done, "webrecord_start_latency_seconds_count") == 1
    assert sample(done, "webrecord_recordings", status="normal") == 0
    assert sample(done, "webrecord_recorder_restarts_total") == 0

    # A task the operator refuses ends Failed with its ErrorCode, counted as such.
    kube.apply(recording("refused", recordUrl="http://2130706433/", ttlSecondsAfterFinished=3600))
    refused = wait_for(lambda: (m := scrape(url)) and ("webrecord_recordings_finished_total",
                       frozenset({("error_code", "InvalidParam")})) in m and m, 30,
                       "the refused task counted")
    assert sample(refused, "webrecord_recordings_finished_total", error_code="InvalidParam") == 1
    assert sample(refused, "webrecord_recordings_finished_total", error_code="ok") == 1
    assert json.loads(kube.kubectl("get", "wrec", "refused", "-o",
                                   "jsonpath={.status.result}").stdout)["errorCode"] == "InvalidParam"


def test_adapter_is_ready_while_the_api_server_answers(kube: Kube, tmp_path: Any) -> None:
    """The kubernetes backend's readiness against the real kube-apiserver (the unreachable case
    is tests/adapter/test_health.py), counted on the adapter's metrics port."""
    from adapter.conftest import Client
    from adapter.helpers import ServeProcess

    with ServeProcess(tmp_path, "--no-auth", "--backend", "kubernetes", "--namespace", kube.ns,
                      "--metrics-port", "0",
                      env={"WEBRECORD_ADAPTER_KUBECONFIG": str(kube.cp.kubeconfig)}) as served:
        client = Client("127.0.0.1", served.port)
        ready = client.request("GET", "/readyz")
        assert ready.status == 200, ready.body
        assert ready.body["namespace"] == kube.ns and ready.body["backend"] == "kubernetes"
        assert client.request("GET", "/healthz").body["ready"] is True
        counted = scrape(f"http://127.0.0.1:{served.metrics_port}/metrics")
        assert sample(counted, "webrecord_adapter_requests_total", action="GET /readyz",
                      code="ok") == 1
        assert sample(counted, "webrecord_adapter_requests_total", action="GET /healthz",
                      code="ok") == 1


def test_queue_length_and_wait_under_the_concurrency_limit(kube: Kube, start_operator: Any) -> None:
    op = start_operator(WEBRECORD_OPERATOR_MAX_CONCURRENT="1", WEBRECORD_OPERATOR_QUEUE_RETRY_S="0.5",
                        WEBRECORD_OPERATOR_METRICS_PORT="0")
    url = _metrics_url(op)
    kube.apply(recording("one", ttlSecondsAfterFinished=3600))
    wait_for(lambda: kube.get("pod", "one-recorder"), 30, "the first pod")
    applied = time.time()
    kube.apply(recording("two", ttlSecondsAfterFinished=3600))
    queued = wait_for(lambda: (m := scrape(url)) and sample(m, "webrecord_queue_length") == 1
                      and m, 30, "the second task queued")
    assert sample(queued, "webrecord_queue_wait_seconds_count") == 1  # "one" got its slot
    assert kube.get("pod", "two-recorder") is None
    released = time.time()  # "two" gets its slot only after "one" finishes, below
    kube.set_pod_status("one-recorder", {"phase": "Succeeded", "containerStatuses": [
        _terminated(_finished_with_a_video("one"))]})
    wait_for(lambda: kube.get("pod", "two-recorder"), 30, "the queued task's pod")
    after = wait_for(lambda: (m := scrape(url)) and sample(m, "webrecord_queue_length") == 0
                     and m, 30, "the queue empty")
    assert sample(after, "webrecord_queue_wait_seconds_count") == 2
    # "two" waited at least from its creation until "one" finished.
    assert sample(after, "webrecord_queue_wait_seconds_sum") >= released - applied

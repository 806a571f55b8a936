"""The adapter's kubernetes backend against the real API server, with the operator running."""

from __future__ import annotations

from typing import Any

import pytest

from webrecord.api.protocol.errors import ApiError

from opkit import Kube, wait_for
from webrecord.adapter.backends import base, kubernetes as kbackend
from webrecord.adapter.settings import AdapterSettings
from webrecord.api.models import Action, Phase, RecordingSpec, RecordingTask

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


def _task(task_id: str) -> RecordingTask:
    spec = RecordingSpec(record_url="https://example.test/", width=640, height=360,
                         max_duration_limit=30)
    return RecordingTask(task_id=task_id, spec=spec, create_time=1_700_000_000)


async def test_start_describe_list_control(kube: Kube, start_operator: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kbackend, "CONTROL_WAIT_S", 1.0)
    start_operator()
    refusing = kbackend.create(AdapterSettings(backend="kubernetes", namespace=kube.ns,
                                               kubeconfig=kube.cp.kubeconfig))
    await refusing.open()
    try:  # no Output.Cos/Vod and no filesystem output mounted in the pods: refused at Start
        with pytest.raises(ApiError, match="no storage target") as refused:
            await refusing.start(_task("wr-nowhere"), "key-1")
        assert refused.value.code.value == "InvalidParam"
        assert kube.get("webrecording", "wr-nowhere") is None
    finally:
        await refusing.close()
    backend = kbackend.create(AdapterSettings(backend="kubernetes", namespace=kube.ns,
                                              kubeconfig=kube.cp.kubeconfig,
                                              cluster_filesystem_output=True))
    await backend.open()
    try:
        started = await backend.start(_task("wr-aaa"), "key-1")
        assert started.status == Phase.NORMAL
        await backend.start(_task("wr-bbb"), "key-1")
        await backend.start(_task("wr-ccc"), "key-2")
        obj = kube.get("webrecording", "wr-aaa")
        assert obj["spec"]["width"] == 640 and obj["metadata"]["annotations"]["webrecord.io/owner"] == "key-1"

        wait_for(lambda: kube.status("wr-aaa").get("podName"), 30, "the operator to create the pod")
        described = await backend.describe("wr-aaa", "key-1")
        assert described.status == Phase.NORMAL and described.create_time

        with pytest.raises(base.TaskNotFound):
            await backend.describe("wr-aaa", "key-2")  # another tenant's task looks absent
        with pytest.raises(base.TaskNotFound):
            await backend.describe("Not_A_Name", "key-1")

        page = await backend.list("key-1", 0, 1)
        assert page.total == 2 and len(page.tasks) == 1
        assert {t.task_id for t in (await backend.list("key-1", 0, 10)).tasks} == {"wr-aaa", "wr-bbb"}
        assert [t.task_id for t in (await backend.list("key-2", 0, 10)).tasks] == ["wr-ccc"]

        # A Pause before the recorder runs is accepted (the recording will start paused); the
        # pod is pending here, so the backend returns after its wait with the control pending.
        await backend.control("wr-aaa", "key-1", Action.PAUSE)
        # The next control waits its turn instead of replacing the unforwarded Pause: after
        # the wait it is refused as retryable, and the Pause is still what spec holds.
        with pytest.raises(base.BackendUnavailable, match="previous control"):
            await backend.control("wr-aaa", "key-1", Action.REFRESH)
        spec = kube.get("webrecording", "wr-aaa")["spec"]
        assert spec["action"] == "Pause" and spec["actionSeq"] == 1
        health = await backend.health()
        assert health == {"backend": "kubernetes", "namespace": kube.ns}
    finally:
        await backend.close()

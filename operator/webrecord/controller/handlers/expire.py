"""Finished WebRecordings: their pod and Secret go at once, the resource after its TTL.

The first time this process sees a WebRecording finished (right after it finished, or in the
first listing after a restart) it deletes the task's recorder pod and token Secret: the final
status is in `.status` and nothing reads them any more (both may be gone already: a 404 is
fine). Every event of a finished WebRecording (re)computes its deletion time from
`status.finishTime` (controller.expiry). A DELETED event drops the task from the schedule.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from webrecord.api.models import Phase
from webrecord.api.resource import GROUP, PLURAL, VERSION
from webrecord.controller.expiry import expires_at
from webrecord.controller.pod import recorder_name, task_pod_name
from webrecord.controller.runtime import Runtime, runtime
from webrecord.logs import event

log = logging.getLogger(__name__)


async def release(rt: Runtime, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Delete a finished task's recorder pod and token Secret (both may be gone already)."""
    try:
        await rt.kube.delete_pod(namespace, task_pod_name(name, status), grace_s=30)
        await rt.kube.delete_secret(namespace, recorder_name(name))
    except Exception as exc:  # noqa: BLE001 - garbage collection removes them with the task
        event(log, "pod and secret of a finished task not deleted", logging.WARNING, task=name,
              error=f"{exc.__class__.__name__}: {exc}")


@kopf.on.event(GROUP, VERSION, PLURAL, id="expire")
async def finished_event(
    type: str | None, body: kopf.Body, spec: kopf.Spec, status: kopf.Status,  # noqa: A002
    name: str, namespace: str, memo: kopf.Memo, **_: Any,
) -> None:
    rt = runtime(memo)
    if rt.expiry is None:
        return
    key = (namespace, name)
    if type == "DELETED":
        rt.expiry.forget(key)
        rt.forget(key)
        rt.pods.pop(key, None)
        return
    if status.get("phase") != Phase.FINISHED.value or body.get("metadata", {}).get(
            "deletionTimestamp"):
        return
    if key not in rt.expiry.released:
        rt.expiry.released.add(key)
        if status.get("podName"):
            await release(rt, namespace, name, dict(status))
    at = expires_at(dict(spec), dict(status), rt.settings.ttl_seconds_after_finished)
    if at is None:
        rt.expiry.unschedule(key)
    else:
        rt.expiry.schedule(key, body["metadata"]["uid"], at)

"""Deletion: a WebRecording being deleted stops its recording cleanly before it goes.

The finalizer sends Stop (so the video recorded so far is delivered and the callback sent) and
waits for the recorder to finish, at most `delete_wait_s`; then it lets go and garbage
collection removes the pod and the secret (owner references).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from webrecord.api.models import Action, Phase
from webrecord.api.resource import GROUP, PLURAL, VERSION
from webrecord.controller import status as st
from webrecord.controller.recorder_client import RecorderUnreachable
from webrecord.controller.runtime import runtime
from webrecord.logs import event

log = logging.getLogger(__name__)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="stop-on-delete")
async def stop_on_delete(
    body: kopf.Body, status: kopf.Status, name: str, namespace: str, memo: kopf.Memo, **_: Any,
) -> None:
    rt = runtime(memo)
    key = (namespace, name)
    try:
        if status.get("phase") == Phase.FINISHED.value:
            return
        settings = rt.settings
        deadline = time.monotonic() + settings.delete_wait_s
        token = await rt.token(namespace, name)
        stop_sent = False
        while time.monotonic() < deadline:
            pod = await rt.pod(namespace, name, status.get("podName"))
            base = st.pod_address(pod, settings.control_port) if pod else None
            if base is None:
                return  # never ran, or already ended: nothing to stop
            try:
                if not stop_sent:
                    reply = await rt.recorders.control(base, token, Action.STOP, None)
                    stop_sent = True
                    kopf.event(body, type="Normal", reason="Stopping",
                              message="WebRecording deleted: Stop sent to the recorder")
                    if reply.status is not None and reply.status.status == Phase.FINISHED:
                        return
                rec = await rt.recorders.status(base, token)
                if rec.status == Phase.FINISHED:
                    event(log, "recording finished before deletion", task=name)
                    return
            except RecorderUnreachable as exc:
                if stop_sent:
                    return  # the recorder exited after finishing: its endpoint is gone
                event(log, "stop on delete: recorder unreachable", logging.INFO, task=name,
                      error=str(exc))
            await asyncio.sleep(min(settings.poll_interval_s, max(0.0, deadline - time.monotonic())))
        kopf.warn(body, reason="StopTimeout",
                  message=f"recorder did not finish within {settings.delete_wait_s:g} s; deleting")
    finally:
        rt.forget(key)

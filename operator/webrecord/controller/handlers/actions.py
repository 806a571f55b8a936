"""Control forwarding: a change of spec.action or spec.actionSeq goes to the recorder at once.

The monitor timer forwards any control still pending on its next tick (pod not running yet,
recorder busy, operator restarted), so this handler is only the fast path and never fails the
resource: both paths send seq = metadata.generation and the recorder ignores duplicates.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from webrecord.api.models import Phase
from webrecord.api.resource import GROUP, PLURAL, VERSION
from webrecord.controller import status as st
from webrecord.controller.recorder_client import RecorderUnreachable
from webrecord.controller.runtime import runtime
from webrecord.controller.tasks import apply, forward_action, pending_action, phase_event
from webrecord.logs import event

log = logging.getLogger(__name__)


@kopf.on.update(GROUP, VERSION, PLURAL, id="action", field="spec")
async def forward_control(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch,
    name: str, namespace: str, memo: kopf.Memo, **_: Any,
) -> None:
    rt = runtime(memo)
    current = dict(status)
    action = pending_action(dict(spec), dict(meta), current)
    if action is None or not current.get("podName"):
        return
    if current.get("phase") == Phase.FINISHED.value:
        apply(patch, {"observedGeneration": meta.get("generation"),
                      "observedActionSeq": spec.get("actionSeq", 0),
                      "observedAction": action.value})
        kopf.warn(body, reason="ActionRejected",
                  message=f"{action.value} ignored: the task is already finished")
        return
    pod = await rt.pod(namespace, name, current.get("podName"))
    base = st.pod_address(pod, rt.settings.control_port) if pod else None
    if base is None:
        event(log, "control waits for the recorder to run", task=name, action=action.value)
        return
    token = await rt.token(namespace, name)
    try:
        changes = await forward_action(rt, body, dict(spec), dict(meta), current, base, token, None)
    except RecorderUnreachable as exc:
        event(log, "control not forwarded yet", logging.INFO, task=name, error=str(exc))
        return
    apply(patch, changes)
    if "phase" in changes:
        phase_event(body, current.get("phase"), changes["phase"])

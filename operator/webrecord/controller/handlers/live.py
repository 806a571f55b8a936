"""Live outputs (extension): a change of spec.output.live goes to the running recorder.

The recorder takes the whole list (PUT /live, idempotent), so a retry or a repeat is harmless.
Until the recorder runs, kopf retries this handler: a recorder started later reads the list
from its task (the spec at pod creation) and gets the newest list as soon as it answers.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from webrecord.api.models import Phase
from webrecord.api.resource import GROUP, PLURAL, VERSION, pending_action
from webrecord.controller import status as st
from webrecord.controller.recorder_client import RecorderUnreachable
from webrecord.controller.runtime import runtime
from webrecord.controller.tasks import apply
from webrecord.logs import event

log = logging.getLogger(__name__)

RETRY_S = 3.0


@kopf.on.update(GROUP, VERSION, PLURAL, id="live", field="spec.output.live")
async def forward_live(
    body: kopf.Body, new: Any, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status,
    patch: kopf.Patch, name: str, namespace: str, memo: kopf.Memo, **_: Any,
) -> None:
    rt = runtime(memo)
    phase = status.get("phase")
    if phase is not None and not Phase(phase).active:
        return  # the recording is over: nothing to stream
    pod = await rt.pod(namespace, name, status.get("podName"))
    base = st.pod_address(pod, rt.settings.control_port) if pod else None
    if base is None:
        raise kopf.TemporaryError("live outputs wait for the recorder to run", delay=RETRY_S)
    token = await rt.token(namespace, name)
    try:
        refusal = await rt.recorders.set_live(base, token, list(new or []))
    except RecorderUnreachable as exc:
        raise kopf.TemporaryError(f"live outputs not forwarded yet: {exc}", delay=RETRY_S) from exc
    if refusal is not None:
        kopf.warn(body, reason="LiveOutputsRejected", message=refusal)
        return
    event(log, "live outputs forwarded", task=name, count=len(new or []))
    if pending_action(dict(spec), dict(meta), dict(status)) is None:
        # This generation is taken in (no control waits in spec.action): observedGeneration
        # says so to `kubectl wait` and to whoever writes the next control.
        apply(patch, {"observedGeneration": meta.get("generation")})

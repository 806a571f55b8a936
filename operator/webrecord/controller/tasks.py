"""Steps shared by several handlers: ending a task, forwarding a control, phase events."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from webrecord.api.models import ErrorCode, Phase, RecorderStatus
from webrecord.api.protocol import describe_body
from webrecord.api.resource import pending_action, recorder_status
from webrecord.controller import status as st
from webrecord.controller.recorder_client import RecorderUnreachable
from webrecord.controller.runtime import Runtime
from webrecord.logs import event
from webrecord.metrics import OK, OPERATOR_CALLBACKS_SENT

log = logging.getLogger(__name__)


def apply(patch: kopf.Patch, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        patch.status[key] = value


def phase_event(body: Any, before: str | None, after: str | None, message: str = "") -> None:
    """One Kubernetes Event per phase change (kopf batches and posts them)."""
    if not after or before == after:
        return
    text = f"{before or 'new'} -> {after}" + (f": {message}" if message else "")
    kopf.event(body, type="Normal", reason=f"Phase{after.capitalize()}", message=text[:1024])


async def notify_operator_finish(name: str, spec: dict[str, Any],
                                 status: dict[str, Any]) -> str | None:
    """Callback for a task the operator ended itself (sent by the delivery stage's
    `send_callback`); the error in words, or None when sent."""
    url = spec.get("callbackUrl")
    if not url:
        return None
    from webrecord.delivery.callback import send_callback

    body = describe_body(recorder_status(name, status))
    outcome = await send_callback(url, body)
    OPERATOR_CALLBACKS_SENT.labels(OK if outcome.ok else "failed").inc()
    if outcome.ok:
        return None
    return f"callback failed after {outcome.attempts} attempt(s): {outcome.error}"


async def finish_task(
    rt: Runtime,
    body: Any,
    name: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    patch: kopf.Patch,
    code: ErrorCode,
    message: str,
    delete_pod: bool = False,
) -> None:
    """End a task the recorder cannot end (pod lost, time limit): status, event, callback."""
    namespace = body["metadata"]["namespace"]
    if delete_pod:
        from webrecord.controller.pod import task_pod_name

        await rt.kube.delete_pod(namespace, task_pod_name(name, status), grace_s=10)
    now = time.time()
    changes = st.finish(status, code, message, now)
    final = st.merged(status, changes)
    kopf.warn(body, reason=code.value, message=message[:1024])
    callback_error = await notify_operator_finish(
        name, spec, {**final, "phase": Phase.CALLBACK.value})
    if callback_error:
        changes["message"] = f"{message}; {callback_error}"[:4096]
        kopf.warn(body, reason="CallbackFailed", message=callback_error[:1024])
    apply(patch, changes)
    phase_event(body, status.get("phase"), Phase.FINISHED.value, f"{code.value}: {message}")
    event(log, "task ended by the operator", logging.WARNING, task=name, namespace=namespace,
          error_code=code.value, error=message)


async def forward_action(
    rt: Runtime,
    body: Any,
    spec: dict[str, Any],
    meta: dict[str, Any],
    status: dict[str, Any],
    base: str,
    token: str | None,
    rec: RecorderStatus | None,
) -> dict[str, Any]:
    """POST the pending control with seq = metadata.generation; returns the status changes.

    Every spec change bumps the generation and only action/actionSeq may change, so the
    generation is a strictly increasing sequence of controls: a retry after a crash or a
    concurrent forward is recognised by the recorder as a duplicate and not applied twice.
    Raises RecorderUnreachable when the recorder does not answer (the caller retries later).
    """
    action = pending_action(spec, meta, status)
    if action is None:
        return {}
    generation = meta.get("generation") or 1
    now = time.time()
    changes: dict[str, Any] = {}
    if rec is not None and rec.last_action_seq >= generation:
        reply_status, error = rec, None  # already applied (by us before a restart, or a twin)
    elif rec is not None and rec.status == Phase.FINISHED:
        reply_status, error = rec, f"{action.value} ignored: the task is already finished"
    else:
        reply = await rt.recorders.control(base, token, action, generation)
        reply_status, error = reply.status, reply.error
    if error:
        kopf.warn(body, reason="ActionRejected", message=f"{action.value}: {error}"[:1024])
        changes["conditions"] = st.with_condition(
            status.get("conditions"), st.COND_ACTION, False, "InvalidAction",
            f"{action.value} (actionSeq {spec.get('actionSeq', 0)}): {error}", now, generation,
        )
    else:
        kopf.event(body, type="Normal", reason="ActionApplied",
                  message=f"{action.value} (actionSeq {spec.get('actionSeq', 0)}) applied")
        changes["conditions"] = st.with_condition(
            status.get("conditions"), st.COND_ACTION, True, action.value,
            f"{action.value} (actionSeq {spec.get('actionSeq', 0)}) applied", now, generation,
        )
    changes["observedGeneration"] = generation
    changes["observedActionSeq"] = spec.get("actionSeq", 0)
    changes["observedAction"] = action.value
    if reply_status is not None:
        merged = st.merged(status, changes)
        changes.update(st.reflect(merged, reply_status, now))
    return changes


__all__ = ["RecorderUnreachable", "apply", "finish_task", "forward_action", "pending_action",
           "notify_operator_finish", "phase_event"]

"""Supervision of an active task: a kopf daemon polls its recorder and reflects the status.

Per tick: read the pod (from the watch cache); a pod that ended without finishing the task or
was deleted is replaced by a new one that resumes from the stored segments (controller.replace;
RecorderLost once the restarts are used up), a pod that never started ends the task with
RecorderLost; otherwise GET /status, forward a pending control, reflect the recorder's status
into `.status` (one Event per phase change) and enforce MaxDurationLimit even when the recorder
does not stop by itself: Stop after limit + grace, then delete the pod and end with Timeout if it
still has not finished after the finish deadline. Whether a recorder is gone is decided from the
pod's state only: a recorder that does not answer HTTP is reported, not killed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from webrecord.api.models import Action, ErrorCode, Phase, RecordingSpec
from webrecord.api.resource import GROUP, PLURAL, VERSION
from webrecord.controller import status as st
from webrecord.controller.recorder_client import RecorderUnreachable
from webrecord.controller.replace import recorder_gone, stuck_terminating
from webrecord.controller.runtime import runtime
from webrecord.controller.tasks import apply, finish_task, forward_action, phase_event
from webrecord.logs import event

log = logging.getLogger(__name__)


def _active(status: kopf.Status, **_: Any) -> bool:
    return bool(status.get("podName")) and status.get("phase") != Phase.FINISHED.value


@kopf.daemon(GROUP, VERSION, PLURAL, id="monitor", when=_active, cancellation_timeout=10)
async def monitor(
    stopped: kopf.DaemonStopped, body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta,
    status: kopf.Status, name: str, namespace: str, memo: kopf.Memo, **_: Any,
) -> None:
    """One loop per active task. A plain coroutine, not a kopf timer: with a thousand tasks a
    timer's per-tick machinery costs more CPU than the work; here an idle tick is a dict lookup
    and the status goes out as one merge patch, only when something changed. `body`, `spec`,
    `status` are live views kopf keeps current from the watch."""
    rt = runtime(memo)
    while not stopped:
        patch = kopf.Patch()
        try:
            await tick(body, spec, meta, status, patch, name, namespace, memo)
        except Exception as exc:  # noqa: BLE001 - keep supervising; the next tick retries
            event(log, "monitor tick failed", logging.ERROR, task=name,
                  error=f"{exc.__class__.__name__}: {exc}")
        if patch.status:
            if "conditions" in patch.status:
                patch.status["conditions"] = st.stamp_generation(
                    list(patch.status["conditions"]), meta.get("generation"))
            try:
                await rt.kube.patch_status(namespace, name, dict(patch.status))
            except Exception as exc:  # noqa: BLE001 - recomputed and retried on the next tick
                event(log, "status patch failed", logging.WARNING, task=name, error=str(exc))
            else:
                if patch.status.get("phase") == Phase.FINISHED.value:
                    return
        await stopped.wait(rt.settings.poll_interval_s)


async def tick(
    body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch,
    name: str, namespace: str, memo: kopf.Memo,
) -> None:
    rt = runtime(memo)
    settings = rt.settings
    current = dict(status)
    key = (namespace, name)
    now = time.time()
    pod = await rt.pod(namespace, name, current.get("podName"))

    if pod is None:
        if await recorder_gone(rt, body, dict(spec), current, patch, name, namespace,
                               f"recorder pod {current.get('podName')} was deleted before the "
                               f"task finished", None):
            rt.forget(key)
        return

    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        # Terminating (drain, eviction, kubectl delete): the recorder stores its segment in
        # progress and exits; the replacement comes once the object is gone. A pod stuck here
        # lost its node: force it out so the name is free.
        if stuck_terminating(pod, settings, now):
            event(log, "pod stuck terminating: force-deleting", logging.WARNING, task=name)
            await rt.kube.delete_pod(namespace, pod["metadata"]["name"], grace_s=0)
        return

    if scheduled := st.scheduled_conditions(current, pod, now):
        current["conditions"] = scheduled  # later changes build on it
        apply(patch, {"conditions": scheduled})

    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        final = st.final_status(pod)
        if final is not None and final.status == Phase.FINISHED:
            changes = st.reflect(current, final, now)
            apply(patch, changes)
            phase_event(body, current.get("phase"), final.status.value, _result_note(final))
            rt.forget(key)
            return
        if st.deadline_exceeded(pod):
            await finish_task(rt, body, name, dict(spec), current, patch, ErrorCode.TIMEOUT,
                              st.pod_failure(pod))
            rt.forget(key)
        elif await recorder_gone(rt, body, dict(spec), current, patch, name, namespace,
                                 st.pod_failure(pod), pod):
            rt.forget(key)
        return

    base = st.pod_address(pod, settings.control_port)
    if base is None:  # Pending: not scheduled, pulling the image, ...
        since = st.created_at(pod) or now
        if now - since > settings.start_deadline_s:
            await finish_task(
                rt, body, name, dict(spec), current, patch, ErrorCode.RECORDER_LOST,
                f"recorder pod {pod['metadata']['name']} did not start within "
                f"{settings.start_deadline_s:g} s ({st.waiting_reason(pod)})",
                delete_pod=True,
            )
            rt.forget(key)
        return

    token = await rt.token(namespace, name)
    try:
        rec = await rt.recorders.status(base, token)
    except RecorderUnreachable as exc:
        # Not a reason to kill it: a busy or partitioned recorder still records and finishes
        # on its own; the pod's state says when it is really gone.
        waited = rt.unreachable_for(key, now)
        if waited == 0:
            event(log, "recorder does not answer", logging.WARNING, task=name, error=str(exc))
        elif waited > settings.unreachable_grace_s and (
                st.condition(current, st.COND_POD) or {}).get("reason") != "Unreachable":
            message = (f"recorder in pod {pod['metadata']['name']} has not answered for "
                       f"{waited:.0f} s: {exc}")
            kopf.warn(body, reason="RecorderUnreachable", message=message[:1024])
            apply(patch, {"conditions": st.with_condition(
                current.get("conditions"), st.COND_POD, False, "Unreachable", message, now)})
        return
    rt.unreachable_since.pop(key, None)

    changes: dict[str, Any] = {}
    if not (st.condition(current, st.COND_POD) or {}).get("status") == "True":
        changes["conditions"] = st.with_condition(
            current.get("conditions"), st.COND_POD, True, "Reachable",
            f"recorder in pod {pod['metadata']['name']} answers on {base}", now,
        )
    merged = st.merged(current, changes)
    try:
        changes.update(await forward_action(rt, body, dict(spec), dict(meta), merged, base, token, rec))
    except RecorderUnreachable as exc:
        event(log, "control not forwarded yet", logging.INFO, task=name, error=str(exc))
    merged = st.merged(current, changes)
    changes.update(st.reflect(merged, rec, now))
    merged = st.merged(current, changes)

    limit = RecordingSpec.model_validate(dict(spec)).max_duration_limit
    if reason := st.time_limit_passed(merged, rec, limit, settings.time_limit_grace_s, now,
                                      settings.max_wall_s):
        changes.update(await _force_stop(rt, body, name, merged, base, token, reason, now))
    elif st.finish_overdue(merged, rec, settings.finish_deadline_s, now):
        apply(patch, changes)
        await finish_task(
            rt, body, name, dict(spec), st.merged(current, changes), patch, ErrorCode.TIMEOUT,
            f"the recorder did not finish within {settings.finish_deadline_s:g} s after the stop "
            f"(MaxDurationLimit {limit} s); its pod was deleted",
            delete_pod=True,
        )
        rt.forget(key)
        return

    apply(patch, changes)
    if "phase" in changes:
        phase_event(body, current.get("phase"), changes["phase"], _result_note(rec))
    if changes.get("phase") == Phase.FINISHED.value:
        rt.forget(key)


async def _force_stop(rt: Any, body: Any, name: str, status: dict[str, Any], base: str,
                      token: str | None, reason: str, now: float) -> dict[str, Any]:
    """The recorder outlived its time limit: send Stop (no seq: not a user's control)."""
    first = (st.condition(status, st.COND_TIME_LIMIT) or {}).get("status") != "True"
    message = f"{reason} and the recorder has not stopped: Stop sent"
    if first:
        kopf.warn(body, reason="TimeLimitReached", message=message)
        event(log, "time limit reached, stopping", logging.WARNING, task=name, reason=reason)
    changes: dict[str, Any] = {}
    if first:
        changes["conditions"] = st.with_condition(
            status.get("conditions"), st.COND_TIME_LIMIT, True, "Stopped", message, now
        )
    try:
        reply = await rt.recorders.control(base, token, Action.STOP, None)
        if reply.status is not None:
            changes.update(st.reflect(st.merged(status, changes), reply.status, now))
    except RecorderUnreachable as exc:
        event(log, "stop not delivered", logging.WARNING, task=name, error=str(exc))
    return changes


def _result_note(rec: Any) -> str:
    if rec.status != Phase.FINISHED:
        return rec.message or ""
    if rec.result.error_code:
        return f"{rec.result.error_code.value}: {rec.result.error_message or ''}"
    return f"{len(rec.result.videos)} video file(s)"

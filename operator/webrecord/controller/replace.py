"""A lost recorder is replaced, not mourned.

When a task's recorder pod failed, was deleted or evicted, or its node went away before the
task finished, the operator starts a new pod with the same name (once the old object is gone);
the new recorder resumes from the task's segment store. Restarts are bounded
(`max_restarts`), spaced by an exponential backoff, counted in `.status.restarts` and announced
as Events; only when they are used up does the task end with RecorderLost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from webrecord.api.models import ErrorCode
from webrecord.controller import pod as podlib
from webrecord.controller import status as st
from webrecord.controller.runtime import Runtime
from webrecord.controller.tasks import apply, finish_task
from webrecord.logs import event
from webrecord.recorder.handover import resume_env
from webrecord.controller.timestamps import parse_rfc3339

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 60.0


def backoff(settings: Any, restarts: int) -> float:
    """Seconds to wait before the replacement number `restarts + 1`."""
    return min(_MAX_BACKOFF_S, settings.restart_backoff_s * 2 ** restarts)


def stuck_terminating(pod: dict[str, Any], settings: Any, now: float) -> bool:
    """Deleted but still there long after its grace period: its kubelet (node) is gone."""
    meta = pod.get("metadata") or {}
    deleting = parse_rfc3339(meta.get("deletionTimestamp"))
    if deleting is None:
        return False
    # deletionTimestamp already includes the grace period.
    return now > deleting + settings.stuck_terminating_s


async def recorder_gone(
    rt: Runtime, body: Any, spec: dict[str, Any], status: dict[str, Any], patch: kopf.Patch,
    name: str, namespace: str, reason: str, pod: dict[str, Any] | None,
) -> bool:
    """Handle a recorder that ended without finishing its task. Returns True when the task
    is over (restarts used up), False while a replacement is on its way."""
    settings = rt.settings
    key = (namespace, name)
    restarts = int(status.get("restarts") or 0)
    if restarts >= settings.max_restarts:
        await finish_task(
            rt, body, name, spec, status, patch, ErrorCode.RECORDER_LOST,
            f"{reason}; no restarts left ({restarts} of {settings.max_restarts} used)",
            delete_pod=pod is not None,
        )
        rt.lost_since.pop(key, None)
        return True
    now = time.time()
    first = key not in rt.lost_since
    lost_at = rt.lost_since.setdefault(key, now)
    wait = backoff(settings, restarts)
    if first:
        kopf.warn(body, reason="RecorderGone",
                  message=f"{reason}; a new recorder starts in {wait:g} s "
                          f"(restart {restarts + 1} of {settings.max_restarts})"[:1024])
        event(log, "recorder gone", logging.WARNING, task=name, reason=reason, restarts=restarts)
    if pod is not None:
        # The old pod object holds the name: remove it (it has ended, nothing to wait for).
        if not (pod.get("metadata") or {}).get("deletionTimestamp"):
            await rt.kube.delete_pod(namespace, pod["metadata"]["name"], grace_s=0)
        return False
    if now < lost_at + wait:
        return False
    manifest = podlib.build_pod(body, settings, resume_env(status.get("phase")))
    created = await rt.kube.create(manifest)
    if created is None:  # the old object is still there (watch lag): next tick
        return False
    rt.remember_pod(key, created)
    rt.lost_since.pop(key, None)
    rt.unreachable_since.pop(key, None)
    message = (f"recorder pod {manifest['metadata']['name']} started again "
               f"(restart {restarts + 1} of {settings.max_restarts}): it resumes from the "
               f"stored segments")
    kopf.event(body, type="Warning", reason="RecorderRestarted", message=message)
    event(log, "recorder replaced", logging.WARNING, task=name, restarts=restarts + 1)
    apply(patch, {
        "podName": manifest["metadata"]["name"],  # a claimed standby pod had its own name
        "restarts": restarts + 1,
        "message": message,
        "conditions": st.with_condition(status.get("conditions"), st.COND_POD, False,
                                        "Replaced", message, now),
    })
    return False

"""Pure functions that turn what the operator sees into `.status` changes.

Nothing here talks to the network, so every rule (phase reflection, conditions, pod failure
classification, time limits) is unit-tested directly.
"""

from __future__ import annotations

from typing import Any

from webrecord.api.models import ErrorCode, Phase, RecorderStatus, Result
from webrecord.api.resource import status_from_json
from webrecord.controller.pod import CONTAINER
from webrecord.controller.timestamps import parse_rfc3339, rfc3339

_TIMES = ("createTime", "startTime", "cancelTime", "stopTime", "finishTime")

# Conditions the operator maintains (Kubernetes API conventions: type, status, reason,
# message, lastTransitionTime, observedGeneration). `kubectl wait --for=condition=Succeeded`.
COND_SCHEDULED = "Scheduled"  # the recorder pod is bound to a node
COND_POD = "PodReady"  # the recorder pod runs and its control endpoint answers
COND_RECORDING = "Recording"
COND_DELIVERED = "Delivered"  # the video reached its target
COND_SUCCEEDED = "Succeeded"  # finished without an error
COND_FAILED = "Failed"  # finished with an error code (Result.ErrorCode)
COND_FINISHED = "Finished"
COND_ACTION = "ActionApplied"
COND_TIME_LIMIT = "TimeLimitReached"


def with_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: float,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """`conditions` with `type_` set; lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    out: list[dict[str, Any]] = []
    previous = None
    for cond in conditions or []:
        if cond.get("type") == type_:
            previous = cond
        else:
            out.append(cond)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == value else rfc3339(now)
    cond = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": since,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    out.append(cond)
    return out


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def _phase_conditions(
    conditions: list[dict[str, Any]] | None, phase: Phase, result: Result, now: float
) -> list[dict[str, Any]]:
    recording = phase == Phase.RECORDING
    conds = with_condition(
        conditions, COND_RECORDING, recording, phase.value.capitalize(),
        "the page is being recorded" if recording else f"task is {phase.value}", now,
    )
    if phase != Phase.FINISHED:
        waiting = f"task is {phase.value}"
        for type_ in (COND_DELIVERED, COND_SUCCEEDED, COND_FAILED, COND_FINISHED):
            conds = with_condition(conds, type_, False, "InProgress", waiting, now)
        return conds
    code = result.error_code.value if result.error_code else None
    videos = len(result.videos)
    outcome = result.error_message or f"{videos} video file(s) delivered"
    conds = with_condition(conds, COND_DELIVERED, videos > 0,
                           "Delivered" if videos else (code or "NothingDelivered"),
                           f"{videos} video file(s) delivered" if videos else outcome, now)
    conds = with_condition(conds, COND_SUCCEEDED, code is None, code or "Succeeded", outcome, now)
    conds = with_condition(conds, COND_FAILED, code is not None, code or "Succeeded", outcome, now)
    return with_condition(conds, COND_FINISHED, True, code or "Succeeded", outcome, now)


def scheduled_conditions(current: dict[str, Any], pod: dict[str, Any], now: float
                         ) -> list[dict[str, Any]] | None:
    """`current`'s conditions with Scheduled set from the recorder pod, or None when it did
    not change: True once the pod is bound to a node, False while the scheduler cannot."""
    pod_status = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName")
    by_type = {c.get("type"): c for c in pod_status.get("conditions") or []}
    bound = by_type.get("PodScheduled", {})
    name = pod["metadata"]["name"]
    if node or bound.get("status") == "True" or pod_status.get("phase") in ("Running", "Succeeded", "Failed"):
        value, reason = True, "PodScheduled"
        message = f"recorder pod {name} " + (f"runs on node {node}" if node else "is scheduled")
    elif bound.get("status") == "False":
        value, reason = False, bound.get("reason") or "Unschedulable"
        message = f"recorder pod {name}: {bound.get('message') or 'not schedulable yet'}"
    else:
        return None
    old = condition(current, COND_SCHEDULED) or {}
    if old.get("status") == ("True" if value else "False") and old.get("reason") == reason:
        return None
    return with_condition(current.get("conditions"), COND_SCHEDULED, value, reason, message, now)


def stamp_generation(conditions: list[dict[str, Any]], generation: int | None) -> list[dict[str, Any]]:
    """Conditions written by this patch say which spec generation they were computed from;
    unchanged ones keep theirs."""
    if generation is None:
        return conditions
    return [c if "observedGeneration" in c else {**c, "observedGeneration": generation}
            for c in conditions]


def reflect(current: dict[str, Any], rec: RecorderStatus, now: float) -> dict[str, Any]:
    """The `.status` fields that differ from `current` once the recorder's status is applied."""
    wire = rec.model_dump(mode="json", by_alias=True)
    target: dict[str, Any] = {
        "phase": rec.status.value,
        "recordedSeconds": round(rec.recorded_seconds, 3),
        "result": rec.result.wire(),
    }
    for name in _TIMES:
        # The operator's createTime stands; the recorder fills in the rest as it happens.
        if wire.get(name) is not None and not (name == "createTime" and current.get(name)):
            target[name] = wire[name]
    if rec.message:
        target["message"] = rec.message[:4096]
    if rec.live is not None:
        target["live"] = [o.wire() for o in rec.live]
    if rec.live_hls is not None:
        target["liveHls"] = rec.live_hls.wire()
    if rec.status.value != current.get("phase"):
        target["conditions"] = _phase_conditions(current.get("conditions"), rec.status, rec.result, now)
    return {k: v for k, v in target.items() if current.get(k) != v}


def finish(
    current: dict[str, Any], code: ErrorCode, message: str, now: float
) -> dict[str, Any]:
    """Patch that ends the task with an error the operator itself determined."""
    result = Result.model_validate(current.get("result") or {})
    result = result.model_copy(update={"error_code": code, "error_message": message})
    ts = int(now)
    patch: dict[str, Any] = {
        "phase": Phase.FINISHED.value,
        "finishTime": ts,
        "result": result.wire(),
        "message": message[:4096],
        "conditions": _phase_conditions(current.get("conditions"), Phase.FINISHED, result, now),
    }
    if current.get("startTime") and not current.get("stopTime"):
        patch["stopTime"] = ts
    return patch


def merged(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return {**current, **patch}


# --- pods ---------------------------------------------------------------------------------------


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER:
            return cs
    return {}


def final_status(pod: dict[str, Any]) -> RecorderStatus | None:
    """The recorder's last status from the termination message (see controller.podrun)."""
    terminated = (_container_status(pod).get("state") or {}).get("terminated") or {}
    return status_from_json(terminated.get("message"))


def pod_failure(pod: dict[str, Any]) -> str:
    """Why a pod ended without a finished recorder, in words for `.status.message`."""
    st = pod.get("status") or {}
    name = pod["metadata"]["name"]
    parts = [f"recorder pod {name} {st.get('phase', 'ended').lower()}"]
    if st.get("reason"):
        parts.append(f"reason {st['reason']}")  # Evicted, DeadlineExceeded, ...
    if st.get("message"):
        parts.append(st["message"])
    terminated = (_container_status(pod).get("state") or {}).get("terminated") or {}
    if terminated:
        parts.append(
            f"container {terminated.get('reason', 'terminated')} with exit code "
            f"{terminated.get('exitCode', '?')}"
        )
    return ": ".join(parts[:1]) + (" (" + "; ".join(parts[1:]) + ")" if parts[1:] else "")


def waiting_reason(pod: dict[str, Any]) -> str:
    """What keeps a pending pod from running (ImagePullBackOff, Unschedulable, ...)."""
    st = pod.get("status") or {}
    waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting:
        return f"{waiting.get('reason', 'Waiting')}: {waiting.get('message', '')}".rstrip(": ")
    for cond in st.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".rstrip(": ")
    return "not scheduled or started"


def pod_address(pod: dict[str, Any], port: int) -> str | None:
    st = pod.get("status") or {}
    if st.get("phase") != "Running" or not st.get("podIP"):
        return None
    ip = st["podIP"]
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


def created_at(obj: dict[str, Any]) -> float | None:
    return parse_rfc3339((obj.get("metadata") or {}).get("creationTimestamp"))


def time_limit_passed(
    status: dict[str, Any], rec: RecorderStatus, limit_s: int, grace_s: float, now: float,
    max_wall_s: float,
) -> str | None:
    """Why the recorder should have stopped on its own by now, or None.

    MaxDurationLimit means recorded time (pauses excluded) here as in the recorder; a task
    paused, waiting or stuck ends at the wall-clock cap counted from its creation. Both get
    `grace_s` before the operator steps in.
    """
    if not rec.status.active:
        return None
    if rec.recorded_seconds > limit_s + grace_s:
        return f"MaxDurationLimit {limit_s} s of recorded time passed"
    created = status.get("createTime") or rec.create_time
    if created is not None and now > created + max_wall_s + grace_s:
        return f"the wall-clock cap of {max_wall_s:g} s since creation passed"
    return None


def finish_overdue(status: dict[str, Any], rec: RecorderStatus, deadline_s: float, now: float) -> bool:
    """The operator stopped the task for its time limit and it still has not finished.

    Only forced stops count: after a user's Stop a long upload is normal, and the pod's
    activeDeadlineSeconds bounds that case.
    """
    if rec.status == Phase.FINISHED:
        return False
    forced = condition(status, COND_TIME_LIMIT)
    if not forced or forced.get("status") != "True":
        return False
    stopped_at = parse_rfc3339(forced["lastTransitionTime"]) or now
    return now > stopped_at + deadline_s


def deadline_exceeded(pod: dict[str, Any]) -> bool:
    """The kubelet ended the pod at activeDeadlineSeconds (the time-limit backstop)."""
    return (pod.get("status") or {}).get("reason") == "DeadlineExceeded"

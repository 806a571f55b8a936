"""The WebRecording custom resource: names and the `.status` model.

The spec is `webrecord.api.models.RecordingSpec`; the status below reuses the protocol's
`Phase`, `TaskTimes` and `Result`, plus what a Kubernetes user expects (conditions,
observedGeneration) and what the operator needs to survive its own restart (observedActionSeq,
podName). `webrecord.api.crd` generates the CRD's schema from both.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from webrecord.api.models import (Action, LiveHlsStatus, LiveOutputStatus, Phase, RecorderStatus,
                                  Result, TaskTimes, WireModel)

GROUP = "webrecord.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "WebRecording"
PLURAL = "webrecordings"
SINGULAR = "webrecording"
SHORT_NAMES = ["wrec"]
CATEGORIES = ["webrecord"]

# Labels and annotations the operator puts on what it creates.
LABEL_TASK = f"{GROUP}/task"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
FINALIZER = f"{GROUP}/stop-recording"


class Condition(WireModel):
    """A standard Kubernetes condition (metav1.Condition's shape)."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: str = Field(description="RFC 3339 time of the last status change")
    observed_generation: int | None = Field(None, ge=0)


class WebRecordingStatus(TaskTimes):
    """`.status` of a WebRecording. Times are unix seconds, like the protocol's Describe."""

    phase: Phase | None = Field(None, description="Protocol status: normal ... finished")
    result: Result | None = None
    recorded_seconds: float | None = Field(None, ge=0, description="Recorded (not paused) time")
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = Field(None, ge=0)
    observed_action_seq: int | None = Field(
        None, ge=0, description="Highest spec.actionSeq the recorder has applied"
    )
    observed_action: Action | None = Field(
        None, description="The spec.action forwarded last (with observedActionSeq): a later "
        "spec change that leaves both as they are (spec.output.live) is no new control")
    pod_name: str | None = Field(None, max_length=253)
    restarts: int | None = Field(
        None, ge=0, description="Recorder pods started to replace lost ones (resumed from the "
        "stored segments)"
    )
    message: str | None = Field(None, max_length=4096, description="Last progress or error note")
    live: list[LiveOutputStatus] | None = Field(
        None, description="Extension: each live output (URL redacted) as the recorder reports it")
    live_hls: LiveHlsStatus | None = Field(
        None, description="Extension: the live HLS playlist (spec.output.liveHls) and its URL")


def pending_action(spec: dict[str, Any], meta: dict[str, Any],
                   status: dict[str, Any]) -> Action | None:
    """The control in spec that the operator has not forwarded yet (generation is its seq).

    Every spec change bumps metadata.generation, but a change of spec.output.live is no
    control: (action, actionSeq) as forwarded last means nothing is pending, or a live change
    would repeat the last control (a second Refresh). The operator and the adapter's
    kubernetes backend (which waits for a pending control before writing the next) both ask
    this."""
    action = spec.get("action")
    if not action:
        return None
    if (status.get("observedGeneration") or 0) >= (meta.get("generation") or 1):
        return None
    if (status.get("observedAction") == action
            and status.get("observedActionSeq") == spec.get("actionSeq", 0)):
        return None
    return Action(action)


def status_from_json(raw: str | bytes | None) -> RecorderStatus | None:
    """A recorder's status file or its pod's termination message; None when empty or
    unreadable (a half-written file, a message cut short)."""
    if not raw:
        return None
    try:
        return RecorderStatus.model_validate(json.loads(raw))
    except ValueError:
        return None


def recorder_status(task_id: str, status: dict[str, Any] | None) -> RecorderStatus:
    """The protocol view (Describe, callback) of a resource's `.status`.

    Unknown or missing fields are tolerated: a resource that was just created has no status.
    """
    st = WebRecordingStatus.model_validate(_known(status or {}))
    return RecorderStatus(
        task_id=task_id,
        status=st.phase or Phase.NORMAL,
        create_time=st.create_time,
        start_time=st.start_time,
        cancel_time=st.cancel_time,
        stop_time=st.stop_time,
        finish_time=st.finish_time,
        result=st.result or Result(),
        recorded_seconds=st.recorded_seconds or 0.0,
        last_action_seq=st.observed_action_seq or 0,
        message=st.message,
        live=st.live,
        live_hls=st.live_hls,
    )


def _known(status: dict[str, Any]) -> dict[str, Any]:
    # The status may carry fields from a newer operator; read what this version knows.
    names = {f.alias or n for n, f in WebRecordingStatus.model_fields.items()}
    return {k: v for k, v in status.items() if k in names and v is not None}

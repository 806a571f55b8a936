"""Whether a task on Kubernetes has somewhere to deliver to.

Why: without Output.Cos or Output.Vod the video goes to the filesystem target, and a recorder
pod without a mounted one (WEBRECORD_OUTPUT_DIR) would write it into its own emptyDir, which is
deleted with the pod: the task would report success with a file:// URL that no longer exists.
Such a task is refused where it enters (the adapter's Start, the operator on apply).
"""

from __future__ import annotations

from webrecord.api.models import RecordingSpec

NO_TARGET = (
    "Output: no storage target: set Output.Cos.Bucket (spec.output.cos.bucket) or Output.Vod, "
    "or install with a mounted filesystem output (WEBRECORD_OUTPUT_DIR in the recorder pods); "
    "otherwise the video would only be written inside the recorder pod, which is deleted when "
    "it ends"
)


def storage_target_refusal(spec: RecordingSpec, filesystem_output: bool) -> str | None:
    """NO_TARGET when the task has neither an object-store/VOD output nor, on this install, a
    mounted filesystem output; None when it can be delivered."""
    if (spec.output.cos and spec.output.cos.bucket) or spec.output.vod is not None:
        return None
    return None if filesystem_output else NO_TARGET

"""The HLS key of a WebRecording: read from the Secret its spec names, never from the spec.

The key then travels only inside the recorder's own Secret (its task file), so it is never in
the WebRecording, its kopf annotations or the pod spec. The adapter creates the referenced
Secret just before the WebRecording; a Secret that is still missing is waited for a little
(kopf retries the handler), then the task ends with InvalidParam.
"""

from __future__ import annotations

from typing import Any

import kopf

from webrecord.api.models import RecordingTask, valid_encrypt_key

MISSING_WAIT_S = 60.0
RETRY_S = 2.0


class EncryptKeyProblem(Exception):
    """The referenced Secret or key is unusable; str() is the status message."""


async def with_encrypt_key(kube: Any, namespace: str, task: RecordingTask,
                           age_s: float) -> RecordingTask:
    """`task` with its encryptKeySecretRef replaced by the key it names."""
    video = task.spec.output.video
    ref = video.encrypt_key_secret_ref
    if ref is None:
        return task
    where = "spec.output.video.encryptKeySecretRef"
    data = await kube.read_secret_data(namespace, ref.name)
    if data is None:
        if age_s < MISSING_WAIT_S:
            raise kopf.TemporaryError(f"waiting for Secret {ref.name}", delay=RETRY_S)
        raise EncryptKeyProblem(f"{where}: Secret {ref.name!r} not found")
    if ref.key not in data:
        raise EncryptKeyProblem(f"{where}: Secret {ref.name!r} has no key {ref.key!r}")
    try:
        key = valid_encrypt_key(data[ref.key])
    except ValueError as exc:
        raise EncryptKeyProblem(f"{where}: {ref.name}/{ref.key} {exc}") from None
    raw = task.model_dump(by_alias=True, exclude_none=True)
    raw["spec"]["output"]["video"].pop("encryptKeySecretRef")
    raw["spec"]["output"]["video"]["encryptKey"] = key
    return RecordingTask.model_validate(raw)

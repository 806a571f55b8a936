"""The kubernetes backend: each task is a WebRecording resource the operator runs.

Start creates the resource (name = task id, owner in an annotation and as a hashed label for
listing); controls set `spec.action` and bump `spec.actionSeq` (so two Refreshes are two
controls) and wait until the operator reports the new generation as observed; Describe reads
`.status`. The adapter holds no pod permissions; besides WebRecordings in one namespace it may
create Secrets there: an EncryptKey given at Start is stored in a Secret owned by the
WebRecording, whose spec names it (`encryptKeySecretRef`); the key is never in the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Any, Callable, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from webrecord import logs
from webrecord.adapter.backends.base import (
    ActionNotAllowed,
    Backend,
    BackendUnavailable,
    TaskNotFound,
    UPDATE_LIVE,
    TaskPage,
    check_action,
    check_live_update,
    owner_label,
)
from webrecord.api.protocol.errors import AdapterErrorCode, ApiError
from webrecord.adapter.settings import AdapterSettings
from webrecord.api.models import (
    ENCRYPT_KEY_SECRET_KEY,
    Action,
    LiveOutput,
    Phase,
    RecorderStatus,
    RecordingSpec,
    RecordingTask,
    SecretKeyRef,
)
from webrecord.api.resource import (API_VERSION, GROUP, KIND, PLURAL, VERSION, pending_action,
                                    recorder_status)
from webrecord.api.targets import storage_target_refusal
from webrecord.logs import event
from webrecord.controller.timestamps import parse_rfc3339

log = logging.getLogger(__name__)
T = TypeVar("T")

OWNER_ANNOTATION = f"{GROUP}/owner"
OWNER_LABEL = f"{GROUP}/owner"
# How long a control waits for the operator to forward it to the recorder.
CONTROL_WAIT_S = float(os.environ.get("WEBRECORD_ADAPTER_CONTROL_WAIT_S", "15"))
_POLL_S = 0.2
_CONFLICT_TRIES = 5
_HEALTH_TIMEOUT_S = 5.0  # a readiness probe must answer even when the API hangs


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, settings: AdapterSettings) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self._kube: Any = None  # webrecord.kubeclient.KubeClient, made by open()
        self._api: Any = None
        self._core: Any = None

    # --- plumbing -------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        import urllib3
        from kubernetes.client.rest import ApiException

        try:
            return await self._kube.call(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                raise
            raise BackendUnavailable(
                f"the Kubernetes API answered HTTP {exc.status}: {exc.reason}"
            ) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused, timed out, retries spent
            raise BackendUnavailable(
                f"the Kubernetes API is unreachable: {getattr(exc, 'reason', None) or exc}"[:300]
            ) from exc

    async def open(self) -> None:
        from webrecord.kubeclient import KubeClient  # kubernetes is imported only when used

        self._kube = KubeClient(8, thread_name_prefix="kube-adapter",
                                kubeconfig=self.settings.kubeconfig)
        self._api, self._core = self._kube.custom, self._kube.core
        try:
            await self.health()
        except BackendUnavailable as exc:
            # Serve anyway: /readyz says not ready until the API answers (a start-up race
            # with the API server should not crash-loop the adapter).
            logs.event(log, "Kubernetes API not reachable yet", logging.WARNING, error=exc.message)

    async def close(self) -> None:
        if self._kube is not None:
            self._kube.close()

    async def _get(self, task_id: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            resp = await self._call(
                self._api.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
                task_id, _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise BackendUnavailable(f"the Kubernetes API answered HTTP {exc.status}") from exc
        return json.loads(resp.data)

    async def _owned(self, task_id: str, owner: str) -> dict[str, Any]:
        obj = await self._get(task_id) if _valid_name(task_id) else None
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        if obj is None or annotations.get(OWNER_ANNOTATION) != owner:
            raise TaskNotFound(f"TaskID {task_id} not found")
        return obj

    # --- Backend --------------------------------------------------------------------------

    async def start(self, task: RecordingTask, owner: str) -> RecorderStatus:
        refusal = storage_target_refusal(task.spec, self.settings.cluster_filesystem_output)
        if refusal is not None:
            raise ApiError(AdapterErrorCode.INVALID_PARAM, refusal)
        spec_model, key = _without_encrypt_key(
            task.spec.model_copy(update={"action": None, "action_seq": 0}), task.task_id)
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": task.task_id,
                "namespace": self.namespace,
                "labels": {OWNER_LABEL: owner_label(owner), "app.kubernetes.io/created-by": "webrecord-adapter"},
                "annotations": {OWNER_ANNOTATION: owner},
            },
            "spec": spec_model.wire(),
        }
        from kubernetes.client.rest import ApiException

        try:
            resp = await self._call(self._api.create_namespaced_custom_object, GROUP, VERSION,
                                    self.namespace, PLURAL, body, _preload_content=False)
        except ApiException as exc:
            # The schema mirrors the protocol's rules; a 422 here names the field and the rule.
            raise BackendUnavailable(f"WebRecording rejected by the API server: {_reason(exc)}") from exc
        if key is not None:
            await self._store_encrypt_key(json.loads(resp.data), key)
        event(log, "webrecording created", task=task.task_id, namespace=self.namespace)
        return RecorderStatus(task_id=task.task_id, status=Phase.NORMAL, create_time=task.create_time)

    async def _store_encrypt_key(self, owner: dict[str, Any], key: str) -> None:
        """The Secret the WebRecording's encryptKeySecretRef names, owned by it (deleted with
        it). The operator waits for it; if it cannot be made, the WebRecording goes too."""
        from kubernetes.client.rest import ApiException

        meta = owner["metadata"]
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": encrypt_key_secret(meta["name"]),
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/created-by": "webrecord-adapter"},
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                                     "uid": meta["uid"]}],
            },
            "stringData": {ENCRYPT_KEY_SECRET_KEY: key},
        }
        try:
            await self._call(self._core.create_namespaced_secret, self.namespace, secret,
                             _preload_content=False)
        except (ApiException, BackendUnavailable) as exc:
            with contextlib.suppress(Exception):
                await self._call(self._api.delete_namespaced_custom_object, GROUP, VERSION,
                                 self.namespace, PLURAL, meta["name"], _preload_content=False)
            reason = _reason(exc) if isinstance(exc, ApiException) else exc.message
            raise BackendUnavailable(f"could not store EncryptKey in a Secret: {reason}") from exc

    async def describe(self, task_id: str, owner: str) -> RecorderStatus:
        return _status(await self._owned(task_id, owner))

    async def control(self, task_id: str, owner: str, action: Action) -> RecorderStatus:
        resp = await self._patch_retried("control", self._patch_control, task_id, owner, action)
        generation = json.loads(resp.data)["metadata"]["generation"]
        return await self._wait_applied(task_id, generation, action)

    async def _patch_retried(self, what: str, patcher: Callable[..., Any], task_id: str,
                             *args: Any) -> Any:
        """Optimistic concurrency: each patch carries the resourceVersion it was computed from;
        a conflicting writer (409) means read again and retry, at most _CONFLICT_TRIES times."""
        from kubernetes.client.rest import ApiException

        retrying = AsyncRetrying(
            stop=stop_after_attempt(_CONFLICT_TRIES),
            retry=retry_if_exception(lambda exc: isinstance(exc, ApiException) and exc.status == 409),
            retry_error_callback=lambda _: None,
        )
        try:
            resp = await retrying(patcher, task_id, *args)
        except ApiException as exc:
            raise BackendUnavailable(f"{what} not accepted: {_reason(exc)}") from exc
        if resp is None:
            raise BackendUnavailable(f"TaskID {task_id} is being changed concurrently; retry")
        return resp

    async def _patch_control(self, task_id: str, owner: str, action: Action) -> Any:
        """One try: the control in spec.action with the next actionSeq, against the object as
        read now (after the operator forwarded any control already there)."""
        obj = await self._after_pending(task_id, await self._owned(task_id, owner))
        check_action(action, _status(obj).status)
        patch = {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "spec": {"action": action.value, "actionSeq": int(obj["spec"].get("actionSeq", 0)) + 1},
        }
        return await self._call(self._api.patch_namespaced_custom_object, GROUP, VERSION,
                                self.namespace, PLURAL, task_id, patch, _preload_content=False)

    async def set_live(self, task_id: str, owner: str, outputs: list[LiveOutput]) -> RecorderStatus:
        """spec.output.live becomes the list (the operator passes it to the recorder, which
        reports each output in .status.live); no wait for the recorder: Describe shows it."""
        resp = await self._patch_retried(UPDATE_LIVE, self._patch_live, task_id, owner, outputs)
        event(log, "live outputs set", task=task_id, count=len(outputs))
        return _status(json.loads(resp.data))

    async def _patch_live(self, task_id: str, owner: str, outputs: list[LiveOutput]) -> Any:
        obj = await self._owned(task_id, owner)
        check_live_update(_status(obj).status)
        # A merge patch replaces a list whole; null removes the field (no receivers).
        patch = {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "spec": {"output": {"live": [o.wire() for o in outputs] or None}},
        }
        return await self._call(self._api.patch_namespaced_custom_object, GROUP, VERSION,
                                self.namespace, PLURAL, task_id, patch, _preload_content=False)

    async def _after_pending(self, task_id: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The object once the operator forwarded the control already in spec.action.

        Why: spec holds one control; writing the next before the operator forwarded the
        previous would replace it unseen. Controls are a sequence: each waits its turn (the
        resourceVersion precondition of the patch catches a writer that slips in between)."""
        deadline = time.monotonic() + CONTROL_WAIT_S
        while _pending(obj):
            if time.monotonic() > deadline:
                raise BackendUnavailable(
                    f"TaskID {task_id}: the previous control is still being applied; retry")
            await asyncio.sleep(_POLL_S)
            obj = await self._get(task_id)
            if obj is None:
                raise TaskNotFound(f"TaskID {task_id} not found")
        return obj

    async def _wait_applied(self, task_id: str, generation: int, action: Action) -> RecorderStatus:
        """The status once the operator forwarded this control (or the latest after the wait)."""
        deadline = time.monotonic() + CONTROL_WAIT_S
        obj: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            obj = await self._get(task_id)
            if obj is None:
                raise TaskNotFound(f"TaskID {task_id} not found")
            status = obj.get("status") or {}
            if (status.get("observedGeneration") or 0) >= generation:
                for cond in status.get("conditions") or []:
                    if (cond.get("type") == "ActionApplied" and cond.get("status") == "False"
                            and cond.get("observedGeneration") == generation):
                        raise ActionNotAllowed(cond.get("message") or f"{action.value} refused",
                                               _status(obj).status)
                return _status(obj)
            await asyncio.sleep(_POLL_S)
        event(log, "control still pending at the operator", logging.WARNING, task=task_id,
              action=action.value, generation=generation)
        return _status(obj) if obj else RecorderStatus(task_id=task_id)

    async def list(self, owner: str, offset: int, limit: int) -> TaskPage:
        resp = await self._call(self._api.list_namespaced_custom_object, GROUP, VERSION,
                                self.namespace, PLURAL,
                                label_selector=f"{OWNER_LABEL}={owner_label(owner)}",
                                _preload_content=False)
        items = [o for o in json.loads(resp.data).get("items", [])
                 if ((o["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION) == owner)]
        items.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]),
                   reverse=True)
        page = items[offset:offset + limit]
        return TaskPage(tasks=[_status(o) for o in page], total=len(items), offset=offset, limit=limit)

    async def health(self) -> dict[str, object]:
        await self._call(self._api.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                         PLURAL, limit=1, _preload_content=False,
                         _request_timeout=_HEALTH_TIMEOUT_S)
        return {"backend": self.name, "namespace": self.namespace}


def encrypt_key_secret(task_id: str) -> str:
    return f"{task_id}-encrypt-key"


def _without_encrypt_key(spec: RecordingSpec, task_id: str) -> tuple[RecordingSpec, str | None]:
    """The spec to store (EncryptKey replaced by a reference to its Secret), and the key."""
    key = spec.output.video.encrypt_key
    if not key:
        return spec, None
    ref = SecretKeyRef(name=encrypt_key_secret(task_id), key=ENCRYPT_KEY_SECRET_KEY)
    video = spec.output.video.model_copy(update={"encrypt_key": None, "encrypt_key_secret_ref": ref})
    output = spec.output.model_copy(update={"video": video})
    return spec.model_copy(update={"output": output}), key


def _pending(obj: dict[str, Any]) -> bool:
    """spec.action holds a control the operator has not forwarded yet."""
    status = obj.get("status") or {}
    if status.get("phase") == "finished":
        return False
    return pending_action(obj.get("spec") or {}, obj["metadata"], status) is not None


def _status(obj: dict[str, Any]) -> RecorderStatus:
    status = recorder_status(obj["metadata"]["name"], obj.get("status"))
    if status.create_time is None and obj["metadata"].get("creationTimestamp"):

        status.create_time = int(parse_rfc3339(obj["metadata"]["creationTimestamp"]) or 0) or None
    return status


def _valid_name(task_id: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", task_id or ""))


def _reason(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message", exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def create(settings: AdapterSettings) -> Backend:
    return KubernetesBackend(settings)

"""Creation: the per-task token secret and the recorder pod, then the initial status."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf
from pydantic import ValidationError

from webrecord.api.models import ErrorCode, Phase
from webrecord.api.resource import GROUP, PLURAL, VERSION
from webrecord.api.targets import storage_target_refusal
from webrecord.controller import pod as podlib
from webrecord.controller import status as st
from webrecord.controller.encrypt_key import EncryptKeyProblem, with_encrypt_key
from webrecord.controller.runtime import runtime
from webrecord.controller.tasks import apply, phase_event
from webrecord.logs import event
from webrecord.metrics import OPERATOR_QUEUE_WAIT, QUEUED_NOTE

log = logging.getLogger(__name__)


def _invalid(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "spec"
    return f"spec.{where}: {str(first.get('msg', 'invalid')).removeprefix('Value error, ')}"


def _refuse(body: kopf.Body, patch: kopf.Patch, current: dict[str, Any], create_time: int,
            message: str, now: float) -> None:
    """The task ends here, finished with InvalidParam; no pod is made."""
    changes = st.finish({**current, "createTime": create_time}, ErrorCode.INVALID_PARAM,
                        message, now)
    changes["createTime"] = create_time
    changes["conditions"] = st.stamp_generation(changes["conditions"], body["metadata"].get("generation"))
    apply(patch, changes)
    kopf.warn(body, reason="InvalidParam", message=changes["message"])


@kopf.on.create(GROUP, VERSION, PLURAL, id="recorder")
async def create_recorder(
    body: kopf.Body, meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch,
    name: str, namespace: str, memo: kopf.Memo, **_: Any,
) -> None:
    rt = runtime(memo)
    current = dict(status)
    if current.get("phase") == Phase.FINISHED.value:
        return
    now = time.time()
    create_time = current.get("createTime") or int(st.created_at(body) or now)
    try:
        task = podlib.recording_task(body, create_time)
        pod = podlib.build_pod(body, rt.settings)
        refusal = podlib.bucket_refusal(task.spec, rt.settings) or storage_target_refusal(
            task.spec, "WEBRECORD_OUTPUT_DIR" in rt.settings.recorder_env
            or rt.settings.pod_local_output)
    except ValidationError as err:
        # The schema already holds most rules; this is what only pydantic knows.
        refusal = _invalid(err)
    if refusal is not None:
        return _refuse(body, patch, current, create_time, refusal, now)

    try:
        task = await with_encrypt_key(rt.kube, namespace, task, now - create_time)
    except EncryptKeyProblem as exc:
        return _refuse(body, patch, current, create_time, str(exc), now)

    key = (namespace, name)
    if not rt.has_slot(key):
        # Queued: kopf retries this handler; the task stays `normal` until a slot frees up.
        message = (f"{QUEUED_NOTE} {rt.settings.max_concurrent} recordings are running "
                   "(concurrency limit)")
        if current.get("message") != message:
            apply(patch, {"createTime": create_time, "phase": Phase.NORMAL.value, "message": message})
        raise kopf.TemporaryError(message, delay=rt.settings.queue_retry_s)
    if key not in rt.reserved:
        OPERATOR_QUEUE_WAIT.observe(max(0.0, now - create_time))
    rt.reserved.add(key)

    claimed = await _claim_standby(rt, body, task, key)
    if claimed is not None:
        pod, token = claimed
        created: dict[str, Any] | None = pod
        # The task's Secret holds the standby pod's token: every later reader (monitor,
        # finalizer, a restarted operator, a replacement pod) finds it where it always is.
        await rt.kube.create(podlib.build_secret(body, task, token))
        rt.tokens[key] = token
        rt.remember_pod(key, pod)
    else:
        # Idempotent: a second run (after a crash or conflict) finds both objects and reuses them.
        token = podlib.new_token()
        if await rt.kube.create(podlib.build_secret(body, task, token)) is None:
            data = await rt.kube.read_secret_data(namespace, podlib.recorder_name(name)) or {}
            token = data.get(podlib.TOKEN_KEY, "").strip()
        rt.tokens[key] = token
        created = await rt.kube.create(pod)
        if created is not None and key not in rt.pods:
            rt.remember_pod(key, created)  # the monitor's first look needs no GET

    changes: dict[str, Any] = {
        "message": f"recorder pod {pod['metadata']['name']} "
                   + ("(standby) claimed" if claimed else "created"),
        "createTime": create_time,
        "podName": pod["metadata"]["name"],
        "phase": current.get("phase") or Phase.NORMAL.value,
        "conditions": st.with_condition(
            current.get("conditions"), st.COND_POD, False,
            "StandbyClaimed" if claimed else "PodCreated",
            f"recorder pod {pod['metadata']['name']} "
            + ("(standby) claimed" if claimed else "created, waiting for it to run"), now,
            meta.get("generation"),
        ),
    }
    if not body.get("spec", {}).get("action"):
        changes["observedGeneration"] = meta.get("generation") or 1
    apply(patch, changes)
    phase_event(body, current.get("phase"), changes["phase"], f"recorder pod {pod['metadata']['name']}")
    event(log, "recorder pod created" if created else "recorder pod already existed",
          task=name, namespace=namespace, pod=pod["metadata"]["name"], standby=bool(claimed))


async def _claim_standby(rt: Any, body: kopf.Body, task: Any,
                         key: tuple[str, str]) -> tuple[dict[str, Any], str] | None:
    """A standby pod running this task, with its token; None: the task takes its own pod."""
    cached = rt.pods.get(key)
    if cached is not None and not cached.get("gone"):
        # A second run (a retry, a restarted operator): the pod exists. One claimed before
        # is reused, not joined by a cold one.
        pod_name = cached["metadata"]["name"]
        if pod_name.startswith(podlib.STANDBY_PREFIX):
            # Its token: in the task's Secret, or (a crash before that was made) its own.
            token = await rt.token(*key) or (await rt.pool.token(pod_name) if rt.pool else None)
            return cached, token or ""
        return None
    if rt.pool is None:
        return None
    why = rt.pool.refusal(key[0], task)
    if why is not None:
        event(log, "no standby pod for this task", task=key[1], reason=why)
        return None
    return await rt.pool.claim(dict(body), task)

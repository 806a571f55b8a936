"""The recorder pod and its per-task secret, as plain manifests (pure functions).

One WebRecording `NAME` gets a Secret `NAME-recorder` (task file + control token) and a Pod
`NAME-recorder` that runs `webrecord recorder-pod ...` (the recorder, plus copying its final
status into the termination message so the operator can read the result after the pod ended).
Both carry an owner reference to the WebRecording so garbage collection removes them with it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from webrecord.api.cost import CostModel
from webrecord.api.models import RecordingSpec, RecordingTask
from webrecord.api.resource import (
    API_VERSION,
    KIND,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_TASK,
)
from webrecord.controller.settings import OperatorSettings
from webrecord.recorder.encoding import encoding_for
from webrecord.recorder.settings import RecorderSettings

RECORDER_UID = 1000
CONTAINER = "recorder"
MANAGED_BY = "webrecord-operator"
TASK_KEY = "task.json"
TOKEN_KEY = "token"


def recorder_name(task_id: str) -> str:
    """Name of both the pod and the secret of a task (the CRD caps task names at 52 chars)."""
    return f"{task_id}-recorder"


def labels(task_id: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "webrecord",
        LABEL_COMPONENT: "recorder",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_TASK: task_id,
    }


def new_token() -> str:
    return secrets.token_urlsafe(32)


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """Controller reference to the WebRecording: GC deletes the pod and secret with it."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner.get("kind", KIND),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def recording_task(owner: dict[str, Any], create_time: int | None) -> RecordingTask:
    """The recorder's task file content. Controls travel over the control endpoint, not here."""
    spec = RecordingSpec.model_validate(owner["spec"])
    spec = spec.model_copy(update={"action": None, "action_seq": 0})
    return RecordingTask(task_id=owner["metadata"]["name"], spec=spec, create_time=create_time)


def bucket_refusal(spec: RecordingSpec, settings: OperatorSettings) -> str | None:
    """Why this install may not write to the task's bucket (None when it may)."""
    bucket = spec.output.cos.bucket if spec.output.cos else None
    if bucket and settings.allowed_buckets and bucket not in settings.allowed_buckets:
        return (f"spec.output.cos.bucket: {bucket[:64]!r} is not among this install's allowed "
                "buckets (WEBRECORD_OPERATOR_ALLOWED_BUCKETS)")
    return None


def paths(settings: OperatorSettings) -> dict[str, str]:
    root = settings.mount_root.rstrip("/")
    return {
        "task_dir": f"{root}/task",
        "token_dir": f"{root}/token",
        "task_file": f"{root}/task/{TASK_KEY}",
        "token_file": f"{root}/token/{TOKEN_KEY}",
        "secrets_dir": f"{root}/storage",
    }


def _recorder_metadata(owner: dict[str, Any]) -> dict[str, Any]:
    """Metadata of the recorder's own objects (pod, Secret): named after the WebRecording,
    labelled, owned by it (deleted with it)."""
    name = owner["metadata"]["name"]
    return {
        "name": recorder_name(name),
        "namespace": owner["metadata"]["namespace"],
        "labels": labels(name),
        "ownerReferences": [owner_reference(owner)],
    }


def build_secret(owner: dict[str, Any], task: RecordingTask, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _recorder_metadata(owner),
        "stringData": {
            TASK_KEY: json.dumps(task.wire(), separators=(",", ":")),
            TOKEN_KEY: token,
        },
    }


def resources(spec: RecordingSpec, settings: OperatorSettings) -> dict[str, Any]:
    """Requests = the recording's measured cost (webrecord.api.cost), so the scheduler admits
    on a node only the recordings it can carry; a page that does not fit waits Pending (the
    task's Scheduled condition says why). Limits leave headroom; /dev/shm is memory-backed
    and counts against the limit when filled, so its size is added there."""
    enc = encoding_for(RecorderSettings(), spec)  # the task's frame rate, or the default
    need = CostModel().of(spec.width, spec.height, enc.fps, enc.audio_only)
    cpu_m = max(10, round(need.cpu_cores * 1000))
    mem_mi = round(need.memory_mib)
    shm_mi = int(settings.shm_base_mi + settings.shm_per_mpixel_mi * spec.width * spec.height / 1e6)
    return {
        "requests": {"cpu": f"{cpu_m}m", "memory": f"{mem_mi}Mi"},
        "limits": {
            "cpu": f"{round(cpu_m * settings.cpu_limit_factor)}m",
            "memory": f"{round(mem_mi * settings.memory_limit_factor) + shm_mi}Mi",
        },
        "shm": f"{shm_mi}Mi",
    }


def active_deadline(spec: RecordingSpec, settings: OperatorSettings) -> int:
    """Kubelet-enforced end of the pod: the time limits survive even an operator outage.

    Recorded time cannot exceed the wall-clock cap, so the cap bounds the recording (however
    it was paused); then the operator's grace, and packaging plus upload."""
    return int(settings.max_wall_s + settings.start_deadline_s + settings.time_limit_grace_s
               + settings.finish_deadline_s)


def recorder_args(settings: OperatorSettings) -> list[str]:
    p = paths(settings)
    return [
        "recorder-pod",
        "--task", p["task_file"],
        "--work-dir", settings.work_dir,
        "--control-host", "0.0.0.0",
        "--control-port", str(settings.control_port),
        "--token-file", p["token_file"],
    ]


def recorder_env(settings: OperatorSettings) -> list[dict[str, Any]]:
    tmp = settings.tmp_dir.rstrip("/")
    # The root filesystem is read-only: everything that writes a cache or socket goes to /tmp.
    env = {
        "HOME": tmp,
        "XDG_CONFIG_HOME": f"{tmp}/.config",
        "XDG_CACHE_HOME": f"{tmp}/.cache",
        "XDG_RUNTIME_DIR": tmp,
        "TMPDIR": tmp,
        "PYTHONDONTWRITEBYTECODE": "1",
        "WEBRECORD_TERMINATION_LOG": settings.termination_log,
        # One wall-clock cap for the recorder and the operator's backstop.
        "WEBRECORD_MAX_WALL_SECONDS": f"{settings.max_wall_s:g}",
        # Said explicitly either way: the recorder's automatic choice only looks at the uid.
        "WEBRECORD_CHROMIUM_NO_SANDBOX": "false" if settings.chromium_sandbox else "true",
    }
    env.update(settings.recorder_env)
    return [{"name": k, "value": v} for k, v in env.items()]


def seccomp_profile(settings: OperatorSettings) -> dict[str, str]:
    if settings.seccomp_profile:
        return {"type": "Localhost", "localhostProfile": settings.seccomp_profile}
    return {"type": "RuntimeDefault"}


def build_pod(owner: dict[str, Any], settings: OperatorSettings,
              extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    spec = RecordingSpec.model_validate(owner["spec"])
    res = resources(spec, settings)
    p = paths(settings)
    secret = recorder_name(name)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.recorder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["webrecord"],
        "args": recorder_args(settings),
        "env": recorder_env(settings) + [{"name": k, "value": v}
                                         for k, v in (extra_env or {}).items()],
        "ports": [{"name": "control", "containerPort": settings.control_port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "control"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "resources": {"requests": res["requests"], "limits": res["limits"]},
        "terminationMessagePath": settings.termination_log,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RECORDER_UID,
            "runAsGroup": RECORDER_UID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "task", "mountPath": p["task_dir"], "readOnly": True},
            {"name": "token", "mountPath": p["token_dir"], "readOnly": True},
            {"name": "data", "mountPath": settings.work_dir},
            {"name": "tmp", "mountPath": settings.tmp_dir},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    if settings.storage_secret:
        # Files, not env (envFrom): only the delivery step reads them (WEBRECORD_SECRETS_DIR),
        # and no child process (Chromium, ffmpeg) can inherit them.
        container["env"].append({"name": "WEBRECORD_SECRETS_DIR", "value": p["secrets_dir"]})
        container["volumeMounts"].append({"name": "storage", "mountPath": p["secrets_dir"],
                                          "readOnly": True})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # a restarted recorder would have lost its segments' state
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "activeDeadlineSeconds": active_deadline(spec, settings),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RECORDER_UID,
            "runAsGroup": RECORDER_UID,
            "fsGroup": RECORDER_UID,
            "seccompProfile": seccomp_profile(settings),
        },
        "containers": [container],
        "volumes": [
            {
                "name": "task",
                "secret": {
                    "secretName": secret,
                    "items": [{"key": TASK_KEY, "path": TASK_KEY}],
                    "defaultMode": 0o440,
                },
            },
            {
                "name": "token",
                "secret": {
                    "secretName": secret,
                    "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}],
                    "defaultMode": 0o440,
                },
            },
            {"name": "data", "emptyDir": {"sizeLimit": settings.work_dir_size_limit}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res["shm"]}},
        ],
    }
    if settings.storage_secret:
        pod_spec["volumes"].append({"name": "storage", "secret": {
            "secretName": settings.storage_secret, "defaultMode": 0o440}})
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.priority_class:
        pod_spec["priorityClassName"] = settings.priority_class
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _recorder_metadata(owner),
        "spec": pod_spec,
    }

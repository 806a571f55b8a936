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
    GROUP,
    KIND,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_TASK,
)
from webrecord.controller.settings import OperatorSettings
from webrecord.recorder.encoding import encoding_for
from webrecord.recorder.settings import RecorderSettings
from webrecord.controller.timestamps import parse_rfc3339

RECORDER_UID = 1000
CONTAINER = "recorder"
MANAGED_BY = "webrecord-operator"
TASK_KEY = "task.json"
TOKEN_KEY = "token"


def recorder_name(task_id: str) -> str:
    """Name of both the pod and the secret of a task (the CRD caps task names at 52 chars)."""
    return f"{task_id}-recorder"


def task_pod_name(task_id: str, status: dict[str, Any] | None) -> str:
    """The task's recorder pod: `status.podName` (a claimed standby pod keeps its own name),
    else the name of the pod the operator makes for it."""
    return (status or {}).get("podName") or recorder_name(task_id)


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
    manifest = _pod(_recorder_metadata(owner), settings, spec, recorder_args(settings),
                    recorder_name(name), extra_env)
    manifest["spec"]["activeDeadlineSeconds"] = active_deadline(spec, settings)
    return manifest


# ---- standby pods (docs/contracts.md section 3, "Standby pods") ---------------------------
STANDBY_LABEL = f"{GROUP}/standby"
STANDBY_PREFIX = "webrecord-standby-"


def standby_spec() -> RecordingSpec:
    """What a standby pod is sized for: a task of the default size, frame rate and audio."""
    return RecordingSpec.model_validate({"recordUrl": "https://standby.invalid/"})


def standby_labels() -> dict[str, str]:
    # The recorder labels minus the task: the pod watch sees it, no task claims it by label.
    return {"app.kubernetes.io/name": "webrecord", LABEL_COMPONENT: "recorder",
            LABEL_MANAGED_BY: MANAGED_BY, STANDBY_LABEL: "true"}


def new_standby_name() -> str:
    return STANDBY_PREFIX + secrets.token_hex(4)


def standby_args(settings: OperatorSettings) -> list[str]:
    spec = standby_spec()
    return [
        "recorder-pod", "--standby",
        "--work-dir", settings.work_dir,
        "--control-host", "0.0.0.0",
        "--control-port", str(settings.control_port),
        "--token-file", paths(settings)["token_file"],
        "--width", str(spec.width), "--height", str(spec.height),
    ]


def _core_owner(kind: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A plain (not controller) owner reference to a core/v1 object: GC only."""
    return {"apiVersion": "v1", "kind": kind, "name": meta["name"], "uid": meta["uid"],
            "blockOwnerDeletion": False}


def build_standby_pod(pod_name: str, namespace: str, settings: OperatorSettings,
                      anchor: dict[str, Any] | None = None) -> dict[str, Any]:
    """An idle recorder of the install-wide settings (image, security, storage secret, the
    default size's resources), waiting for POST /claim. No activeDeadlineSeconds while idle:
    the claim sets it (counted from the pod's start). Owned by `anchor` (the chart's ConfigMap)
    while idle: uninstalling the chart removes the pool; the claim replaces the owner."""
    meta: dict[str, Any] = {"name": pod_name, "namespace": namespace, "labels": standby_labels()}
    if anchor is not None:
        meta["ownerReferences"] = [_core_owner("ConfigMap", anchor["metadata"])]
    return _pod(meta, settings, standby_spec(), standby_args(settings), pod_name, None,
                task_secret=False)


def build_standby_secret(pod: dict[str, Any], token: str) -> dict[str, Any]:
    """The standby pod's token, owned by the pod (garbage collected with it)."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "labels": standby_labels(),
                     "ownerReferences": [_core_owner("Pod", meta)]},
        "stringData": {TOKEN_KEY: token},
    }


def claimable(spec: RecordingSpec, settings: OperatorSettings) -> str | None:
    """Why a task cannot take a standby pod (None when it can). Everything per task travels in
    the claim (the task, HLS key included) except the pod's resources, which a running pod
    cannot change: another size, frame rate or audio-only costs other requests."""
    if resources(spec, settings) != resources(standby_spec(), settings):
        return "its resources differ from a standby pod's (another size, frame rate or audio-only)"
    return None


def claim_patch(pod: dict[str, Any], owner: dict[str, Any], spec: RecordingSpec,
                settings: OperatorSettings, now: float) -> list[dict[str, Any]]:
    """JSON patch that makes a standby pod the task's recorder pod: out of the pool, labelled
    with the task and owned by its WebRecording (deleted with it, found by the pod watch), and
    the task's time limit from now. Fails (the `test`) when the pod changed since it was seen:
    another claim or a deletion won."""
    meta = pod["metadata"]
    started = parse_rfc3339((pod.get("status") or {}).get("startTime")) or now
    deadline = int(max(0.0, now - started)) + 1 + active_deadline(spec, settings)
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "remove", "path": "/metadata/labels/" + STANDBY_LABEL.replace("/", "~1")},
        {"op": "add", "path": "/metadata/labels/" + LABEL_TASK.replace("/", "~1"),
         "value": owner["metadata"]["name"]},
        {"op": "add", "path": "/metadata/ownerReferences", "value": [owner_reference(owner)]},
        {"op": "add", "path": "/spec/activeDeadlineSeconds", "value": deadline},
    ]


def _pod(meta: dict[str, Any], settings: OperatorSettings, spec: RecordingSpec,
         args: list[str], secret: str, extra_env: dict[str, str] | None,
         task_secret: bool = True) -> dict[str, Any]:
    """The recorder pod shared by a task's own pod and a standby pod."""
    res = resources(spec, settings)
    p = paths(settings)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.recorder_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["webrecord"],
        "args": args,
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
    if task_secret:
        container["volumeMounts"].insert(0, {"name": "task", "mountPath": p["task_dir"],
                                             "readOnly": True})
        pod_spec["volumes"].insert(0, {"name": "task", "secret": {
            "secretName": secret, "items": [{"key": TASK_KEY, "path": TASK_KEY}],
            "defaultMode": 0o440}})
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
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}

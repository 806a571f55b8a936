"""The recorder pod and secret manifests (pure builders)."""

from __future__ import annotations

import json

import pytest

from webrecord.api.models import RecordingTask
from webrecord.controller import pod as podlib
from webrecord.controller.settings import OperatorSettings

OWNER = {
    "apiVersion": "webrecord.io/v1alpha1",
    "kind": "WebRecording",
    "metadata": {"name": "demo", "namespace": "rec", "uid": "1234-uid", "generation": 1},
    "spec": {
        "recordUrl": "https://example.test/page",
        "width": 1280,
        "height": 720,
        "maxDurationLimit": 60,
        "action": "Pause",
        "actionSeq": 3,
        "output": {"video": {"muxer": "hls", "encryptKey": "00112233445566778899AABBCCDDEEFF"}},
    },
}


def _container(pod: dict) -> dict:
    [container] = pod["spec"]["containers"]
    return container


def test_chromium_sandbox_and_seccomp_profile_are_explicit() -> None:
    """Off (the operator's default): --no-sandbox said in the env, RuntimeDefault seccomp. On:
    the Localhost profile that lets Chromium make its namespaces, and no --no-sandbox."""
    off = podlib.build_pod(OWNER, OperatorSettings())
    assert _env(off)["WEBRECORD_CHROMIUM_NO_SANDBOX"] == "true"
    assert off["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    on = podlib.build_pod(OWNER, OperatorSettings(chromium_sandbox=True,
                                                  seccomp_profile="webrecord/chromium.json"))
    assert _env(on)["WEBRECORD_CHROMIUM_NO_SANDBOX"] == "false"
    assert on["spec"]["securityContext"]["seccompProfile"] == {
        "type": "Localhost", "localhostProfile": "webrecord/chromium.json"}


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in _container(pod)["env"]}


def test_pod_is_locked_down() -> None:
    pod = podlib.build_pod(OWNER, OperatorSettings())
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = _container(pod)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["mountPath"]: m for m in _container(pod)["volumeMounts"]}
    assert set(mounts) == {"/etc/webrecord/task", "/etc/webrecord/token", "/data", "/tmp", "/dev/shm"}
    assert mounts["/etc/webrecord/token"]["readOnly"] is True


def test_owner_reference_names_and_labels() -> None:
    pod = podlib.build_pod(OWNER, OperatorSettings())
    secret = podlib.build_secret(OWNER, podlib.recording_task(OWNER, 100), "tok")
    for obj in (pod, secret):
        meta = obj["metadata"]
        assert meta["name"] == "demo-recorder"
        assert meta["namespace"] == "rec"
        assert meta["labels"]["webrecord.io/task"] == "demo"
        [ref] = meta["ownerReferences"]
        assert ref == {"apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording",
                       "name": "demo", "uid": "1234-uid", "controller": True,
                       "blockOwnerDeletion": True}


def test_command_matches_the_contract_and_settings() -> None:
    settings = OperatorSettings(control_port=9100, mount_root="/x/etc", work_dir="/x/data",
                                termination_log="/x/term", recorder_env={"A": "1"},
                                storage_secret="store")
    container = _container(podlib.build_pod(OWNER, settings))
    assert container["command"] == ["webrecord"]
    assert container["args"] == [
        "recorder-pod", "--task", "/x/etc/task/task.json", "--work-dir", "/x/data",
        "--control-host", "0.0.0.0", "--control-port", "9100",
        "--token-file", "/x/etc/token/token",
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["A"] == "1" and env["WEBRECORD_TERMINATION_LOG"] == "/x/term"
    assert env["HOME"] == "/tmp"
    # Storage credentials and the callback key: files read by delivery only, never env.
    assert "envFrom" not in container
    assert env["WEBRECORD_SECRETS_DIR"] == "/x/etc/storage"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/x/etc/storage")
    assert mount["readOnly"] is True
    volume = next(v for v in podlib.build_pod(OWNER, settings)["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"] == {"secretName": "store", "defaultMode": 0o440}
    assert container["terminationMessagePath"] == "/x/term"
    assert container["ports"][0]["containerPort"] == 9100


def test_secret_holds_task_without_controls_and_token() -> None:
    secret = podlib.build_secret(OWNER, podlib.recording_task(OWNER, 100), "tok-1")
    assert secret["stringData"]["token"] == "tok-1"
    task = RecordingTask.model_validate(json.loads(secret["stringData"]["task.json"]))
    assert task.task_id == "demo" and task.create_time == 100
    assert task.spec.action is None and task.spec.action_seq == 0
    assert task.spec.output.video.encrypt_key == "00112233445566778899aabbccddeeff"


def _mi(value: str) -> int:
    assert value.endswith("Mi")
    return int(value[:-2])


@pytest.mark.parametrize("small,big", [((640, 360), (1280, 720)), ((1280, 720), (2560, 1440))])
def test_resources_grow_with_resolution(small: tuple[int, int], big: tuple[int, int]) -> None:
    settings = OperatorSettings()

    def res(w: int, h: int) -> dict:
        owner = {**OWNER, "spec": {**OWNER["spec"], "width": w, "height": h}}
        return podlib.resources(podlib.recording_task(owner, 1).spec, settings)

    a, b = res(*small), res(*big)
    assert int(a["requests"]["cpu"][:-1]) < int(b["requests"]["cpu"][:-1])
    assert _mi(a["requests"]["memory"]) < _mi(b["requests"]["memory"])
    assert _mi(a["shm"]) < _mi(b["shm"])
    for r in (a, b):
        assert int(r["limits"]["cpu"][:-1]) >= int(r["requests"]["cpu"][:-1])
        assert _mi(r["limits"]["memory"]) >= _mi(r["requests"]["memory"]) + _mi(r["shm"])


def test_requests_are_the_measured_cost() -> None:
    """720p30 costs 0.652 cores and 623 MiB (webrecord.api.cost, from bench/recorder); a 2-core
    node then holds two such recorders, not three (3 at once dropped frames there)."""
    owner = {**OWNER, "spec": {**OWNER["spec"], "width": 1280, "height": 720}}
    r = podlib.resources(podlib.recording_task(owner, 1).spec, OperatorSettings())
    assert r["requests"] == {"cpu": "652m", "memory": "623Mi"}
    assert 3 * 0.652 > 2 * 0.9 > 2 * 0.652


def test_active_deadline_backs_up_the_time_limits() -> None:
    """Recorded time (MaxDurationLimit) cannot outrun the wall-clock cap, so the cap bounds the
    recording however it was paused; then grace, packaging and upload. The recorder gets the
    same cap."""
    settings = OperatorSettings(start_deadline_s=10, time_limit_grace_s=5, finish_deadline_s=20,
                                max_wall_s=600)
    pod = podlib.build_pod(OWNER, settings)
    assert pod["spec"]["activeDeadlineSeconds"] == 600 + 10 + 5 + 20
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["WEBRECORD_MAX_WALL_SECONDS"] == "600"
    # Defaults: a 10-hour recording (the protocol's maximum) has an hour to package and upload.
    default = OperatorSettings()
    assert default.max_wall_s >= 36000 and default.finish_deadline_s >= 3600


# ---- standby pods ---------------------------------------------------------------------------
STANDBY_SETTINGS = dict(storage_secret="storage", chromium_sandbox=True,
                        seccomp_profile="webrecord/chromium.json", namespaces=["rec"],
                        standby_pods=2)


def test_standby_pod_is_the_install_wide_recorder_pod_without_a_task() -> None:
    """Same image, security, env, storage mount and default-size resources as a task's pod of
    the default size; no task file, the standby command, its own token; no time limit while
    idle; labelled standby, no task label and no owner (no WebRecording holds it)."""
    settings = OperatorSettings(**STANDBY_SETTINGS)
    cold = podlib.build_pod({**OWNER, "spec": {"recordUrl": "https://example.test/"}}, settings)
    warm = podlib.build_standby_pod("webrecord-standby-ab12cd34", "rec", settings)
    for key in ("image", "securityContext", "resources", "env", "ports", "readinessProbe"):
        assert _container(warm)[key] == _container(cold)[key], key
    assert warm["spec"]["securityContext"] == cold["spec"]["securityContext"]
    assert warm["spec"]["securityContext"]["seccompProfile"]["type"] == "Localhost"
    mounts = {m["name"] for m in _container(warm)["volumeMounts"]}
    assert mounts == {m["name"] for m in _container(cold)["volumeMounts"]} - {"task"}
    assert "storage" in mounts
    volumes = {v["name"]: v for v in warm["spec"]["volumes"]}
    assert volumes["token"]["secret"]["secretName"] == "webrecord-standby-ab12cd34"
    args = _container(warm)["args"]
    assert args[:2] == ["recorder-pod", "--standby"] and "--task" not in args
    assert args[args.index("--width") + 1] == "1280" and args[args.index("--height") + 1] == "720"
    assert "activeDeadlineSeconds" not in warm["spec"]
    meta = warm["metadata"]
    assert meta["labels"][podlib.STANDBY_LABEL] == "true"
    assert "webrecord.io/task" not in meta["labels"] and "ownerReferences" not in meta


@pytest.mark.parametrize("spec, claims", [
    ({}, True),
    ({"width": 1920, "height": 1080}, False),
    ({"output": {"video": {"frameRate": 60}}}, False),
    ({"output": {"video": {"muxer": "hls", "encryptKey": "00112233445566778899AABBCCDDEEFF"}}},
     True),
])
def test_only_tasks_of_the_standby_resources_claim(spec: dict, claims: bool) -> None:
    settings = OperatorSettings(**STANDBY_SETTINGS)
    task = podlib.recording_task({**OWNER, "spec": {"recordUrl": "https://e.test/", **spec}}, 1)
    assert (podlib.claimable(task.spec, settings) is None) is claims


def test_claim_patch_moves_the_pod_from_the_pool_to_the_task() -> None:
    settings = OperatorSettings(**STANDBY_SETTINGS)
    pod = {"metadata": {"name": "webrecord-standby-1", "resourceVersion": "77"},
           "status": {"startTime": "2026-01-01T00:00:00Z"}}
    spec = podlib.recording_task(OWNER, 1).spec
    now = 1767225600 + 3600  # an hour after the pod started
    ops = {op["path"]: op for op in podlib.claim_patch(pod, OWNER, spec, settings, now)}
    assert ops["/metadata/resourceVersion"] == {"op": "test", "path": "/metadata/resourceVersion",
                                                "value": "77"}
    assert ops["/metadata/labels/webrecord.io~1standby"]["op"] == "remove"
    assert ops["/metadata/labels/webrecord.io~1task"]["value"] == "demo"
    [ref] = ops["/metadata/ownerReferences"]["value"]
    assert ref["uid"] == "1234-uid" and ref["controller"] is True
    # Counted from the pod's start: the idle hour does not eat the task's time.
    assert ops["/spec/activeDeadlineSeconds"]["value"] == 3601 + podlib.active_deadline(
        spec, settings)


def test_standby_needs_a_namespace() -> None:
    with pytest.raises(ValueError, match="standby_namespace: required"):
        OperatorSettings(standby_pods=1)
    assert OperatorSettings(standby_pods=1, standby_namespace="pool").pool_namespace == "pool"
    assert OperatorSettings(standby_pods=1, namespaces=["a", "b"]).pool_namespace == "a"

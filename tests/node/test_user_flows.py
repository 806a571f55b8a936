"""What users do, on a real node: `helm install` of charts/webrecord into a namespace that enforces
the restricted Pod Security level, the README's kubectl flow, the Action protocol through the
adapter Service with signed requests, losses mid-recording, `helm upgrade` and `helm uninstall`.

Everything runs for real: the recorder image built by tests/node/image.sh, pods on a kubelet on
containerd, the operator and adapter from the chart, videos uploaded by the recorder pods to an S3
endpoint (moto) on this machine's node address, callbacks to a receiver there. On a user's own
cluster (KUBECONFIG set, see tests/node/README.md) the same tests run against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from node.flows import APP_KEY, BUCKET, Release, dump_namespace, s3_client
from opkit import recording, wait_for
from recorder.media import decode_errors
from webrecord.adapter.auth import sign_headers
from webrecord.delivery.callback import verify_signature

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]


def start(release: Release, name: str, target_dir: str, **spec: Any) -> None:
    release.kube.apply(recording(
        name, recordUrl=f"{release.page_base}/recorder_sound.html", width=640, height=360,
        maxDurationLimit=300, callbackUrl=release.callbacks.url, storageType="cos",
        output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": target_dir}}, **spec))


def wait_phase(release: Release, name: str, phase: str, timeout: float = 180) -> dict[str, Any]:
    try:
        return release.kube.wait_phase(name, phase, timeout=timeout)
    except AssertionError:
        dump_namespace(release.kube)
        raise


def downloaded(release: Release, key: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="wr-node-video-")) / Path(key).name
    s3_client(release.s3_endpoint).download_file(BUCKET, key, str(path))
    return path


def probe(path: Path) -> dict[str, Any]:
    """Duration and streams as a player sees them, after decoding every frame without error."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type",
                          "-of", "json", str(path)], capture_output=True, text=True, timeout=60, check=True)
    assert not (errors := decode_errors(path)), errors
    info = json.loads(out.stdout)
    return {"duration": float(info["format"]["duration"]),
            "streams": sorted(s["codec_type"] for s in info["streams"])}


def video_object(release: Release, prefix: str) -> tuple[str, int]:
    listed = s3_client(release.s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")
    videos = [(o["Key"], o["Size"]) for o in listed.get("Contents", []) if o["Key"].endswith(".mp4")]
    assert len(videos) == 1, listed.get("Contents")
    return videos[0]


def callback_for(release: Release, task: str, timeout: float = 60) -> dict[str, Any]:
    """The task's callback body, after checking its signature over the raw bytes."""
    def find() -> dict[str, Any] | None:
        for raw, body, headers in zip(release.callbacks.raw, release.callbacks.bodies,
                                      release.callbacks.headers):
            if body.get("TaskID") == task:
                assert verify_signature(release.callback_secret, raw, {k.lower(): v for k, v in headers.items()})
                return body
        return None
    return wait_for(find, timeout, f"the callback of {task}")


def assert_delivered(release: Release, name: str, status: dict[str, Any], min_seconds: float) -> None:
    """The video of `name` is in S3, plays, lasts what was recorded; status, callback and Events say so."""
    result = status["result"]
    assert not result.get("errorCode"), result
    [video] = result["videos"]
    key, size = video_object(release, name)
    assert size == video["fileSize"]
    media = probe(downloaded(release, key))
    assert media["streams"] == ["audio", "video"]
    recorded = status["recordedSeconds"]
    assert recorded >= min_seconds
    assert abs(media["duration"] - recorded) <= 0.6, (media, recorded)
    for field in ("createTime", "startTime", "stopTime", "finishTime"):
        assert status[field] > 0, field
    body = callback_for(release, name)
    assert body["Result"]["ErrorCode"] == "" and body["Result"]["Videos"][0]["FileSize"] == size


def test_operator_and_adapter_pods_run_restricted(release: Release) -> None:
    """The chart's pods were admitted under `enforce: restricted` and are Ready (install --wait
    returned); the adapter read its auth Secret as uid 1000 (the fsGroup defect crash-looped it)."""
    pods = json.loads(release.kube.kubectl("get", "pods", "-o", "json").stdout)["items"]
    components = {}
    for pod in pods:
        component = pod["metadata"]["labels"].get("app.kubernetes.io/component")
        if component:
            components.setdefault(component, []).append(pod)
    assert len(components["operator"]) == 2 and len(components["adapter"]) == 1
    for pod in components["operator"] + components["adapter"]:
        statuses = pod["status"]["containerStatuses"]
        assert all(s["ready"] and s["restartCount"] == 0 for s in statuses), statuses


def test_kubectl_flow_pause_resume_refresh_stop(release: Release) -> None:
    """The README's flow: apply, Pause, Resume, two Refreshes, Stop, all through spec.action."""
    kube = release.kube
    start(release, "flow", "flow")
    first = wait_phase(release, "flow", "recording")
    assert first["podName"] == "flow-recorder"
    time.sleep(3)
    kube.patch_spec("flow", {"action": "Pause", "actionSeq": 1})
    wait_phase(release, "flow", "paused", 60)
    time.sleep(2)  # paused time is not recorded
    kube.patch_spec("flow", {"action": "Resume", "actionSeq": 2})
    wait_phase(release, "flow", "recording", 60)
    kube.patch_spec("flow", {"action": "Refresh", "actionSeq": 3})
    wait_for(lambda: kube.status("flow").get("observedActionSeq") == 3, 60, "the first Refresh")
    kube.patch_spec("flow", {"actionSeq": 4})  # the same action again: bump actionSeq only
    wait_for(lambda: kube.status("flow").get("observedActionSeq") == 4, 60, "the second Refresh")
    time.sleep(3)
    kube.patch_spec("flow", {"action": "Stop", "actionSeq": 5})
    final = wait_phase(release, "flow", "finished", 240)
    assert_delivered(release, "flow", final, min_seconds=5)
    assert final["recordedSeconds"] < (final["stopTime"] - final["startTime"]) - 1  # the pause
    reasons = {e["reason"] for e in kube.events("flow")}
    assert {"PhaseRecording", "PhasePaused", "PhaseFinished", "ActionApplied"} <= reasons, reasons
    pod = kube.get("pod", "flow-recorder")
    if pod is not None:  # the operator may already have removed a finished pod
        assert pod["status"]["phase"] == "Succeeded"
        assert pod["spec"]["automountServiceAccountToken"] is False
    assert "finished" in kube.kubectl("get", "wrec", "flow").stdout


def adapter_call(release: Release, base: str, action: str, data: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"Action": action, "Data": data}).encode()
    headers = sign_headers(APP_KEY, release.app_secret, body)
    request = urllib.request.Request(base + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{action}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc


def test_action_protocol_through_the_adapter_service(release: Release) -> None:
    """A caller with an application key drives a recording through the adapter's Service."""
    svc = release.kube.get("service", f"{release.name}-webrecord-adapter")
    base = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    started = adapter_call(release, base, "Start", {
        "RecordURL": f"{release.page_base}/recorder_sound.html", "Width": 640, "Height": 360,
        "MaxDurationLimit": 300, "CallbackURL": release.callbacks.url, "StorageType": "cos",
        "Output": {"Cos": {"Bucket": BUCKET, "Region": "us-east-1", "TargetDir": "action"}}})
    task = started["TaskID"]
    describe = lambda: adapter_call(release, base, "Describe", {"TaskID": task})  # noqa: E731
    wait_for(lambda: describe()["Status"] == "recording", 180, "Describe: recording", interval=0.5)
    time.sleep(3)
    adapter_call(release, base, "Pause", {"TaskID": task})
    wait_for(lambda: describe()["Status"] == "paused", 60, "Describe: paused", interval=0.5)
    adapter_call(release, base, "Resume", {"TaskID": task})
    wait_for(lambda: describe()["Status"] == "recording", 60, "Describe: recording again", interval=0.5)
    time.sleep(2)
    adapter_call(release, base, "Stop", {"TaskID": task})
    final = wait_for(lambda: (d := describe())["Status"] == "finished" and d, 240, "Describe: finished",
                     interval=0.5)
    assert final["Result"]["ErrorCode"] == "", final
    [video] = final["Result"]["Videos"]
    key, size = video_object(release, "action")
    assert size == video["FileSize"] and video["FileDuration"] >= 4
    assert probe(downloaded(release, key))["streams"] == ["audio", "video"]
    for field in ("CreateTime", "StartTime", "StopTime", "FinishTime"):
        assert final[field] > 0, field
    assert callback_for(release, task)["Result"]["Videos"][0]["FileSize"] == size
    # An unsigned request is refused at the Service too.
    request = urllib.request.Request(base + "/", data=b'{"Action":"Describe","Data":{"TaskID":"x"}}',
                                     headers={"content-type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code in (401, 403)


def test_pages_cannot_reach_into_the_cluster(release: Release) -> None:
    """The install's egress policy (egress.podCIDRs / serviceCIDRs from the cluster's own
    ranges, the page server's Service allowed): a WebRecording aimed at the adapter's Service or
    straight at a pod ends InvalidParam naming the range, judged inside the recorder pod by the
    cluster's DNS; the allowed page records."""
    kube = release.kube
    pages_pod_ip = kube.get("pod", "pages")["status"]["podIP"]
    targets = {
        "to-service": (f"http://{release.name}-webrecord-adapter.{kube.ns}.svc.cluster.local/healthz",
                       "in the cluster's service network"),
        "to-pod": (f"http://{pages_pod_ip}:8000/recorder_sound.html", "in the cluster's pod network"),
    }
    for name, (url, _) in targets.items():
        kube.apply(recording(name, recordUrl=url, width=320, height=240, maxDurationLimit=20,
                             storageType="cos", output={"cos": {"bucket": BUCKET, "targetDir": name}}))
    for name, (url, reason) in targets.items():
        result = wait_phase(release, name, "finished", 180)["result"]
        assert result.get("errorCode") == "InvalidParam", (url, result)
        assert "RecordURL" in result["errorMessage"] and reason in result["errorMessage"], result
        assert not s3_client(release.s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"{name}/").get("Contents")


def test_chromium_runs_its_own_sandbox_in_the_recorder_pod(release: Release, node_cluster: Any) -> None:
    """Under the chart's Localhost seccomp profile Chromium keeps its sandbox: no --no-sandbox,
    each renderer in its own user and PID namespace and under a seccomp filter, inside a pod
    that is itself non-root, capability-free and read-only. Read from this machine's /proc."""
    if not node_cluster.own_cluster:
        pytest.skip("reads the recorder pod's processes from this machine's /proc: own node only")
    kube = release.kube
    start(release, "sandboxed", "sandboxed")
    wait_phase(release, "sandboxed", "recording")
    pod = kube.get("pod", "sandboxed-recorder")
    assert pod["spec"]["securityContext"]["seccompProfile"] == {
        "type": "Localhost", "localhostProfile": "webrecord/chromium.json"}
    procs = wait_for(lambda: (p := pod_processes(pod["metadata"]["uid"], "chromium")) and
                     any("--type=renderer" in c for c in p.values()) and p, 30, "Chromium's renderers")
    # The storage Secret is mounted as files: no process of the pod has a credential in its env.
    for pid in pod_processes(pod["metadata"]["uid"]):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        for secret in (b"AWS_SECRET_ACCESS_KEY", b"WEBRECORD_CALLBACK_SECRET", release.callback_secret.encode()):
            assert secret not in environ, (pid, secret)
    assert not [c for c in procs.values() if "--no-sandbox" in c], procs
    [browser] = [pid for pid, c in procs.items() if "--type=" not in c]
    renderers = [pid for pid, c in procs.items() if "--type=renderer" in c]
    for pid in renderers:
        for ns in ("user", "pid"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/{browser}/ns/{ns}"), (pid, ns)
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nSeccomp:\t2" in status and "\nNoNewPrivs:\t1" in status, status
    wait_for(lambda: kube.status("sandboxed").get("recordedSeconds", 0) >= 2, 60, "2 s recorded")
    kube.patch_spec("sandboxed", {"action": "Stop", "actionSeq": 1})
    final = wait_phase(release, "sandboxed", "finished", 240)
    assert_delivered(release, "sandboxed", final, min_seconds=1)


def pod_processes(pod_uid: str, comm: str | None = None) -> dict[int, str]:
    """PID -> command line of the processes (named `comm`, if given) in the pod's cgroup
    (cgroupfs or systemd naming of the pod's slice)."""
    marks = (f"pod{pod_uid}", f"pod{pod_uid.replace('-', '_')}")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if comm is not None and Path(f"/proc/{entry}/comm").read_text().strip() != comm:
                continue
            if not any(m in Path(f"/proc/{entry}/cgroup").read_text() for m in marks):
                continue
            found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def test_operator_pod_deleted_mid_recording(release: Release) -> None:
    """Both operator pods go; the Deployment brings new ones, which pick the task up: the
    recording goes on and a Stop sent meanwhile is applied."""
    kube = release.kube
    start(release, "opgone", "opgone")
    wait_phase(release, "opgone", "recording")
    time.sleep(2)
    before = {p["metadata"]["uid"] for p in operator_pods(release)}
    kube.kubectl("delete", "pod", "-l", "app.kubernetes.io/component=operator", "--wait=false")
    kube.patch_spec("opgone", {"action": "Stop", "actionSeq": 1})
    wait_for(lambda: [p for p in operator_pods(release)
                      if p["metadata"]["uid"] not in before and is_ready(p)], 180, "a new operator pod")
    final = wait_phase(release, "opgone", "finished", 240)
    assert_delivered(release, "opgone", final, min_seconds=2)


def operator_pods(release: Release) -> list[dict[str, Any]]:
    out = release.kube.kubectl("get", "pods", "-l", "app.kubernetes.io/component=operator", "-o", "json")
    return [p for p in json.loads(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def test_webrecording_deleted_mid_recording(release: Release) -> None:
    """`kubectl delete wrec`: the finalizer stops the recorder, which delivers what it recorded
    and calls back before the resource goes."""
    kube = release.kube
    start(release, "gone", "gone")
    wait_phase(release, "gone", "recording")
    time.sleep(4)
    kube.kubectl("delete", "webrecording", "gone", "--wait=false")
    wait_for(lambda: kube.get("webrecording", "gone") is None, 240, "the finalizer to let go")
    key, size = video_object(release, "gone")
    media = probe(downloaded(release, key))
    assert media["duration"] >= 3, media
    body = callback_for(release, "gone")
    assert body["Result"]["Videos"][0]["FileSize"] == size


def test_recorder_pod_deleted_mid_recording(release: Release) -> None:
    """`kubectl delete pod NAME-recorder`: the recorder stores the segment in progress and hands
    the task over (SIGTERM); the operator starts a new recorder pod of the same name, which
    resumes from the stored segments. One video covers before and after; restarts and Events
    say what happened."""
    kube = release.kube
    start(release, "podgone", "podgone")
    wait_phase(release, "podgone", "recording")
    wait_for(lambda: kube.status("podgone").get("recordedSeconds", 0) >= 4, 60, "4 s recorded")
    first = kube.get("pod", "podgone-recorder")
    kube.kubectl("delete", "pod", "podgone-recorder", "--wait=false")
    replacement = wait_for(
        lambda: (p := kube.get("pod", "podgone-recorder")) and p["metadata"]["uid"] != first["metadata"]["uid"]
        and is_ready(p) and p, 180, "the replacement recorder pod")
    assert replacement["metadata"]["name"] == "podgone-recorder"
    status = wait_for(lambda: (s := kube.status("podgone")).get("restarts") == 1 and s, 60, "restarts: 1")
    # The new recorder goes on from what was stored: recorded time keeps growing past the loss.
    lost_at = status.get("recordedSeconds", 0)
    wait_for(lambda: kube.status("podgone").get("recordedSeconds", 0) >= lost_at + 3, 90,
             "the replacement to record 3 s more")
    kube.patch_spec("podgone", {"action": "Stop", "actionSeq": 1})
    final = wait_phase(release, "podgone", "finished", 240)
    assert final["restarts"] == 1
    # Before (>= 4 s, stored at SIGTERM) and after (>= 3 s) are in one video.
    assert_delivered(release, "podgone", final, min_seconds=7)
    reasons = {e["reason"] for e in kube.events("podgone")}
    assert "RecorderRestarted" in reasons, reasons


def test_helm_upgrade_then_uninstall_leaves_nothing_behind(release: Release, node_cluster: Any) -> None:
    """Runs last in this module: `helm upgrade` rolls the operator and adapter to new settings and
    keeps the recordings; `helm uninstall` removes everything the chart made. What stays is what
    the user keeps on purpose: the CRD (Helm never deletes CRDs it installed from crds/), the
    namespace, and the user's own objects (here the page server)."""
    kube = release.kube
    recordings_before = {r["metadata"]["name"] for r in
                         json.loads(kube.kubectl("get", "wrec", "-o", "json").stdout)["items"]}
    release.helm_run("upgrade", release.name, str(Path(__file__).resolve().parents[2] / "charts" / "webrecord"),
                     "-f", str(release.values_file), "--set", "operator.pollIntervalSeconds=3",
                     "--wait", "--timeout", "8m")
    deployment = kube.get("deployment", f"{release.name}-webrecord-operator")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WEBRECORD_OPERATOR_POLL_INTERVAL_S"] == "3"
    assert deployment["status"].get("updatedReplicas") == 2
    recordings_after = {r["metadata"]["name"] for r in
                        json.loads(kube.kubectl("get", "wrec", "-o", "json").stdout)["items"]}
    assert recordings_before == recordings_after

    kube.kubectl("delete", "webrecordings", "--all", "--wait=true", "--timeout=120s", timeout=150)
    release.helm_run("uninstall", release.name, "--wait")
    wait_for(lambda: not chart_objects(kube), 120, "every object the chart made to go")
    assert node_cluster.kubectl("get", "crd", "webrecordings.webrecord.io", check=False).returncode == 0
    left = {p["metadata"]["name"] for p in json.loads(kube.kubectl("get", "pods", "-o", "json").stdout)["items"]}
    assert left == {"pages"}, left


def chart_objects(kube: Any) -> list[str]:
    """Objects of the release still in the namespace (by Helm's own labels), and any recorder pod
    or per-task Secret left by the operator."""
    kinds = "deployments,replicasets,pods,services,secrets,configmaps,serviceaccounts,roles,rolebindings,networkpolicies,kopfpeerings"
    by_chart = kube.kubectl("get", kinds, "-l", "app.kubernetes.io/instance", "-o", "name").stdout.split()
    by_operator = kube.kubectl("get", "pods,secrets", "-l", "app.kubernetes.io/managed-by=webrecord-operator",
                               "-o", "name").stdout.split()
    return by_chart + by_operator

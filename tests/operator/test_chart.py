"""charts/webrecord: lint, render with default and other values, apply the rendered manifests to
the real API server, and run the operator with the chart's own service account and peering.

Helm is built from Go modules by tests/operator/helm.sh (once, into ~/.cache/webrecord/tools);
the `helm` fixture is in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from opkit import ROOT, Kube, recording, wait_for
from webrecord.adapter.backends import kubernetes as kbackend
from webrecord.adapter.settings import AdapterSettings
from webrecord.api.models import RecordingSpec, RecordingTask

CHART = ROOT / "charts" / "webrecord"

# The first test may build helm (a few minutes on a bare machine).
pytestmark = pytest.mark.timeout(900)


def render(helm: str, namespace: str = "webrecord", *sets: str, release: str = "rel") -> list[dict[str, Any]]:
    args = [helm, "template", release, str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_chart_lints(helm: str) -> None:
    for extra in ([], ["--set", "watchAllNamespaces=true"],
                  ["--set", "adapter.enabled=false,networkPolicy.enabled=false"]):
        result = subprocess.run([helm, "lint", "--strict", str(CHART), *extra],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_default_render_is_least_privilege(helm: str) -> None:
    docs = render(helm, "wr")
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "KopfPeering",
                     "NetworkPolicy", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount"]
    [cluster_role] = by_kind(docs, "ClusterRole")
    # Cluster-wide the operator may only discover CRDs: no pods, no secrets.
    assert [r["resources"] for r in cluster_role["rules"]] == [["customresourcedefinitions"]]
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}
    op_rules = roles["rel-webrecord-operator"]["rules"]
    assert roles["rel-webrecord-operator"]["metadata"]["namespace"] == "wr"
    secrets_rule = next(r for r in op_rules if r["resources"] == ["secrets"])
    assert secrets_rule["verbs"] == ["get", "create", "delete"]  # no list/watch of secrets
    adapter_rules = roles["rel-webrecord-adapter"]["rules"]
    # Secrets: create only (a Start's EncryptKey); delete: the WebRecording whose key Secret
    # could not be stored (no half-created task).
    assert adapter_rules == [{"apiGroups": ["webrecord.io"], "resources": ["webrecordings"],
                              "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
                             {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    operator = deployments["rel-webrecord-operator"]
    assert operator["spec"]["replicas"] == 2
    container = operator["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["WEBRECORD_OPERATOR_NAMESPACES"] == '["wr"]'
    assert env["WEBRECORD_OPERATOR_RECORDER_IMAGE"] == "webrecord/recorder:0.1.0"
    assert env["WEBRECORD_OPERATOR_MAX_CONCURRENT"] == "20"
    assert env["WEBRECORD_OPERATOR_STANDBY_PODS"] == "0"  # off unless asked
    # The recorder pods' requests come from the measured cost, which the settings read back.
    cost_env = {k: v for k, v in env.items() if k.startswith("WEBRECORD_COST_")}
    assert cost_env == {"WEBRECORD_COST_CPU_BASE_CORES": "0.154",
                        "WEBRECORD_COST_CPU_CORES_PER_MPX_PER_S": "0.018",
                        "WEBRECORD_COST_MEMORY_BASE_MIB": "535",
                        "WEBRECORD_COST_MEMORY_MIB_PER_MPIX": "95"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    [policy] = by_kind(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8090}]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "recorder"
    [service] = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "rel-webrecord-adapter"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_other_values_render(helm: str) -> None:
    docs = render(
        helm, "wr",
        "watchNamespaces={team-a,team-b}", "storage.credentials.AWS_ACCESS_KEY_ID=AKIA",
        "callback.secret=s3cret", "adapter.auth.keys.app1=secret1", "image.tag=1.2.3",
        "operator.maxConcurrent=5", "recorder.controlPort=9000",
    )
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "rel-webrecord-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    storage = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "rel-webrecord-storage"]
    assert sorted(s["metadata"]["namespace"] for s in storage) == ["team-a", "team-b", "wr"]
    assert storage[0]["stringData"] == {"AWS_ACCESS_KEY_ID": "AKIA", "WEBRECORD_CALLBACK_SECRET": "s3cret"}
    [auth] = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "rel-webrecord-auth"]
    assert auth["stringData"] == {"app1": "secret1"}
    operator = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("operator"))
    env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert env["WEBRECORD_OPERATOR_RECORDER_IMAGE"] == "webrecord/recorder:1.2.3"
    assert env["WEBRECORD_OPERATOR_STORAGE_SECRET"] == "rel-webrecord-storage"
    assert env["WEBRECORD_OPERATOR_CONTROL_PORT"] == "9000"
    assert env["WEBRECORD_OPERATOR_NAMESPACES"] == '["team-a","team-b"]'
    assert sorted(p["metadata"]["namespace"] for p in by_kind(docs, "NetworkPolicy")) == ["team-a", "team-b"]

    cluster = render(helm, "wr", "watchAllNamespaces=true")
    [role] = by_kind(cluster, "ClusterRole")
    assert any(r["resources"] == ["pods"] for r in role["rules"])
    assert by_kind(cluster, "ClusterKopfPeering") and not by_kind(cluster, "Role")[1:]


def test_settings_values_reach_the_processes_that_read_them(helm: str) -> None:
    """Bucket lists, replacement and time limits, segment rotation, delivery retry and the
    egress policy: each value lands in the env of the process whose settings read it."""
    docs = render(
        helm, "wr",
        "operator.allowedBuckets={rec-a,rec-b}", "adapter.allowedBuckets={rec-a}",
        "adapter.auth.keys.app1=secret1", "adapter.auth.keyBuckets.app1={rec-b}",
        "operator.maxRestarts=5", "operator.restartBackoffSeconds=4", "operator.maxWallSeconds=7200",
        "recorder.segmentSeconds=6", "recorder.segmentBucket=segs", "recorder.blankPageSeconds=120",
        "recorder.deliveryRetrySeconds=120", "recorder.env.WEBRECORD_DELIVERY_RETRY_S=30",
        "recorder.live.bufferBytes=1048576",
        "egress.podCIDRs={10.244.0.0/16}", "egress.serviceCIDRs={10.96.0.0/12}",
        "egress.denyPrivate=true", "operator.standbyPods=2",
    )
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    op_env = env_of(deployments["rel-webrecord-operator"]["spec"]["template"]["spec"]["containers"][0])
    assert op_env["WEBRECORD_OPERATOR_ALLOWED_BUCKETS"] == '["rec-a","rec-b"]'
    assert op_env["WEBRECORD_OPERATOR_MAX_RESTARTS"] == "5"
    assert op_env["WEBRECORD_OPERATOR_RESTART_BACKOFF_S"] == "4"
    assert op_env["WEBRECORD_OPERATOR_MAX_WALL_S"] == "7200"
    assert op_env["WEBRECORD_OPERATOR_FINISH_DEADLINE_S"] == "3600"
    # Standby pods in the first watched namespace unless told.
    assert op_env["WEBRECORD_OPERATOR_STANDBY_PODS"] == "2"
    assert op_env["WEBRECORD_OPERATOR_STANDBY_NAMESPACE"] == "wr"
    # The operator judges callbacks with the same egress policy as the recorders.
    assert op_env["WEBRECORD_EGRESS_POD_CIDRS"] == '["10.244.0.0/16"]'
    recorder_env = json.loads(op_env["WEBRECORD_OPERATOR_RECORDER_ENV"])
    assert recorder_env == {
        "WEBRECORD_SEGMENT_SECONDS": "6", "WEBRECORD_SEGMENT_BUCKET": "segs",
        "WEBRECORD_BLANK_PAGE_SECONDS": "120",
        "WEBRECORD_DELIVERY_RETRY_S": "30",  # recorder.env wins
        "WEBRECORD_LIVE_BUFFER_BYTES": "1048576", "WEBRECORD_LIVE_RETRY_MAX_SECONDS": "30",
        "WEBRECORD_EGRESS_POD_CIDRS": '["10.244.0.0/16"]',
        "WEBRECORD_EGRESS_SERVICE_CIDRS": '["10.96.0.0/12"]',
        "WEBRECORD_EGRESS_DENY_PRIVATE": "true",
    }
    adapter_pod = deployments["rel-webrecord-adapter"]["spec"]["template"]["spec"]
    ad_env = env_of(adapter_pod["containers"][0])
    assert ad_env["WEBRECORD_ADAPTER_ALLOWED_BUCKETS"] == '["rec-a"]'
    assert "WEBRECORD_ADAPTER_CLUSTER_FILESYSTEM_OUTPUT" not in ad_env
    mounts = {m["mountPath"]: m["name"] for m in adapter_pod["containers"][0]["volumeMounts"]}
    key_file = Path(ad_env["WEBRECORD_ADAPTER_KEY_BUCKETS_FILE"])
    volume = next(v for v in adapter_pod["volumes"] if v["name"] == mounts[str(key_file.parent)])
    [config_map] = [c for c in by_kind(docs, "ConfigMap")
                    if c["metadata"]["name"] == volume["configMap"]["name"]]
    assert json.loads(config_map["data"][key_file.name]) == {"app1": ["rec-b"]}
    # A mounted filesystem output in the recorders: the adapter accepts tasks without Cos/Vod.
    docs = render(helm, "wr", "recorder.env.WEBRECORD_OUTPUT_DIR=/out")
    adapter = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("adapter"))
    assert env_of(adapter["spec"]["template"]["spec"]["containers"][0])[
        "WEBRECORD_ADAPTER_CLUSTER_FILESYSTEM_OUTPUT"] == "true"


def test_recorders_egress_policy(helm: str) -> None:
    """Recorder pods may reach DNS and what lies outside the pod ranges and link-local (cloud
    metadata), plus the peers the user adds; nothing else inside the cluster."""
    [policy] = by_kind(render(helm, "wr"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, outside = policy["spec"]["egress"]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert {p["port"] for p in dns["ports"]} == {53}
    v4, v6 = (peer["ipBlock"] for peer in outside["to"])
    assert (v4["cidr"], v4["except"]) == ("0.0.0.0/0", ["169.254.0.0/16"])
    assert v6["cidr"] == "::/0" and "fe80::/10" in v6["except"]

    extra = "networkPolicy.recorderEgressTo[0].namespaceSelector.matchLabels.team=storage"
    [policy] = by_kind(render(helm, "wr", "egress.podCIDRs={10.244.0.0/16,fd00:10::/64}", extra),
                       "NetworkPolicy")
    _, outside, added = policy["spec"]["egress"]
    v4, v6 = (peer["ipBlock"] for peer in outside["to"])
    assert v4["except"] == ["169.254.0.0/16", "10.244.0.0/16"]
    assert v6["except"][-1] == "fd00:10::/64"
    assert added["to"] == [{"namespaceSelector": {"matchLabels": {"team": "storage"}}}]


def test_chromium_sandbox_ships_its_seccomp_profile(helm: str) -> None:
    """By default recorder pods keep Chromium's sandbox under the chart's Localhost profile,
    which the chart ships (ConfigMap) for the nodes; --no-sandbox only when asked for."""
    profile_file = CHART / "files" / "chromium-seccomp.json"
    profile = json.loads(profile_file.read_text())
    # The runtime's default profile (refuse unless listed) plus what the namespace sandbox needs.
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert any(set(r["names"]) == {"clone", "unshare", "chroot"} and r["action"] == "SCMP_ACT_ALLOW"
               and not r.get("includes") for r in profile["syscalls"])
    docs = render(helm, "wr")
    operator = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("operator"))
    env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert env["WEBRECORD_OPERATOR_CHROMIUM_SANDBOX"] == "true"
    assert env["WEBRECORD_OPERATOR_SECCOMP_PROFILE"] == "webrecord/chromium.json"
    [config_map] = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == "rel-webrecord-seccomp"]
    assert json.loads(config_map["data"]["chromium.json"]) == profile

    docs = render(helm, "wr", "recorder.chromiumSandbox=false")
    operator = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("operator"))
    env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert env["WEBRECORD_OPERATOR_CHROMIUM_SANDBOX"] == "false"
    assert "WEBRECORD_OPERATOR_SECCOMP_PROFILE" not in env
    assert not [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == "rel-webrecord-seccomp"]


def test_every_pod_can_read_its_secret_volumes(helm: str) -> None:
    """Secret volumes are owned by root and the pods run as uid 1000: a file with mode 0440 is
    readable only through the group, which fsGroup sets. Without it the adapter crash-looped on
    "Permission denied: '/etc/webrecord/auth/...'" on a real node."""
    docs = render(helm, "wr", "adapter.auth.keys.app1=secret1", "callback.secret=s3cret")
    checked = 0
    for deployment in by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "secret" not in volume:
                continue
            mode = volume["secret"].get("defaultMode", 0o644)
            user = pod["securityContext"]["runAsUser"]
            if mode & 0o004:  # world-readable: any uid reads it
                continue
            assert user != 0 and pod["securityContext"].get("fsGroup") is not None, (
                f"{deployment['metadata']['name']}: secret volume {volume['name']} has mode "
                f"{mode:o} but the pod sets no fsGroup, so uid {user} cannot read it")
            checked += 1
    assert checked >= 1  # the adapter's auth keys


async def _start_with_encrypt_key(namespace: str, kubeconfig: Path, task_id: str) -> None:
    backend = kbackend.create(AdapterSettings(backend="kubernetes", namespace=namespace,
                                              kubeconfig=kubeconfig))
    await backend.open()
    try:
        spec = RecordingSpec.model_validate({
            "recordUrl": "https://example.test/", "maxDurationLimit": 30,
            "output": {"cos": {"bucket": "records"},
                       "video": {"muxer": "hls", "encryptKey": "00112233445566778899aabbccddeeff"}}})
        await backend.start(RecordingTask(task_id=task_id, spec=spec), "app1")
    finally:
        await backend.close()


def _can(kube: Kube, kubeconfig: Path, *args: str) -> bool:
    result = kube.cp.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    return result.stdout.strip() == "yes"


@pytest.mark.cluster
def test_rendered_chart_applies_and_its_service_account_runs_the_operator(
    helm: str, kube: Kube, start_operator: Any
) -> None:
    ns = kube.ns
    docs = render(helm, ns, "adapter.auth.keys.app1=secret1", "storage.credentials.AWS_ACCESS_KEY_ID=x")
    kube.cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    with kube.cp.namespace("other") as other:
        sa = kube.cp.service_account_kubeconfig(ns, "rel-webrecord-operator")
        assert _can(kube, sa, "create", "pods", "-n", ns)
        assert _can(kube, sa, "patch", "pods", "-n", ns)  # claiming a standby pod
        assert _can(kube, sa, "patch", "webrecordings.webrecord.io", "--subresource=status", "-n", ns)
        assert _can(kube, sa, "update", "webrecordings.webrecord.io", "--subresource=finalizers", "-n", ns)
        assert _can(kube, sa, "get", "secrets", "-n", ns)
        assert not _can(kube, sa, "get", "secrets", "-n", other)
        assert not _can(kube, sa, "list", "secrets", "-n", ns)
        assert not _can(kube, sa, "list", "secrets", "--all-namespaces")
        # The standby pods' owner ConfigMap (helm uninstall collects the idle pool): that one only.
        assert _can(kube, sa, "get", "configmaps/rel-webrecord-standby-owner", "-n", ns)
        assert not _can(kube, sa, "get", "configmaps/other", "-n", ns)
        assert not _can(kube, sa, "list", "configmaps", "-n", ns)
        assert not _can(kube, sa, "create", "pods", "-n", other)
        # Finished WebRecordings past ttlSecondsAfterFinished, in its own namespaces only.
        assert _can(kube, sa, "delete", "webrecordings.webrecord.io", "-n", ns)
        assert not _can(kube, sa, "delete", "webrecordings.webrecord.io", "-n", other)
        adapter = kube.cp.service_account_kubeconfig(ns, "rel-webrecord-adapter")
        assert _can(kube, adapter, "create", "webrecordings.webrecord.io", "-n", ns)
        assert not _can(kube, adapter, "create", "pods", "-n", ns)
        assert not _can(kube, adapter, "get", "secrets", "-n", ns)
        assert not _can(kube, adapter, "delete", "secrets", "-n", ns)
    # The adapter with exactly the chart's permissions stores a Start's EncryptKey in a Secret.
    asyncio.run(_start_with_encrypt_key(ns, adapter, "charted-enc"))
    assert kube.get("webrecording", "charted-enc")["spec"]["output"]["video"]["encryptKeySecretRef"]
    assert kube.get("secret", "charted-enc-encrypt-key")["data"]["encryptKey"]

    # The operator with exactly the chart's permissions, peering through the chart's KopfPeering.
    op = start_operator(["--namespace", ns], kubeconfig=sa,
                        WEBRECORD_OPERATOR_STORAGE_SECRET="rel-webrecord-storage",
                        WEBRECORD_OPERATOR_STANDBY_PODS="1",
                        WEBRECORD_OPERATOR_STANDBY_OWNER="rel-webrecord-standby-owner")
    kube.apply(recording("charted"))
    wait_for(lambda: kube.status("charted").get("podName"), 60, "the operator (chart RBAC) to act")
    pod = kube.get("pod", "charted-recorder")
    storage = next(v for v in pod["spec"]["volumes"] if v.get("secret", {}).get("secretName") == "rel-webrecord-storage")
    assert any(m["name"] == storage["name"] for m in pod["spec"]["containers"][0]["volumeMounts"])
    # The standby pool with the chart's rights: a pod and its token Secret (none is ready
    # without a kubelet, so the task above took its own pod).
    standby = wait_for(lambda: json.loads(kube.kubectl(
        "get", "pods", "-l", "webrecord.io/standby=true", "-o", "json").stdout)["items"], 30,
        "a standby pod")
    assert kube.get("secret", standby[0]["metadata"]["name"])
    [owner] = standby[0]["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("ConfigMap", "rel-webrecord-standby-owner")
    peering = kube.get("kopfpeering", "webrecord")
    assert peering.get("status"), "the operator did not announce itself in the KopfPeering"
    assert "Forbidden" not in op.log() and "403" not in op.log()


@pytest.mark.cluster
def test_all_namespaces_mode_grants_cluster_wide_rights(helm: str, kube: Kube) -> None:
    release = f"all-{kube.ns[-8:]}"
    docs = render(helm, kube.ns, "watchAllNamespaces=true", "adapter.enabled=false", release=release)
    kube.cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    try:
        sa = kube.cp.service_account_kubeconfig(kube.ns, f"{release}-webrecord-operator")
        with kube.cp.namespace("elsewhere") as other:
            assert _can(kube, sa, "create", "pods", "-n", other)
            assert _can(kube, sa, "patch", "clusterkopfpeerings.kopf.dev")
            assert _can(kube, sa, "watch", "webrecordings.webrecord.io", "--all-namespaces")
            assert not _can(kube, sa, "list", "secrets", "-n", other)
            assert not _can(kube, sa, "watch", "secrets", "-n", other)
    finally:
        for doc in docs:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"):
                kube.cp.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"],
                                "--ignore-not-found", check=False)

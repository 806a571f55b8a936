"""The node itself, before anything of webrecord runs on it: a pod hardened like the operator's
recorder pod runs in a namespace that enforces the restricted Pod Security level, a Service
answers by DNS name from another pod and by ClusterIP from this machine, and a pod below the
restricted level is refused.

On the own cluster the pods use the node's pause and busybox images (made by provision.sh); on a
user's cluster (KUBECONFIG) the recorder image, which has python3.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from node.cluster_ctl import NodeCluster

pytestmark = [pytest.mark.node]

NODE_DIR = Path(os.environ.get("WEBRECORD_NODE_DIR", "/tmp/webrecord-node"))
UID = 1000  # the recorder's (operator/webrecord/controller/pod.py)


def pod_security() -> dict[str, Any]:
    """The recorder pod's pod-level security context."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security() -> dict[str, Any]:
    """The recorder container's security context."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": UID, "runAsGroup": UID, "capabilities": {"drop": ["ALL"]}}


def pod(name: str, image: str, command: list[str], *, pull: str, labels: dict[str, str] | None = None,
        restart: str = "Always", volumes: list[dict[str, Any]] | None = None,
        mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "restartPolicy": restart, "automountServiceAccountToken": False, "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1, "securityContext": pod_security(),
            "containers": [{"name": "main", "image": image, "imagePullPolicy": pull, "command": command,
                            "securityContext": container_security(), "volumeMounts": mounts or []}],
            "volumes": volumes or [],
        },
    }


def pull_policy(cluster: NodeCluster) -> str:
    # The own node has no registry: its images were imported and must never be pulled.
    return "Never" if cluster.own_cluster else "IfNotPresent"


def web_commands(cluster: NodeCluster) -> tuple[str, list[str], list[str]]:
    """(image, server command serving /www on 8080, client command printing a URL's body)."""
    if cluster.own_cluster:
        assert cluster.busybox_image, f"no busybox image on the node: {sorted(cluster.node_images)}"
        # Not busybox wget: Debian bookworm's busybox-static 1.35.0-4+deb12u1+b1 segfaults in it
        # (even on the host). nc + ash: a plain HTTP/1.0 GET, headers dropped, body printed.
        # Tried for up to 10 s: kube-proxy may program a new Service a moment after its pod is Ready.
        get_body = ('h=${1#http://}; h=${h%%/*}; for i in 1 2 3 4 5 6 7 8 9 10; do '
                    'body=$(printf "GET / HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n" "$h" | busybox nc -w 5 "$h" 80 | '
                    '{ while IFS= read -r line; do [ "$line" = "$(printf "\\r")" ] && break; done; busybox cat; }); '
                    '[ -n "$body" ] && { echo "$body"; exit 0; }; sleep 1; done; exit 1')
        return (cluster.busybox_image, ["httpd", "-f", "-p", "8080", "-h", "/www"], ["sh", "-c", get_body, "get"])
    client = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')"
    return (cluster.image, ["python3", "-m", "http.server", "8080", "--directory", "/www"], ["python3", "-c", client])


def apply(cluster: NodeCluster, ns: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump_all(objects))


def get(cluster: NodeCluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("-n", ns, "get", kind, name, "-o", "json").stdout)


def wait_ready(cluster: NodeCluster, ns: str, name: str) -> dict[str, Any]:
    result = cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s",
                             check=False, timeout=130)
    found = get(cluster, ns, "pod", name)
    assert result.returncode == 0, f"pod {name} not Ready: {json.dumps(found.get('status'), indent=1)[-2000:]}"
    return found


def wait_finished(cluster: NodeCluster, ns: str, name: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        phase = get(cluster, ns, "pod", name).get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return phase
        time.sleep(0.5)
    return "timed out"


@pytest.fixture(scope="module")
def ns(node_cluster: NodeCluster) -> Any:
    with node_cluster.namespace("smoke") as name:
        found = json.loads(node_cluster.kubectl("get", "namespace", name, "-o", "json").stdout)
        labels = found["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        yield name


def host_process(container_id: str) -> int:
    """PID on this machine of a container of the own node (its containerd task)."""
    sock = NODE_DIR / "containerd" / "containerd.sock"
    tasks = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "tasks", "ls"], capture_output=True,
                           text=True, check=True, timeout=30).stdout.splitlines()
    for line in tasks[1:]:
        task, pid, *_ = line.split()
        if task == container_id:
            return int(pid)
    raise AssertionError(f"no task {container_id} in {tasks}")


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, value in (line.split(":", 1) for line in lines)}


def test_hardened_pod_runs(node_cluster: NodeCluster, ns: str) -> None:
    if node_cluster.own_cluster:
        image, command = node_cluster.pause_image, ["/pause"]
    else:
        image, command = node_cluster.image, ["sleep", "3600"]
    apply(node_cluster, ns, pod("hardened", image, command, pull=pull_policy(node_cluster)))
    found = wait_ready(node_cluster, ns, "hardened")
    status = found["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0, status
    if not node_cluster.own_cluster:
        return
    # What the kernel applied to the container's process, seen from this machine.
    pid = host_process(status["containerID"].removeprefix("containerd://"))
    proc = proc_status(pid)
    assert proc["Uid"].split() == [str(UID)] * 4, proc["Uid"]
    assert proc["Gid"].split() == [str(UID)] * 4, proc["Gid"]
    assert int(proc["CapEff"], 16) == 0 and int(proc["CapBnd"], 16) == 0, (proc["CapEff"], proc["CapBnd"])
    assert proc["NoNewPrivs"] == "1"
    assert proc["Seccomp"] == "2", "RuntimeDefault is a seccomp filter (mode 2)"
    root = next(line.split() for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    assert "ro" in root[5].split(","), f"root filesystem mounted {root[5]}"


def test_service_by_dns_name_and_cluster_ip(node_cluster: NodeCluster, ns: str) -> None:
    image, server, client = web_commands(node_cluster)
    pull = pull_policy(node_cluster)
    app = f"web-{uuid.uuid4().hex[:6]}"
    # The server answers with its own pod name (downward API): a reply proves which pod served it.
    www = [{"name": "www", "downwardAPI": {"items": [{"path": "index.html", "fieldRef": {"fieldPath": "metadata.name"}}]}}]
    server_pod = pod(app, image, server, pull=pull, labels={"app": app}, volumes=www,
                     mounts=[{"name": "www", "mountPath": "/www", "readOnly": True}])
    server_pod["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": app},
               "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}}
    apply(node_cluster, ns, server_pod, service)
    wait_ready(node_cluster, ns, app)

    url = f"http://{app}.{ns}.svc.cluster.local/"
    apply(node_cluster, ns, pod("client", image, [*client, url], pull=pull, restart="Never"))
    phase = wait_finished(node_cluster, ns, "client")
    logs = node_cluster.kubectl("-n", ns, "logs", "client", check=False).stdout
    assert phase == "Succeeded", f"client pod {phase}; its output: {logs!r}"
    assert logs.strip() == app, f"{url} answered {logs!r}, not the server pod's name"

    if not node_cluster.own_cluster:
        return  # a user's cluster (kind) need not route ClusterIPs from the host
    cluster_ip = get(node_cluster, ns, "service", app)["spec"]["clusterIP"]
    with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=10) as reply:  # noqa: S310 - our own ClusterIP
        assert reply.read().decode().strip() == app


def test_restricted_level_refuses_a_pod_below_it(node_cluster: NodeCluster, ns: str) -> None:
    image = node_cluster.pause_image if node_cluster.own_cluster else node_cluster.image
    unhardened = pod("unhardened", image, ["sleep", "3600"], pull=pull_policy(node_cluster))
    unhardened["spec"].pop("securityContext")
    unhardened["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    manifest = yaml.safe_dump(unhardened)

    refused = node_cluster.kubectl("-n", ns, "create", "-f", "-", input=manifest, check=False)
    assert refused.returncode != 0, "a privileged pod was admitted into a restricted namespace"
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr
    assert "privileged" in refused.stderr, refused.stderr
    absent = node_cluster.kubectl("-n", ns, "get", "pod", "unhardened", check=False)
    assert absent.returncode != 0 and "NotFound" in absent.stderr

    # The same pod passes where no level is enforced: the refusal came from the namespace's level.
    with node_cluster.namespace("smoke-open", restricted=False) as open_ns:
        admitted = node_cluster.kubectl("-n", open_ns, "create", "--dry-run=server", "-f", "-", input=manifest,
                                        check=False)
        assert admitted.returncode == 0, admitted.stderr

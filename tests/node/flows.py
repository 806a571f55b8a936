"""Helpers of the user-flow tests on the real node (fixtures in conftest.py, tests in
test_user_flows.py): chart values, the restricted namespace, the page server, S3 and logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


TESTS = Path(__file__).resolve().parents[1]
# tests/operator is a folder of modules, not a package: its helpers are imported by name.
if str(TESTS / "operator") not in sys.path:
    sys.path.insert(0, str(TESTS / "operator"))

from opkit import ROOT, CallbackReceiver, Kube  # noqa: E402

CHART = ROOT / "charts" / "webrecord"
BUCKET = "node-videos"
S3_KEY = "webrecord-node-test"
APP_KEY = "node-app"
PAGES = ("recorder_sound.html", "recorder_sync.html")


@dataclass
class Release:
    """One `helm install` of charts/webrecord and what the tests need to drive it."""

    name: str
    namespace: str
    kube: Kube
    helm: str
    values_file: Path
    s3_endpoint: str
    callbacks: CallbackReceiver
    callback_secret: str
    app_secret: str
    page_base: str  # http://pages.<ns>.svc:8000 as pods resolve it

    def helm_run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.helm, *args, "--namespace", self.namespace], capture_output=True,
                                text=True, timeout=timeout, env=self.kube.cp.env)
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result


def pull_policy(cluster: Any) -> str:
    """Never on our node (images are imported, no registry is reachable); a user's cluster pulls
    or has the image loaded (`kind load docker-image`)."""
    return "Never" if cluster.own_cluster else "IfNotPresent"


def host_for_pods(cluster: Any) -> str:
    """An address of this machine that pods can reach: the node's own address on our node; on a
    user's cluster (kind) set WEBRECORD_NODE_HOST_ADDRESS (e.g. the docker bridge's gateway)."""
    return os.environ.get("WEBRECORD_NODE_HOST_ADDRESS") or cluster.node_ip


def hardened(container: dict[str, Any]) -> dict[str, Any]:
    """The restricted level's container settings (the page server must pass admission too)."""
    return {**container, "securityContext": {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "runAsUser": 1000, "runAsGroup": 1000, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}}


def page_server_manifests(image: str, pull_policy: str,
                          pages: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Pages (default: tests/pages) served from a pod (the recorder image's python3) behind a
    Service `pages`, port 8000."""
    if pages is None:
        pages = {name: (TESTS / "pages" / name).read_text() for name in PAGES}
    container = hardened({
        "name": "http", "image": image, "imagePullPolicy": pull_policy,
        "command": ["python3", "-m", "http.server", "8000", "--directory", "/pages"],
        "ports": [{"containerPort": 8000}],
        "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1},
        "volumeMounts": [{"name": "pages", "mountPath": "/pages"}]})
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pages"}, "data": pages},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pages", "labels": {"app": "pages"}},
         "spec": {"automountServiceAccountToken": False, "containers": [container],
                  "volumes": [{"name": "pages", "configMap": {"name": "pages"}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pages"},
         "spec": {"selector": {"app": "pages"}, "ports": [{"port": 8000}]}},
    ]


def cluster_ranges(cluster: Any) -> tuple[list[str], list[str]]:
    """(pod CIDRs, service CIDRs) of the cluster: the nodes' podCIDRs (else, on the own node,
    cluster.sh's POD_CIDR) and the ServiceCIDR objects."""
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    pods = sorted({c for n in nodes for c in n["spec"].get("podCIDRs") or []})
    if not pods and cluster.own_cluster:
        script = (Path(__file__).parent / "cluster.sh").read_text()
        pods = [line.split("=", 1)[1] for line in script.splitlines() if line.startswith("POD_CIDR=")]
    listed = cluster.kubectl("get", "servicecidrs", "-o", "json", check=False)
    services = sorted({c for s in (json.loads(listed.stdout)["items"] if listed.returncode == 0 else [])
                       for c in s["spec"].get("cidrs") or []})
    return pods, services


def chart_values(cluster: Any, s3_endpoint: str, callback_secret: str, app_secret: str,
                 egress: dict[str, Any] | None = None) -> dict[str, Any]:
    repo, tag = cluster.image.rsplit(":", 1)
    return {
        "egress": egress or {},
        # Images were imported into the node, not pulled: Never is a test-only value.
        "image": {"repository": repo, "tag": tag, "pullPolicy": pull_policy(cluster)},
        "operator": {"replicas": 2, "pollIntervalSeconds": 1, "startDeadlineSeconds": 180},
        "adapter": {"auth": {"enabled": True, "keys": {APP_KEY: app_secret}}},
        "storage": {"credentials": {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_KEY,
                                    "AWS_DEFAULT_REGION": "us-east-1"}},
        "callback": {"secret": callback_secret},
        # The own node has the chart's seccomp profile (cluster.sh puts it there, as a node
        # image would); on a user's cluster it may not, so Chromium runs --no-sandbox there.
        "recorder": {"chromiumSandbox": bool(cluster.own_cluster),
                     "env": {"WEBRECORD_S3_ENDPOINT_URL": s3_endpoint,
                             "WEBRECORD_S3_ADDRESSING_STYLE": "path"}},
    }


def s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY, config=Config(s3={"addressing_style": "path"}))


def dump_namespace(kube: Kube) -> None:
    """What a person would look at when a flow fails: pods, events, operator and recorder logs."""
    out = [kube.kubectl("get", "pods,wrec", "-o", "wide", check=False).stdout,
           kube.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout[-4000:]]
    for pod in json.loads(kube.kubectl("get", "pods", "-o", "json", check=False).stdout or "{}").get("items", []):
        name = pod["metadata"]["name"]
        out.append(f"--- logs {name} ---\n" + kube.kubectl("logs", name, "--all-containers", "--tail=60",
                                                           check=False).stdout)
    sys.stderr.write("\n".join(out) + "\n")



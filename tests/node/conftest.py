"""Fixtures of the user-flow tests on the real node: a chart release installed with the real
`helm` into a namespace that enforces the restricted Pod Security level, an S3 endpoint and a
callback receiver that pods reach on this machine's node address, and a page server pod.

The cluster itself (`node_cluster`) comes from tests/node/plugin.py; helpers are in flows.py.
"""

from __future__ import annotations

import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from delivery.moto_server import start_moto, stop_process
from node.flows import (
    BUCKET, CHART, CallbackReceiver, Kube, Release, chart_values, cluster_ranges, dump_namespace,
    host_for_pods, page_server_manifests, pull_policy, s3_client,
)


@pytest.fixture(scope="module")
def s3_on_node(node_cluster: Any) -> Iterator[str]:
    """A real S3 endpoint (moto) on this machine's node address: pods reach it, nothing else."""
    proc, endpoint = start_moto(host=host_for_pods(node_cluster))
    try:
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def release(node_cluster: Any, helm: str, s3_on_node: str) -> Iterator[Release]:
    """charts/webrecord installed (`helm install --wait`) into a restricted namespace, plus the
    page server. Uninstalled after the module unless a test already did."""
    ns = node_cluster.create_namespace("wr-node")
    callbacks = CallbackReceiver(host=host_for_pods(node_cluster))
    callback_secret, app_secret = secrets.token_hex(16), secrets.token_hex(16)
    values = Path(tempfile.mkdtemp(prefix="wr-node-values-")) / "values.yaml"
    kube = Kube(node_cluster, ns)
    rel = Release("wr", ns, kube, helm, values, s3_on_node, callbacks, callback_secret, app_secret,
                  f"http://pages.{ns}.svc:8000")
    try:
        # The page server first: the install's egress policy refuses the cluster's pod and
        # service ranges to pages, except this one Service (a user's in-cluster page server).
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(
            page_server_manifests(node_cluster.image, pull_policy(node_cluster))))
        pages_ip = kube.get("service", "pages")["spec"]["clusterIP"]
        pod_cidrs, service_cidrs = cluster_ranges(node_cluster)
        egress = {"podCIDRs": pod_cidrs, "serviceCIDRs": service_cidrs, "allowCIDRs": [f"{pages_ip}/32"]}
        values.write_text(yaml.safe_dump(chart_values(node_cluster, s3_on_node, callback_secret,
                                                      app_secret, egress)))
        rel.helm_run("install", rel.name, str(CHART), "-f", str(values), "--wait", "--timeout", "8m")
        kube.kubectl("wait", "--for=condition=Ready", "pod/pages", "--timeout=180s", timeout=200)
        yield rel
    except BaseException:
        dump_namespace(kube)
        raise
    finally:
        kube.kubectl("delete", "webrecordings", "--all", "--wait=true", "--timeout=120s",
                     check=False, timeout=150)
        subprocess.run([helm, "uninstall", rel.name, "--namespace", ns, "--wait"], timeout=300,
                       check=False, capture_output=True, env=node_cluster.env)
        node_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        callbacks.close()



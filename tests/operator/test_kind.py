"""The same flow on a real cluster (kind): helm install, a WebRecording, controls, a video.

Runs only with WEBRECORD_KIND=1 and KUBECONFIG pointing to a real cluster whose nodes can run
the recorder image (for kind: build recorder-image/Dockerfile and `kind load docker-image`).
Otherwise the `kind` tests are deselected at collection (see conftest.py), not skipped:

    docker build -f recorder-image/Dockerfile -t webrecord/recorder:0.1.0 .
    kind create cluster && kind load docker-image webrecord/recorder:0.1.0
    WEBRECORD_KIND=1 KUBECONFIG=~/.kube/config python3 -m pytest tests/operator/test_kind.py -m kind

The test serves its page from a pod (the same image, `python3 -m http.server`) and keeps the
video in the recorder pod (StorageType cfs); it checks status, times, controls and the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from opkit import ROOT, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(900)]

IMAGE = os.environ.get("WEBRECORD_KIND_IMAGE", "webrecord/recorder:0.1.0")
PAGE = """<!doctype html><html><body style="background:#135;color:#fff;font:64px sans-serif">
<div id="n">0</div><script>let f=0;(function t(){document.getElementById('n').textContent=++f;
requestAnimationFrame(t)})();</script></body></html>"""


def kubectl(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result


@pytest.fixture
def release() -> Any:
    ns = f"wrec-kind-{uuid.uuid4().hex[:6]}"
    helm = subprocess.run(["bash", str(Path(__file__).with_name("helm.sh"))], capture_output=True,
                          text=True, timeout=880, check=True).stdout.strip()
    repo, tag = IMAGE.rsplit(":", 1)
    subprocess.run([helm, "install", "wr", str(ROOT / "charts" / "webrecord"), "--namespace", ns,
                    "--create-namespace", "--set", f"image.repository={repo},image.tag={tag}",
                    "--set", "image.pullPolicy=IfNotPresent,operator.replicas=2",
                    "--set", "adapter.auth.keys.kind=secret", "--wait", "--timeout", "5m"],
                   check=True, timeout=400)
    try:
        yield ns
    finally:
        kubectl("-n", ns, "delete", "webrecordings", "--all", "--wait=true", check=False)
        subprocess.run([helm, "uninstall", "wr", "--namespace", ns], timeout=300, check=False)
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def status(ns: str, name: str) -> dict[str, Any]:
    out = kubectl("-n", ns, "get", "webrecording", name, "-o", "json").stdout
    return json.loads(out).get("status") or {}


def test_helm_install_and_record(release: str) -> None:
    ns = release
    page_server = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pages"},
         "data": {"page.html": PAGE}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "pages", "labels": {"app": "pages"}},
         "spec": {"containers": [{"name": "http", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                  "command": ["python3", "-m", "http.server", "8000", "--directory", "/pages"],
                                  "volumeMounts": [{"name": "pages", "mountPath": "/pages"}]}],
                  "volumes": [{"name": "pages", "configMap": {"name": "pages"}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pages"},
         "spec": {"selector": {"app": "pages"}, "ports": [{"port": 8000}]}},
    ]
    kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump_all(page_server))
    kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/pages", "--timeout=180s")
    kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "webrecord.io/v1alpha1", "kind": "WebRecording", "metadata": {"name": "kind"},
        "spec": {"recordUrl": f"http://pages.{ns}.svc:8000/page.html", "width": 640, "height": 360,
                 "maxDurationLimit": 120},
    }))
    wait_for(lambda: status(ns, "kind").get("phase") == "recording", 300, "recording")
    time.sleep(3)
    kubectl("-n", ns, "patch", "webrecording", "kind", "--type=merge",
            "-p", '{"spec": {"action": "Pause", "actionSeq": 1}}')
    wait_for(lambda: status(ns, "kind").get("phase") == "paused", 60, "paused")
    kubectl("-n", ns, "patch", "webrecording", "kind", "--type=merge",
            "-p", '{"spec": {"action": "Resume", "actionSeq": 2}}')
    wait_for(lambda: status(ns, "kind").get("phase") == "recording", 60, "recording again")
    time.sleep(3)
    kubectl("-n", ns, "patch", "webrecording", "kind", "--type=merge",
            "-p", '{"spec": {"action": "Stop", "actionSeq": 3}}')
    final = wait_for(lambda: (s := status(ns, "kind")).get("phase") == "finished" and s, 300, "finished")
    assert not final["result"].get("errorCode"), final["result"]
    assert final["result"]["videos"][0]["fileDuration"] >= 4
    assert final["recordedSeconds"] >= 4
    pod = json.loads(kubectl("-n", ns, "get", "pod", "kind-recorder", "-o", "json").stdout)
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["automountServiceAccountToken"] is False

"""Helpers of the end-to-end tests: a moto S3 server, the operator settings that make a recorder
pod runnable on this machine, and `Kubelet`, which runs a recorder pod as a local process with
exactly the pod's command, args, env and mounted files and reports its status through the API."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from opkit import Kube, wait_for

KEY = "webrecord-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto() -> Any:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(port), 30, "moto_server")
        yield endpoint
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def s3(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
        aws_secret_access_key=KEY, config=Config(s3={"addressing_style": "path"}))


class Kubelet:
    """Runs one recorder pod as a local process, the way a kubelet would."""

    def __init__(self, kube: Kube, pod_name: str) -> None:
        self.kube = kube
        self.pod = kube.get("pod", pod_name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(kube.cp.workdir) / f"{kube.ns}-{pod_name}.log"

    def _secret(self, name: str) -> dict[str, str]:
        data = self.kube.get("secret", name)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def start(self, task_spec_override: dict[str, Any] | None = None) -> None:
        """`task_spec_override` changes the task the recorder reads: a misbehaving recorder."""
        spec = self.pod["spec"]
        [container] = spec["containers"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for mount in container["volumeMounts"]:
            path = Path(mount["mountPath"])
            volume = volumes[mount["name"]]
            if path == Path("/dev/shm"):
                continue  # the host's /dev/shm plays the memory-backed emptyDir
            path.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                data = self._secret(volume["secret"]["secretName"])
                # No items: every key becomes a file, as a kubelet mounts it.
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    content = data[item["key"]]
                    if item["key"] == "task.json" and task_spec_override:
                        task = json.loads(content)
                        task["spec"].update(task_spec_override)
                        content = json.dumps(task)
                    (path / item["path"]).write_text(content)
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "LANG": "C.UTF-8"}
        if "PYTHONPATH" in os.environ:  # the image's code is the code under test
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.update({e["name"]: e["value"] for e in container["env"]})
        log = open(self.log, "wb")
        self.proc = subprocess.Popen([*container["command"], *container["args"]], env=env,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        port = container["ports"][0]["containerPort"]
        wait_for(lambda: self.proc.poll() is not None or _healthy(port), 60,
                 "the recorder's /healthz (readiness)")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        self.kube.set_pod_status(self.pod["metadata"]["name"], {
            "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "containerStatuses": [{"name": "recorder", "image": container["image"], "imageID": "",
                                   "ready": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
        })

    def report_exit(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        [container] = self.pod["spec"]["containers"]
        message = Path(container["terminationMessagePath"]).read_text()
        self.kube.set_pod_status(self.pod["metadata"]["name"], {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": "recorder", "image": container["image"], "imageID": "",
                                   "ready": False, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": code, "message": message,
                                                            "reason": "Completed" if code == 0 else "Error"}}}],
        }, missing_ok=True)  # a deleted WebRecording's pod may be gone already
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


BUCKET = "e2e-videos"


@contextlib.contextmanager
def supervised(kubelet: Kubelet, kube: Kube, task: str) -> Iterator[None]:
    """The recorder's log and the task's status on failure; the recorder process ended after."""
    try:
        yield
    except BaseException:
        sys.stderr.write(f"--- recorder log ---\n{kubelet.log.read_text(errors='replace')[-8000:]}\n")
        sys.stderr.write(f"--- status ---\n{json.dumps(kube.status(task), indent=1)}\n")
        raise
    finally:
        kubelet.kill()


def delivered_video(status: dict[str, Any], endpoint: str, prefix: str,
                    min_seconds: float) -> dict[str, Any]:
    """The task's one video: a result without error, and that file in the bucket."""
    result = status["result"]
    assert "errorCode" not in result, result
    [video] = result["videos"]
    assert video["fileSize"] > 10_000 and video["fileDuration"] >= min_seconds
    head = s3(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    keys = {o["Key"]: o["Size"] for o in head.get("Contents", [])}
    assert any(size == video["fileSize"] for size in keys.values()), keys
    return video


@pytest.fixture
def pod_env(kube: Kube, moto: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Operator settings that make the pod runnable here, and the storage secret it names."""
    s3(moto).create_bucket(Bucket=BUCKET)
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "storage"},
                "stringData": {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": KEY,
                               "AWS_DEFAULT_REGION": "us-east-1"}})
    # A short root: Chromium's singleton socket lives under TMPDIR and a unix socket path is
    # limited to 108 bytes, which pytest's deep tmp_path can exceed.
    root = Path(tempfile.mkdtemp(prefix="wr-pod-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    return dict(
        WEBRECORD_OPERATOR_CONTROL_PORT=str(free_port()),
        WEBRECORD_OPERATOR_MOUNT_ROOT=str(root / "etc"),
        WEBRECORD_OPERATOR_WORK_DIR=str(root / "data"),
        WEBRECORD_OPERATOR_TMP_DIR=str(root / "tmp"),
        WEBRECORD_OPERATOR_TERMINATION_LOG=str(root / "termination-log"),
        WEBRECORD_OPERATOR_STORAGE_SECRET="storage",
        WEBRECORD_OPERATOR_RECORDER_ENV=json.dumps({
            "WEBRECORD_S3_ENDPOINT_URL": moto, "WEBRECORD_S3_ADDRESSING_STYLE": "path",
            # The pages are served on 127.0.0.1 here; a real pod refuses loopback.
            "WEBRECORD_EGRESS_ALLOW_LOOPBACK": "true",
        }),
    )

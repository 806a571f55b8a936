"""The HTTP Action protocol on the cluster: `webrecord serve --backend kubernetes` in front of the
operator, a real recorder run as the pod's command (the test plays the kubelet), signed
requests: Start, Describe, Pause, Resume, Refresh twice, Stop, Describe with the video."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubelet import BUCKET, Kubelet, s3
from opkit import Kube, wait_for
from webrecord.adapter import auth

pytestmark = [pytest.mark.cluster, pytest.mark.browser, pytest.mark.timeout(300)]

APP_KEY, APP_SECRET = "AKIDcluster", "cluster-secret-0123456789"


class Adapter:
    def __init__(self, kube: Kube, tmp_path: Path) -> None:
        keys = tmp_path / "keys.json"
        keys.write_text(json.dumps({APP_KEY: APP_SECRET}))
        port_file = tmp_path / "adapter.port"
        self.log = tmp_path / "adapter.log"
        env = {**kube.cp.env, "WEBRECORD_ADAPTER_URL_ALLOW_LOOPBACK": "true",
               "WEBRECORD_ADAPTER_CONTROL_WAIT_S": "20"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "webrecord.cli", "serve", "--backend", "kubernetes",
                 "--namespace", kube.ns, "--port", "0", "--port-file", str(port_file),
                 "--auth-keys", str(keys)],
                env=env, stdout=log, stderr=log, start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or port_file.exists(), 30, "the adapter")
        assert self.proc.poll() is None, self.log.read_text()
        self.port = int(port_file.read_text())

    def call(self, action: str, data: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"Action": action, "Data": data}).encode()
        headers = auth.sign_headers(APP_KEY, APP_SECRET, body,
                                    extra_signed={"source": uuid.uuid4().hex})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            reply = json.loads(resp.read())
        finally:
            conn.close()
        assert "ErrorCode" not in reply or action == "Describe", (action, reply)
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)


def test_action_protocol_over_the_cluster(kube: Kube, start_operator: Any, moto: str,
                                          page_server: str, pod_env: dict[str, str],
                                          tmp_path: Path) -> None:
    start_operator(**pod_env)
    adapter = Adapter(kube, tmp_path)
    kubelet: Kubelet | None = None
    try:
        started = adapter.call("Start", {
            "RecordURL": f"{page_server}/recorder_sound.html", "Width": 640, "Height": 360,
            "MaxDurationLimit": 120, "StorageType": "cos",
            "Output": {"Cos": {"Bucket": BUCKET, "Region": "us-east-1", "TargetDir": "adapter"}},
        })
        task = started["TaskID"]
        assert kube.get("webrecording", task)["metadata"]["annotations"]["webrecord.io/owner"] == APP_KEY
        wait_for(lambda: kube.get("pod", f"{task}-recorder"), 30, "the recorder pod")
        kubelet = Kubelet(kube, f"{task}-recorder")
        kubelet.start()

        describe = lambda: adapter.call("Describe", {"TaskID": task})  # noqa: E731
        wait_for(lambda: describe()["Status"] == "recording", 60, "Describe: recording")
        time.sleep(1)
        assert adapter.call("Pause", {"TaskID": task})["TaskID"] == task
        wait_for(lambda: describe()["Status"] == "paused", 30, "Describe: paused")
        adapter.call("Resume", {"TaskID": task})
        wait_for(lambda: describe()["Status"] == "recording", 30, "Describe: recording again")
        adapter.call("Refresh", {"TaskID": task})
        adapter.call("Refresh", {"TaskID": task})
        spec = kube.get("webrecording", task)["spec"]
        assert spec["action"] == "Refresh" and spec["actionSeq"] == 4
        wait_for(lambda: kube.status(task).get("observedActionSeq") == 4, 30, "both Refreshes applied")
        time.sleep(1.5)
        adapter.call("Stop", {"TaskID": task})
        assert kubelet.report_exit(timeout=120) == 0
        final = wait_for(lambda: (d := describe())["Status"] == "finished" and d, 60, "finished")
    except BaseException:
        sys.stderr.write(f"--- adapter log ---\n{adapter.log.read_text()[-5000:]}\n")
        if kubelet is not None:
            sys.stderr.write(f"--- recorder log ---\n{kubelet.log.read_text(errors='replace')[-5000:]}\n")
        raise
    finally:
        if kubelet is not None:
            kubelet.kill()
        adapter.stop()

    assert final["Result"]["ErrorCode"] == ""
    [video] = final["Result"]["Videos"]
    assert video["FileSize"] > 10_000 and video["FileDuration"] >= 2.0
    for name in ("CreateTime", "StartTime", "StopTime", "FinishTime"):
        assert final[name] > 0, name
    listed = s3(moto).list_objects_v2(Bucket=BUCKET, Prefix="adapter/")
    assert any(o["Size"] == video["FileSize"] for o in listed.get("Contents", []))

"""A lost recorder is replaced and the new one resumes from the stored segments (real recorder,
real API server, S3 on moto). The test plays the kubelet (tests/operator/kubelet.py): for a
`kubectl delete pod` it sends SIGTERM to the pod's processes and removes the object once they
exited; for a lost pod it SIGKILLs the whole process tree and reports the pod Failed. Each new
pod runs in a fresh work dir, as a new pod's emptyDir would be."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from opkit import Kube, recording, wait_for
from kubelet import BUCKET, Kubelet, s3

pytestmark = [pytest.mark.cluster, pytest.mark.browser, pytest.mark.timeout(420)]

ROTATE_S = 2


def _new_pod(kube: Kube, name: str, old_uid: str) -> Kubelet:
    wait_for(lambda: (p := kube.get("pod", name)) and p["metadata"]["uid"] != old_uid, 60,
             "the replacement pod")
    return Kubelet(kube, name)


def _fresh_work_dir(pod_env: dict[str, str]) -> None:
    work = Path(pod_env["WEBRECORD_OPERATOR_WORK_DIR"])
    shutil.rmtree(work, ignore_errors=True)


def _kill_tree(kubelet: Kubelet) -> None:
    """SIGKILL the pod's processes, including the recorder worker in its own session and
    everything it started (found by their open task file path in the command line)."""
    assert kubelet.proc is not None
    os.killpg(kubelet.proc.pid, signal.SIGKILL)
    task = kubelet.pod["spec"]["containers"][0]["args"][2]
    subprocess.run(["pkill", "-KILL", "-f", task], check=False)  # the recorder worker
    kubelet.proc.wait(10)


def _recorded_now(kube: Kube, kubelet: Kubelet) -> float:
    """recordedSeconds from the recorder itself (GET /status), as of now."""
    token = kubelet._secret(kubelet.pod["spec"]["volumes"][1]["secret"]["secretName"])["token"]
    port = kubelet.pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    reply = requests.get(f"http://127.0.0.1:{port}/status", timeout=10,
                         headers={"Authorization": f"Bearer {token.strip()}"})
    reply.raise_for_status()
    return float(reply.json()["recordedSeconds"])


def _resumed_seconds(kubelet: Kubelet) -> float:
    """The stored time a new recorder resumed with (its log line)."""
    text = kubelet.log.read_text()
    resumed = re.search(r"resumed with (\d+) stored segments, ([\d.]+) s", text)
    assert resumed, text[-3000:]
    return float(resumed.group(2))


def _duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "json", str(path)], capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["format"]["duration"])


def test_deleted_and_killed_recorders_are_replaced_and_resume(
    kube: Kube, start_operator: Any, moto: str, page_server: str, pod_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = dict(pod_env)
    recorder_env = json.loads(env["WEBRECORD_OPERATOR_RECORDER_ENV"])
    recorder_env["WEBRECORD_SEGMENT_SECONDS"] = str(ROTATE_S)
    env["WEBRECORD_OPERATOR_RECORDER_ENV"] = json.dumps(recorder_env)
    start_operator(**env, WEBRECORD_OPERATOR_RESTART_BACKOFF_S="0.5")
    kube.apply(recording(
        "phoenix", recordUrl=f"{page_server}/recorder_sound.html", width=640, height=360,
        maxDurationLimit=300, storageType="cos",
        output={"cos": {"bucket": BUCKET, "region": "us-east-1", "targetDir": "phoenix"}},
    ))
    wait_for(lambda: kube.get("pod", "phoenix-recorder"), 30, "the recorder pod")
    kubelets = [Kubelet(kube, "phoenix-recorder")]
    recorded: list[float] = []  # recordedSeconds each recorder reached before it went away
    try:
        kubelets[0].start()
        kube.wait_phase("phoenix", "recording", timeout=60)
        time.sleep(5)

        # 1. `kubectl delete pod`: SIGTERM, the recorder stores its segment and exits 75.
        os.killpg(kubelets[0].proc.pid, signal.SIGTERM)
        assert kubelets[0].proc.wait(60) == 75, kubelets[0].log.read_text()[-3000:]
        recorded.append(json.loads(Path(env["WEBRECORD_OPERATOR_WORK_DIR"], "status.json")
                                   .read_text())["recordedSeconds"])
        kube.kubectl("delete", "pod", "phoenix-recorder", "--wait=true")
        _fresh_work_dir(env)
        kubelets.append(_new_pod(kube, "phoenix-recorder", kubelets[0].pod["metadata"]["uid"]))
        status = wait_for(lambda: (s := kube.status("phoenix")).get("restarts") == 1 and s, 30,
                          "restarts == 1")
        kubelets[1].start()
        recorded.append(_resumed_seconds(kubelets[1]))
        wait_for(lambda: _recorded_now(kube, kubelets[1]) > recorded[1] + 0.3, 60,
                 "the second recorder to record")
        time.sleep(5)

        # 2. The pod is lost (SIGKILL of everything, then the kubelet reports it Failed).
        before_kill = _recorded_now(kube, kubelets[1])
        _kill_tree(kubelets[1])
        kube.set_pod_status("phoenix-recorder", {"phase": "Failed", "reason": "Evicted"})
        _fresh_work_dir(env)
        kubelets.append(_new_pod(kube, "phoenix-recorder", kubelets[1].pod["metadata"]["uid"]))
        kubelets[2].start()
        wait_for(lambda: kube.status("phoenix").get("restarts") == 2, 30, "restarts == 2")
        resumed_at = _resumed_seconds(kubelets[2])
        wait_for(lambda: _recorded_now(kube, kubelets[2]) > resumed_at + 0.3, 60,
                 "the third recorder to record")
        time.sleep(4)

        kube.patch_spec("phoenix", {"action": "Stop", "actionSeq": 1})
        assert kubelets[2].report_exit(timeout=120) == 0
        status = kube.wait_phase("phoenix", "finished", timeout=60)
    except BaseException:
        for k in kubelets:
            sys.stderr.write(f"--- {k.log} ---\n{k.log.read_text(errors='replace')[-5000:]}\n")
        sys.stderr.write(f"--- status ---\n{json.dumps(kube.status('phoenix'), indent=1)}\n")
        raise
    finally:
        for k in kubelets:
            k.kill()

    assert "errorCode" not in status["result"], status["result"]
    assert status["restarts"] == 2
    [video] = status["result"]["videos"]
    local = tmp_path / "video.mp4"
    s3(moto).download_file(BUCKET, f"phoenix/{video['filename']}", str(local))
    duration = _duration(local)
    # One video of the whole task, as long as the recorded time it reports.
    assert duration == pytest.approx(status["recordedSeconds"], abs=1.0), (duration, status)
    # Graceful stop: nothing lost; the SIGKILL lost at most the segment in progress.
    lost_to_kill = before_kill - resumed_at
    print(f"recorded before delete {recorded[0]:.1f} s, resumed with {recorded[1]:.1f} s; "
          f"before kill {before_kill:.1f} s, resumed with {resumed_at:.1f} s "
          f"(lost {lost_to_kill:.1f} s); final {duration:.1f} s")
    assert recorded[1] >= recorded[0] - 0.2, recorded  # SIGTERM: nothing lost
    assert lost_to_kill <= ROTATE_S + 2.5, (before_kill, resumed_at)
    assert duration >= resumed_at + 3.5, (duration, resumed_at)
    reasons = [e["reason"] for e in kube.events("phoenix")]
    assert reasons.count("RecorderRestarted") == 2, reasons

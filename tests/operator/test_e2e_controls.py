"""Controls are a sequence: through the Action protocol (kubernetes backend) every accepted
control is applied once, in order, even when callers send them faster than the operator
forwards them; a Pause sent while the task is `normal` starts the recording paused."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kubelet import BUCKET, Kubelet
from opkit import Kube, wait_for
from test_e2e_adapter import Adapter

pytestmark = [pytest.mark.cluster, pytest.mark.browser, pytest.mark.timeout(300)]


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_pause_before_start_and_controls_faster_than_forwarding(
    kube: Kube, start_operator: Any, moto: str, page_server: str, pod_env: dict[str, str],
    tmp_path: Path,
) -> None:
    start_operator(**pod_env)
    adapter = Adapter(kube, tmp_path)
    kubelet: Kubelet | None = None
    try:
        task = adapter.call("Start", {
            "RecordURL": f"{page_server}/recorder_sound.html", "Width": 640, "Height": 360,
            "StorageType": "cos",
            "Output": {"Cos": {"Bucket": BUCKET, "Region": "us-east-1", "TargetDir": "seq"}},
        })["TaskID"]
        describe = lambda: adapter.call("Describe", {"TaskID": task})  # noqa: E731
        assert describe()["Status"] == "normal"
        # Pause before the recorder even runs: accepted, kept until the recorder starts.
        pause, _ = _in_thread(lambda: adapter.call("Pause", {"TaskID": task}))
        wait_for(lambda: kube.get("webrecording", task)["spec"].get("action") == "Pause", 20,
                 "the Pause in spec")
        # A Stop-free burst from two callers while the Pause is still waiting for the operator:
        # each waits its turn instead of replacing the one before.
        resume, _ = _in_thread(lambda: adapter.call("Resume", {"TaskID": task}))
        wait_for(lambda: kube.get("pod", f"{task}-recorder"), 30, "the recorder pod")
        kubelet = Kubelet(kube, f"{task}-recorder")
        kubelet.start()
        pause.join(60)
        resume.join(60)
        assert not pause.is_alive() and not resume.is_alive()
        status = wait_for(lambda: (s := kube.status(task)).get("observedActionSeq") == 2 and s,
                          30, "both controls applied")
        reasons = [e["message"] for e in kube.events(task) if e["reason"] == "ActionApplied"]
        assert any(m.startswith("Pause (actionSeq 1)") for m in reasons), reasons
        assert any(m.startswith("Resume (actionSeq 2)") for m in reasons), reasons
        wait_for(lambda: describe()["Status"] == "recording", 60, "recording after the Resume")
        time.sleep(2)
        # Faster than forwarding: Refresh and Pause from two callers at once.
        burst = [_in_thread(lambda a=a: adapter.call(a, {"TaskID": task}))[0]
                 for a in ("Refresh", "Pause")]
        for thread in burst:
            thread.join(60)
        status = wait_for(lambda: (s := kube.status(task)).get("observedActionSeq") == 4 and s,
                          30, "the burst applied")
        assert status["phase"] == "paused", status
        # Each control once, in the order of its actionSeq (an Event may repeat when both the
        # fast path and the monitor forwarded it; the recorder applied it once, by seq).
        applied = {e["message"].split(" applied")[0] for e in kube.events(task)
                   if e["reason"] == "ActionApplied"}
        assert len(applied) == 4 and {"Pause (actionSeq 1)", "Resume (actionSeq 2)"} <= applied, applied
        assert {a.split(" ")[0] for a in applied if a.endswith(("3)", "4)"))} == {"Refresh", "Pause"}
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
    assert final["Result"]["ErrorCode"] == "", final
    [video] = final["Result"]["Videos"]
    # Recorded only between the Resume and the second Pause (the start was paused).
    assert 1.5 <= video["FileDuration"] <= 8, video

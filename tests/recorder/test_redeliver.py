"""A delivery target that stays down: the task ends with an error code that says where the
recording is kept (the segment store, not the pod's disk), and `webrecord deliver
--from-segments` completes it later from a fresh work dir."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from delivery.conftest import aws_env, moto_endpoint, s3_client  # noqa: F401, F811

from .media import assert_av
from .test_cli import _status, _wait_status
from .test_resume import CLI, Recorder

pytestmark = pytest.mark.browser


@pytest.mark.timeout(240)
def test_target_down_keeps_segments_and_deliver_completes_later(
        tmp_path, page_server, moto_endpoint, aws_env, no_leftover_processes):  # noqa: F811
    segstore = tmp_path / "segstore"
    bucket = f"later-{int(time.time())}"  # does not exist yet: every upload fails
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps({
        "taskId": "task-d", "createTime": int(time.time()),
        "spec": {"recordUrl": f"{page_server}/recorder_sound.html", "width": 640, "height": 360,
                 "storageType": "cfs",
                 "output": {"cos": {"bucket": bucket, "region": "us-east-1", "targetDir": "d"}}}}))
    (tmp_path / "token").write_text("s3cret\n")
    env = {"WEBRECORD_SEGMENT_DIR": str(segstore), "WEBRECORD_S3_ENDPOINT_URL": moto_endpoint,
           "WEBRECORD_S3_ADDRESSING_STYLE": "path", "WEBRECORD_DELIVERY_RETRY_S": "3",
           "WEBRECORD_DELIVERY_BACKOFF_S": "0.5", "WEBRECORD_S3_MAX_ATTEMPTS": "1",
           "WEBRECORD_SEGMENT_SECONDS": "2"}
    rec = Recorder(tmp_path, "work1", task_file, env)
    try:
        _wait_status(rec.status_file, "recording", 60)
        time.sleep(4)
        rec.control("Stop", 1)
        assert rec.proc.wait(90) == 0, rec.log.read_text()[-3000:]
    finally:
        rec.stop()
    final = _status(rec.status_file)
    result = final["result"]
    assert result["errorCode"] == "UploadFailed", result
    assert f"segments are kept in {segstore / 'task-d'}" in result["errorMessage"], result
    assert "gave up after" in result["errorMessage"], result

    s3_client(moto_endpoint).create_bucket(Bucket=bucket)  # the target is back
    fresh = tmp_path / "redeliver"  # the pod and its disk are gone: a new work dir
    fresh.mkdir()
    done = subprocess.run([*CLI, "deliver", "--task", str(task_file), "--work-dir", str(fresh),
                           "--from-segments"], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    body = json.loads(done.stdout)
    [video] = body["Videos"]
    assert body["ErrorCode"] == "" and video["FileDuration"] == pytest.approx(
        final["recordedSeconds"], abs=0.6), (body, final["recordedSeconds"])
    local = tmp_path / "delivered.mp4"
    s3_client(moto_endpoint).download_file(bucket, f"d/{video['Filename']}", str(local))
    assert_av(local, 640, 360)

"""A disk that fills: DiskFull with the local file kept, then `webrecord deliver` retries."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from webrecord.api.models import Phase
from webrecord.delivery.callback import verify_signature

from .conftest import CallbackServer, write_random
from .test_delivery_pipeline import make_status, make_task

MB = 1024 * 1024


class SmallDisk:
    """A 1 MB target: a real tmpfs when this process may mount, else a 1 MB file-size limit
    (RLIMIT_FSIZE) on the delivering process. Both make the kernel refuse the write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        # WEBRECORD_TEST_NO_MOUNT=1 exercises the fallback where mounting is not allowed.
        self.mounted = False
        if not os.environ.get("WEBRECORD_TEST_NO_MOUNT"):
            try:
                self.mounted = subprocess.run(
                    ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                    capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):  # no mount(8), or not allowed
                self.mounted = False
        self.full = True

    def grow(self) -> None:
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,size=32m", str(self.path)], check=True)
        self.full = False

    def command_prefix(self) -> list[str]:
        """How to start the delivering process: under the size limit in the fallback mode
        (Python ignores SIGXFSZ, so writes fail with EFBIG instead of killing it)."""
        if self.mounted or not self.full:
            return [sys.executable]
        limit = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, "
                 f"({MB}, {MB})); os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
        return [sys.executable, "-c", limit]

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "cfs")
    try:
        yield disk
    finally:
        disk.close()


async def run_cli(args: list[str], env: dict[str, str], prefix: list[str]
                  ) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *prefix, "-m", "webrecord.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(120)
async def test_disk_full_then_cli_retry_succeeds(
    tmp_path: Path, small_disk: SmallDisk, callback_server: CallbackServer
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    video = write_random(work / "final.mp4", 3 * MB)
    task = make_task("task-9", callback=callback_server.url)
    (tmp_path / "task.json").write_text(json.dumps(task.wire()))
    status = make_status("task-9")
    status.status = Phase.FINISHED
    (work / "status.json").write_text(json.dumps(status.wire()))
    env = dict(os.environ, WEBRECORD_OUTPUT_DIR=str(small_disk.path),
               WEBRECORD_CALLBACK_SECRET="k", WEBRECORD_CALLBACK_BACKOFF_S="0.05")
    args = ["deliver", "--task", str(tmp_path / "task.json"), "--work-dir", str(work),
            "--video", f"{video}:12.5"]

    code, out, err = await run_cli(args, env, small_disk.command_prefix())
    assert code == 1, err
    body = json.loads(out)
    assert body["ErrorCode"] == "DiskFull"
    assert f"copy to {small_disk.path} failed" in body["ErrorMessage"]
    assert f"local file kept at {video}" in body["ErrorMessage"]
    assert video.stat().st_size == 3 * MB
    assert list(small_disk.path.rglob("*.*")) == []  # no partial file under any name
    saved = json.loads((work / "status.json").read_text())
    assert saved["status"] == "finished" and saved["result"]["errorCode"] == "DiskFull"
    [told] = callback_server.received  # the caller hears about the failure too
    assert json.loads(told.body)["Result"]["ErrorCode"] == "DiskFull"

    small_disk.grow()
    code, out, err = await run_cli(args[:-2], env, small_disk.command_prefix())  # videos from manifest
    assert code == 0, out + err
    body = json.loads(out)
    assert body["ErrorCode"] == ""
    final = small_disk.path / "task-9" / f"{status.stop_time}.mp4"
    assert final.read_bytes() == video.read_bytes()
    assert body["Videos"] == [{"Filename": final.name, "FileSize": 3 * MB,
                               "FileDuration": 12.5, "FileURL": final.resolve().as_uri()}]
    saved = json.loads((work / "status.json").read_text())
    assert saved["status"] == "finished" and "errorCode" not in saved["result"]
    told = callback_server.received[-1]
    assert verify_signature("k", told.body, told.headers)
    assert json.loads(told.body)["Result"]["ErrorCode"] == ""


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "task.json").write_text(json.dumps({"taskId": "x", "spec": {}}))
    proc = subprocess.run([sys.executable, "-m", "webrecord.cli", "deliver", "--task",
                           str(tmp_path / "task.json"), "--work-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "spec.recordUrl: Field required" in proc.stderr or "recordUrl" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "task.json").write_text(json.dumps(make_task("x").wire()))
    proc = subprocess.run([sys.executable, "-m", "webrecord.cli", "deliver", "--task",
                           str(tmp_path / "task.json"), "--work-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no videos" in proc.stderr


@pytest.mark.timeout(120)
def test_upload_retries_until_the_target_comes_back(tmp_path: Path, moto_endpoint: str,
                                                    bucket: str) -> None:
    """The bucket's endpoint is down for ~6 s (a port nobody listens on, then a forwarder to
    moto): delivery keeps trying with backoff and succeeds once it is back."""
    import socket
    import threading

    from webrecord.delivery.pipeline import LocalVideo, deliver

    from .conftest import fast_settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    video = tmp_path / "v.mp4"
    write_random(video, 256 * 1024)
    task = make_task(output={"cos": {"bucket": bucket, "region": "us-east-1"}})
    settings = fast_settings(s3_endpoint_url=f"http://127.0.0.1:{port}", delivery_retry_s=60,
                             delivery_backoff_s=0.5, delivery_backoff_max_s=2)
    upstream = moto_endpoint.rsplit(":", 1)[1]

    def come_back() -> None:  # after 6 s, a TCP forwarder on the dead port
        import time
        time.sleep(6)
        server = socket.create_server(("127.0.0.1", port))
        server.settimeout(60)
        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", int(upstream)))
            threading.Thread(target=pipe, args=(client, up), daemon=True).start()
            threading.Thread(target=pipe, args=(up, client), daemon=True).start()

    threading.Thread(target=come_back, daemon=True).start()

    async def on_phase(_: Phase) -> None:
        pass

    import time
    began = time.monotonic()
    result = asyncio.run(deliver(task, [LocalVideo(video, 1.0, "mp4")], make_status(), on_phase,
                                 settings))
    took = time.monotonic() - began
    assert result.error_code is None, result
    assert took >= 5, took  # it did wait for the target
    assert result.videos[0].file_size == 256 * 1024

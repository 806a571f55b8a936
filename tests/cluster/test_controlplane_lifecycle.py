"""The control-plane fixture leaves no process behind: on a clean stop, when the code using it
fails, and when the apiserver itself fails to start."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from controlplane.controlplane import ControlPlane, ControlPlaneError

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def _processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line mentions `text` (our temp dir is in each one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_ends_every_process(control_plane_assets):
    plane = ControlPlane(control_plane_assets).start()
    workdir = str(plane.workdir)
    try:
        pids = plane.pids
        expected = 3 if plane.has_controller_manager else 2
        assert len(pids) == expected
        assert sorted(_processes_mentioning(workdir)) == sorted(pids)
        assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
    finally:
        plane.stop()
    assert _processes_mentioning(workdir) == []
    assert not any(_alive(pid) for pid in pids)
    assert not Path(workdir).exists()


def test_failure_inside_the_block_still_stops_everything(control_plane_assets):
    with pytest.raises(RuntimeError, match="test body failed"):
        with ControlPlane(control_plane_assets, controller_manager=False) as plane:
            workdir, pids = str(plane.workdir), plane.pids
            assert len(pids) == 2
            raise RuntimeError("test body failed")
    assert _processes_mentioning(workdir) == []
    assert not any(_alive(pid) for pid in pids)


def test_apiserver_that_cannot_start_reports_its_log_and_leaves_nothing(control_plane_assets):
    plane = ControlPlane(
        control_plane_assets, controller_manager=False, extra_apiserver_args=["--no-such-flag=1"]
    )
    workdir = str(plane.workdir)
    with pytest.raises(ControlPlaneError) as error:
        plane.start()
    message = str(error.value)
    assert "kube-apiserver exited" in message
    assert "no-such-flag" in message  # the tail of the apiserver's own log
    assert _processes_mentioning(workdir) == []


KILLED_RUNNER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from controlplane.controlplane import ControlPlane
plane = ControlPlane(Path(sys.argv[2]), controller_manager=False).start()
print(plane.workdir, *plane.pids, flush=True)
time.sleep(600)
"""


def test_killed_test_process_takes_its_control_plane_along(control_plane_assets, tmp_path):
    """SIGKILL leaves no chance for teardown code: the kernel (PR_SET_PDEATHSIG) must do it."""
    tests_dir = Path(__file__).resolve().parents[1]
    runner = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUNNER, str(tests_dir), str(control_plane_assets)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "runner.log").open("w"),
        text=True,
    )
    try:
        line = runner.stdout.readline().split()
        assert line, (tmp_path / "runner.log").read_text()[-3000:]
        workdir, pids = line[0], [int(pid) for pid in line[1:]]
        assert sorted(_processes_mentioning(workdir)) == sorted(pids)
    finally:
        runner.kill()
        runner.wait()
    try:
        deadline = time.monotonic() + 15
        while _processes_mentioning(workdir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_mentioning(workdir) == []
    finally:
        # The killed runner could not remove its temp dir; its processes are gone, so we can.
        shutil.rmtree(workdir, ignore_errors=True)


def test_start_moves_on_when_a_port_is_taken(control_plane_assets, monkeypatch):
    """Another process grabbing the probed port before etcd binds it costs one retry, no failure."""
    import controlplane.controlplane as module

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        handed_out = iter([taken])
        real_free_port = module.free_port
        monkeypatch.setattr(module, "free_port", lambda: next(handed_out, None) or real_free_port())
        with ControlPlane(control_plane_assets, controller_manager=False) as plane:
            assert plane.etcd_url != f"http://127.0.0.1:{taken}"
            assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
            assert "address already in use" in (plane.log_dir / "etcd.log").read_text()

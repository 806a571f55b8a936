"""The recorder image on the real Docker engine, run the way the recorder pod runs it.

uid 1000, read-only root, tmpfs /tmp and /data, all capabilities dropped, no new privileges,
a memory-backed /dev/shm: `webrecord record --demo` must write a playable mp4 (h264 + aac, the
asked duration). Without libatomic1 in the image Playwright's node cannot start and this fails
("Connection closed while reading from the driver"). PID 1 must be tini, and the image at most
1.4 GB.

dockerd: tests/node/docker.sh up for this module, down after it only if this module started it.
The image: the engine's own when it has it, else loaded from the tarball of tests/node/image.sh,
else built by image.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# func_only: a cold machine builds the image in the fixture (image.sh, minutes, under its own
# subprocess timeout); the 600 s are for the tests themselves.
pytestmark = [pytest.mark.timeout(600, func_only=True)]

HERE = Path(__file__).parent
DOCKER = "/usr/bin/docker"  # Debian's client; a newer /usr/local/bin/docker may be first on PATH
IMAGE = os.environ.get("WEBRECORD_IMAGE", "webrecord/recorder:0.1.0")
TARBALL = (Path(os.environ.get("WEBRECORD_CACHE", Path.home() / ".cache" / "webrecord"))
           / "node" / "images" / "recorder.tar")
SECCOMP_PROFILE = HERE.parents[1] / "charts" / "webrecord" / "files" / "chromium-seccomp.json"
MAX_SIZE = 1_400_000_000  # bytes: 1.4 GB as `docker images` counts
DURATION = 5


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([DOCKER, *args], check=False, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(HERE / name), *args], check=False, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    started = script("docker.sh", "status", timeout=60).returncode != 0
    up = script("docker.sh", "up", timeout=300)
    assert up.returncode == 0, f"tests/node/docker.sh up failed:\n{up.stderr[-3000:]}"
    try:
        yield
    finally:
        if started:
            script("docker.sh", "down", timeout=120)


@pytest.fixture(scope="module")
def image(engine: None) -> str:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        if not TARBALL.is_file():
            # Builds and saves it (the engine is ours: image.sh leaves it running).
            built = script("image.sh", timeout=2400)
            assert built.returncode == 0, f"tests/node/image.sh failed:\n{built.stderr[-3000:]}"
        docker("load", "-i", str(TARBALL), timeout=600)
    return IMAGE


@pytest.fixture
def out_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="wr-image-test-"))
    os.chown(path, 1000, 1000)  # the container's user writes here
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pod_like_run(image: str, name: str, out: Path, *args: str) -> list[str]:
    """`docker run` with the recorder pod's security context and volumes: the chart's seccomp
    profile and Chromium's own sandbox on (uid 1000: the recorder's default)."""
    return [
        "run", "-d", "--name", name,
        "--user", "1000:1000", "--read-only",
        "--tmpfs", "/tmp:exec,mode=1777", "--tmpfs", "/data:exec,uid=1000,gid=1000",
        "--shm-size", "256m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--security-opt", f"seccomp={SECCOMP_PROFILE}",
        "-v", f"{out}:/out",
        image, *args,
    ]


# PID 1's command line, then the names of its children (no ps in the image).
CHILDREN_OF_PID_1 = (
    "tr '\\0' ' ' < /proc/1/cmdline; echo; "
    "for s in /proc/[0-9]*/status; do awk '/^Name:/ {n = $2} /^PPid:/ && $2 == 1 {print n}' $s; done"
)


COMMAND_LINES = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def test_image_records_demo_as_the_pod_runs_it_with_tini_as_pid_1(image: str, out_dir: Path) -> None:
    name = f"wr-image-test-{uuid.uuid4().hex[:8]}"
    docker(*pod_like_run(image, name, out_dir, "record", "--demo", "--duration", str(DURATION),
                         "-q", "-o", "/out/demo.mp4"))
    try:
        # PID 1 while the recording runs: tini, with webrecord as its child; and every
        # command line once the capture runs (the grabber starts with it).
        pid1, children, commands = "", "", []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not pid1:
                probe = docker("exec", name, "sh", "-c", CHILDREN_OF_PID_1, check=False, timeout=30)
                if probe.returncode == 0:
                    pid1, _, children = probe.stdout.partition("\n")
            listing = docker("exec", name, "sh", "-c", COMMAND_LINES, check=False, timeout=30)
            commands = listing.stdout.splitlines()
            if pid1 and any("framegrab" in line for line in commands):
                break
            if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
                break
            time.sleep(0.5)
        code = docker("wait", name, timeout=300).stdout.strip()
        logs = docker("logs", name, check=False, timeout=60)
        assert code == "0", f"recording failed ({code}):\n{logs.stdout[-3000:]}\n{logs.stderr[-5000:]}"
    finally:
        docker("rm", "-f", name, check=False, timeout=60)

    # The display as the pod gets it (user 1000, read-only root, no capabilities): Xorg's
    # dummy driver at the capture's rate with the frame-locked grabber, not the Xvfb fallback.
    assert any(line.startswith("/usr/lib/xorg/Xorg ") for line in commands), commands
    assert any("webrecord.recorder.framegrab" in line for line in commands), commands
    assert "Xorg did not start" not in logs.stderr, logs.stderr[-3000:]
    assert pid1.split()[:3] == ["tini", "--", "webrecord"], f"PID 1 is {pid1!r}"
    assert "webrecord" in children.split(), f"children of PID 1: {children!r}"

    video = out_dir / "demo.mp4"
    assert video.is_file() and video.stat().st_size > 0
    info = ffprobe(video)
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert codecs == {"video": "h264", "audio": "aac"}, codecs
    duration = float(info["format"]["duration"])
    assert abs(duration - DURATION) <= 1.0, f"duration {duration} s, asked {DURATION} s"


def test_image_size(image: str) -> None:
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    layers = docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    print(f"\n{image}: {size / 1e9:.3f} GB ({size} bytes)\n{layers}")
    assert size <= MAX_SIZE, f"{image} is {size / 1e9:.2f} GB, more than {MAX_SIZE / 1e9} GB"

"""A disk that fills mid-recording keeps every recorded second (the disk reserve closes the
segment that hit the limit) and delivers it with DiskFull (the existing test in test_output covers a disk full from the first second)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .media import decode_errors, frame_codes, probe

pytestmark = pytest.mark.browser


@pytest.mark.timeout(120)
def test_disk_full_keeps_every_recorded_second(tmp_path, page_server):
    """A tmpfs holds the work dir; once three 1 s segments are closed (not after a fixed time:
    a busy machine may take that long to start) a filler takes all its free space. The disk
    reserve gives the room back: the segment that hit the limit is closed and kept beside the
    closed 1 s segments, and the video (packaged outside the full disk) holds every one of them
    with no cut, with DiskFull and where the segments are in the result."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is required for this test")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = tmp_path / "out.mp4"
    kept_copy = tmp_path / "kept"
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = ('mount -t tmpfs -o size=64m tmpfs "$1" && d="$1" && shift && '
              '{ (i=0; until [ -e "$d/work/segments/seg_0003.ts" ] || [ $i -ge 300 ]; do '
                  'sleep 0.2; i=$((i+1)); done; dd if=/dev/zero of="$d/filler" bs=1M) '
                  '>/dev/null 2>&1 & "$@"; code=$?; '
              'cp -r "$d/work/segments" "$KEPT"; exit $code; }')
    done = subprocess.run(
        ["unshare", "--mount", *userns, "sh", "-c", script, "sh", str(disk),
         sys.executable, "-m", "webrecord.cli", "record", f"{page_server}/recorder_framecode.html",
         "-o", str(out), "--work-dir", str(disk / "work"), "--width", "640", "--height", "360",
         "--duration", "60", "-q"],
        capture_output=True, text=True, timeout=100,
        env={**os.environ, "WEBRECORD_SEGMENT_SECONDS": "1", "KEPT": str(kept_copy)})
    record = json.loads(done.stdout.strip().splitlines()[-1])
    print(record)
    assert done.returncode == 1 and record["errorCode"] == "DiskFull", done.stderr[-2000:]
    kept = sorted(k for k in kept_copy.glob("seg_*.ts") if k.stat().st_size > 0)
    assert len(kept) >= 3 and f"{len(kept)} segments kept in" in record["errorMessage"], (kept, record)
    assert "no disk reserve" not in record["errorMessage"], record
    # Every kept segment is in the video, the one that hit the limit too (it has frames).
    last = probe(kept[-1])
    assert last["duration"] > 0.05, last
    video = probe(out)
    assert video["duration"] == pytest.approx(record["videos"][0]["fileDuration"], abs=0.2)
    in_segments = sum(probe(k)["duration"] for k in kept)
    assert video["duration"] == pytest.approx(in_segments, abs=0.3), (video, in_segments)
    assert not (errors := decode_errors(out)), errors[-500:]
    # No cut inside: the page clock advances with the video's time from frame to frame.
    pts, clock = frame_codes(out)
    steps = (clock[1:] - clock[:-1]) - (pts[1:] - pts[:-1])
    assert steps.max() < 0.15, f"page time missing from the video: {steps.max():.2f} s"
    assert video["duration"] >= 5.0, video  # ~10 s after launch, minus the start-up

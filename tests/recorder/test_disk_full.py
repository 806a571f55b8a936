"""A disk that fills mid-recording keeps the closed segments and delivers what was recorded
with DiskFull (the existing test in test_output covers a disk full from the first second)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .media import probe

pytestmark = pytest.mark.browser


@pytest.mark.timeout(120)
def test_disk_full_keeps_closed_segments_and_delivers_them(tmp_path, page_server):
    """A tmpfs holds the work dir; after ~10 s a filler takes all its free space. The segment
    that hit the limit is dropped, the closed 1 s segments stay, and the result says DiskFull
    and where they are (packaged into a video too when there is room, not here)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is required for this test")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = tmp_path / "out.mp4"
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = ('mount -t tmpfs -o size=64m tmpfs "$1" && d="$1" && shift && '
              '{ (sleep 10; dd if=/dev/zero of="$d/filler" bs=1M 2>/dev/null) & "$@"; code=$?; '
              'ls "$d/work/segments" > "$LISTING"; exit $code; }')
    done = subprocess.run(
        ["unshare", "--mount", *userns, "sh", "-c", script, "sh", str(disk),
         sys.executable, "-m", "webrecord.cli", "record", f"{page_server}/recorder_framecode.html",
         "-o", str(out), "--work-dir", str(disk / "work"), "--width", "640", "--height", "360",
         "--duration", "60", "-q"],
        capture_output=True, text=True, timeout=100,
        env={**os.environ, "WEBRECORD_SEGMENT_SECONDS": "1",
             "LISTING": str(tmp_path / "listing.txt")})
    record = json.loads(done.stdout.strip().splitlines()[-1])
    print(record)
    assert done.returncode == 1 and record["errorCode"] == "DiskFull", done.stderr[-2000:]
    assert "closed segments kept in" in record["errorMessage"], record
    kept = (tmp_path / "listing.txt").read_text().split()
    assert len(kept) >= 2 and f"{len(kept)} closed segments" in record["errorMessage"], (kept, record)
    if record["videos"]:  # packaged beside the full disk: what was recorded, playable
        assert probe(out)["duration"] == pytest.approx(record["videos"][0]["fileDuration"], abs=0.2)
        assert record["videos"][0]["fileDuration"] >= 1.0

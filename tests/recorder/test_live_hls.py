"""Live HLS (output.liveHls): while a task records, its closed segments and a growing EVENT
playlist appear on the task's storage target (the real S3 endpoint on loopback, or the
filesystem target); Stop ends the playlist with #EXT-X-ENDLIST and it covers the recording.
Real recorder, Chromium, ffmpeg and S3 server; the publisher's retry against a real bucket."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

# The moto S3 server fixtures of the delivery tests (tests/ is on sys.path).
from delivery.conftest import aws_env, bucket, moto_endpoint, s3_client  # noqa: F401, F811

from webrecord.api.models import RecordingTask
from webrecord.delivery.livetarget import DirLiveTarget, S3LiveTarget
from webrecord.recorder.livehls import LiveHls, encrypt_segment
from webrecord.recorder.settings import RecorderSettings
from webrecord.storage.s3 import Bucket
from webrecord.storage.settings import StorageSettings

from .media import assert_av, frame_codes
from .test_cli import _status, _wait_status
from .test_resume import Recorder

KEY = "00112233445566778899aabbccddeeff"


def parse(text: str) -> tuple[list[tuple[float, str]], int, bool]:
    """(EXTINF seconds, segment name) entries, discontinuities, and whether it ended."""
    entries, extinf, jumps = [], None, 0
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            extinf = float(line[8:].split(",")[0])
        elif line == "#EXT-X-DISCONTINUITY":
            jumps += 1
        elif line and not line.startswith("#"):
            entries.append((extinf, line))
    return entries, jumps, "#EXT-X-ENDLIST" in text


def decrypt(data: bytes, sequence: int) -> bytes:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    dec = Cipher(algorithms.AES(bytes.fromhex(KEY)), modes.CBC(sequence.to_bytes(16, "big"))
                 ).decryptor()
    unpad = padding.PKCS7(128).unpadder()
    return unpad.update(dec.update(data) + dec.finalize()) + unpad.finalize()


def ts_streams(path: Path) -> dict[str, str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,codec_name", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {s["codec_type"]: s["codec_name"] for s in json.loads(out.stdout)["streams"]}


class S3Side:
    """The live files in the bucket (what a player would fetch over HTTP)."""

    def __init__(self, endpoint: str, bucket_name: str, prefix: str, stem: str) -> None:
        self.client, self.bucket, self.prefix = s3_client(endpoint), bucket_name, prefix
        self.playlist_name = f"{stem}.m3u8"

    def read(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket,
                                          Key=f"{self.prefix}/{name}")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None


class DirSide:
    def __init__(self, directory: Path, stem: str) -> None:
        self.directory = directory
        self.playlist_name = f"{stem}.m3u8"

    def read(self, name: str) -> bytes | None:
        path = self.directory / name
        return path.read_bytes() if path.is_file() else None


def fetch_all(side: S3Side | DirSide, dest: Path, encrypted: bool,
              text: str) -> list[Path]:
    """Download every segment the playlist `text` names into `dest` (decrypted when the task
    is encrypted); each must already exist on the target."""
    dest.mkdir(parents=True, exist_ok=True)
    local = []
    for seq, (_, name) in enumerate(parse(text)[0]):
        data = side.read(name)
        assert data is not None, f"the playlist names {name}, which is not on the target"
        if encrypted:
            assert data[:1] != b"\x47" or data[188:189] != b"\x47", "segment not encrypted"
            data = decrypt(data, seq)
        (dest / name).write_bytes(data)
        local.append(dest / name)
    return local


def live_scenario(tmp_path: Path, page_server: str, task_output: dict, env: dict[str, str],
                  side_for: callable, encrypted: bool) -> tuple[dict, str, Path]:
    """Record the frame-code page with 1 s segments; while recording, the live playlist
    lists >= 2 playable segments and no ENDLIST; pause, resume, stop; returns the final
    status, the final live playlist and the local copies of its segments."""
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps({
        "taskId": "task-live", "createTime": int(time.time()),
        "spec": {"recordUrl": f"{page_server}/recorder_framecode.html", "width": 640,
                 "height": 360, "output": task_output}}))
    (tmp_path / "token").write_text("s3cret\n")
    env = {**env, "WEBRECORD_SEGMENT_SECONDS": "1", "WEBRECORD_KEYINT_SECONDS": "1"}
    rec = Recorder(tmp_path, "work", task_file, env)
    try:
        st = _wait_status(rec.status_file, "recording", 60)
        url = st["liveHls"]["url"]
        side = side_for(url)
        deadline = time.monotonic() + 40
        while True:  # a player polling the playlist while the task records
            assert time.monotonic() < deadline, _status(rec.status_file)
            raw = side.read(side.playlist_name)
            if raw is not None and len(parse(raw.decode())[0]) >= 2:
                break
            time.sleep(0.2)
        text = raw.decode()
        entries, jumps, ended = parse(text)
        assert not ended and jumps == 0, text
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text, text
        assert ("#EXT-X-KEY:METHOD=AES-128" in text) == encrypted, text
        for seg in fetch_all(side, tmp_path / "mid", encrypted, text):
            assert ts_streams(seg) == {"video": "h264", "audio": "aac"}, seg
        st = _status(rec.status_file)
        assert st["status"] == "recording" and st["liveHls"]["url"] == url, st
        assert not st["liveHls"]["ended"], st

        assert rec.control("Pause", 1)["status"] == "paused"
        time.sleep(1.5)
        assert rec.control("Resume", 2)["status"] == "recording"
        time.sleep(3)
        assert rec.control("Stop", 3)["status"] == "canceled"
        assert rec.proc.wait(120) == 0, rec.log.read_text()[-3000:]
    finally:
        rec.stop()
    final = _status(rec.status_file)
    assert final["status"] == "finished" and "errorCode" not in final["result"], final
    assert final["liveHls"]["ended"] and final["liveHls"]["pending"] == 0, final
    text = side.read(side.playlist_name).decode()
    print("final live playlist:\n" + text, "status:", final["liveHls"])
    entries, jumps, ended = parse(text)
    assert ended and final["liveHls"]["segments"] == len(entries), (final, text)
    assert jumps == 1, text  # the pause, once
    local = fetch_all(side, tmp_path / "final", encrypted, text)
    return final, text, local[0].parent


def check_covers_the_recording(final: dict, text: str, local_dir: Path) -> None:
    """The ended live playlist, read by ffmpeg's HLS demuxer, is the whole recording: its
    length is the recorded time and the page clock runs on through it, jumping only at the
    pause."""
    entries, _, _ = parse(text)
    listed = sum(d for d, _ in entries)
    assert listed == pytest.approx(final["recordedSeconds"], abs=0.6), (listed, final)
    plain = "\n".join(line for line in text.splitlines() if not line.startswith("#EXT-X-KEY"))
    (local_dir / "play.m3u8").write_text(plain + "\n")
    info = assert_av(local_dir / "play.m3u8", 640, 360)
    assert info["duration"] == pytest.approx(listed, abs=0.6), (info, listed)
    video = final["result"]["videos"][0]
    assert video["fileDuration"] == pytest.approx(listed, abs=0.6), (video, listed)
    _, clock = frame_codes(local_dir / "play.m3u8")
    steps = np.diff(clock)
    assert (steps >= -0.02).all(), "the page clock runs backwards in the live playlist"
    assert (steps > 1.0).sum() == 1, np.round(steps[steps > 0.2], 2)  # the pause only


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_live_hls_grows_on_s3_while_recording(tmp_path, page_server, moto_endpoint, bucket,
                                               no_leftover_processes):
    output = {"cos": {"bucket": bucket, "targetDir": "rooms/1", "targetName": "room"},
              "video": {"muxer": "hls"}, "liveHls": True}
    env = {"WEBRECORD_S3_ENDPOINT_URL": moto_endpoint}

    def side_for(url: str) -> S3Side:
        assert url == f"{moto_endpoint}/{bucket}/rooms/1/room_live.m3u8", url
        return S3Side(moto_endpoint, bucket, "rooms/1", "room_live")

    final, text, local = live_scenario(tmp_path, page_server, output, env, side_for, False)
    check_covers_the_recording(final, text, local)
    # The final HLS is delivered as before, beside the live one, under its own name.
    keys = {o["Key"] for o in s3_client(moto_endpoint).list_objects_v2(
        Bucket=bucket, Prefix="rooms/1/")["Contents"]}
    assert "rooms/1/room.m3u8" in keys and "rooms/1/room_live.m3u8" in keys, keys
    assert final["result"]["videos"][0]["fileURL"].endswith("/rooms/1/room.m3u8"), final
    head = s3_client(moto_endpoint).head_object(Bucket=bucket, Key="rooms/1/room_live.m3u8")
    assert head["CacheControl"] == "no-cache" and head["ContentType"].endswith("mpegurl"), head


@pytest.mark.browser
@pytest.mark.timeout(240)
def test_encrypted_live_hls_on_the_filesystem_target(tmp_path, page_server,
                                                     no_leftover_processes):
    out = tmp_path / "out"
    output = {"video": {"muxer": "hls", "encryptKey": KEY}, "liveHls": True}
    env = {"WEBRECORD_OUTPUT_DIR": str(out), "WEBRECORD_OUTPUT_URL_BASE": "https://media.test/v"}

    def side_for(url: str) -> DirSide:
        assert url == "https://media.test/v/task-live/live/live.m3u8", url
        return DirSide(out / "task-live" / "live", "live")

    final, text, local = live_scenario(tmp_path, page_server, output, env, side_for, True)
    assert '#EXT-X-KEY:METHOD=AES-128,URI="live.key"' in text, text
    assert not list(out.rglob("*.key")), "the key is never published"
    check_covers_the_recording(final, text, local)
    # A real player reads the encrypted playlist as published (the key served beside it
    # here; IV = media sequence number, the HLS default).
    played = tmp_path / "player"
    shutil.copytree(out / "task-live" / "live", played)
    (played / "live.key").write_bytes(bytes.fromhex(KEY))
    out_ = subprocess.run(["ffprobe", "-v", "error", "-allowed_extensions", "ALL",
                           "-show_entries", "format=duration", "-of", "json",
                           str(played / "live.m3u8")], capture_output=True, text=True,
                          timeout=120)
    assert out_.returncode == 0, out_.stderr
    duration = float(json.loads(out_.stdout)["format"]["duration"])
    assert duration == pytest.approx(final["recordedSeconds"], abs=0.6)


# ---------------------------------------------------------------- the publisher alone


def make_segments(directory: Path) -> list[Path]:
    """Three 1 s MPEG-TS segments cut from one stream, then one from a later time (a pause)."""
    directory.mkdir(parents=True, exist_ok=True)
    lavfi = ["-f", "lavfi", "-i", "testsrc=size=160x90:rate=10", "-f", "lavfi", "-i",
             "sine=frequency=440", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
             "-pix_fmt", "yuv420p", "-c:a", "aac"]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *lavfi, "-t", "3",
                    "-f", "segment", "-segment_time", "1", "-reset_timestamps", "0",
                    "-segment_format", "mpegts", str(directory / "seg_%04d.ts")],
                   check=True, timeout=60)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *lavfi, "-t", "1",
                    "-output_ts_offset", "60", "-f", "mpegts", str(directory / "seg_0003.ts")],
                   check=True, timeout=60)
    return sorted(directory.glob("seg_*.ts"))


async def test_publisher_retries_until_the_bucket_exists_and_keeps_the_order(
        tmp_path, moto_endpoint, aws_env, monkeypatch):
    name = f"wr-live-late-{int(time.time() * 1000)}"  # created only later: uploads fail first
    task = RecordingTask.model_validate({"taskId": "t-pub", "spec": {
        "recordUrl": "http://page.test/", "output": {"video": {"muxer": "hls"}, "liveHls": True}}})
    settings = RecorderSettings(live_hls_retry_min_seconds=0.1, live_hls_retry_max_seconds=0.3)
    target = S3LiveTarget(Bucket.for_output(name, "us-east-1", StorageSettings(
        s3_endpoint_url=moto_endpoint, s3_max_attempts=1)), "p", "live", owner="t-pub")
    live = LiveHls(task, target, "live", tmp_path / "work", settings, target_duration=2)
    live.start()
    for seg in make_segments(tmp_path / "segs"):
        live.put(seg)  # returns at once, the bucket being missing or not
    deadline = time.monotonic() + 20
    while "retrying" not in (live.status().message or ""):
        assert time.monotonic() < deadline, live.status()
        await asyncio.sleep(0.05)
    assert live.status().pending == 4 and live.status().segments == 0, live.status()
    s3_client(moto_endpoint).create_bucket(Bucket=name)
    assert await live.finish(ended=True)
    st = live.status()
    assert (st.segments, st.pending, st.ended, st.message) == (4, 0, True, None), st
    text = s3_client(moto_endpoint).get_object(Bucket=name, Key="p/live.m3u8")["Body"].read()
    entries, jumps, ended = parse(text.decode())
    assert [n for _, n in entries] == [f"live_{i:05d}.ts" for i in range(4)] and ended
    assert jumps == 1 and text.decode().index("#EXT-X-DISCONTINUITY") > text.decode().index(
        "live_00002.ts"), text  # before the segment after the jump
    assert sum(d for d, _ in entries) == pytest.approx(4.0, abs=0.3), entries


def test_encrypt_segment_is_hls_aes128(tmp_path):
    src = make_segments(tmp_path / "segs")[0]
    encrypt_segment(src, tmp_path / "enc.ts", bytes.fromhex(KEY), 7)
    data = (tmp_path / "enc.ts").read_bytes()
    assert len(data) % 16 == 0 and data != src.read_bytes()
    assert decrypt(data, 7) == src.read_bytes()


class WatchedDir(DirLiveTarget):
    """The real filesystem target, remembering each playlist it published (what players saw)."""

    seen: list[str]

    def put(self, path: Path, name: str, playlist: bool = False) -> None:
        super().put(path, name, playlist)
        if playlist:
            self.seen.append(path.read_text())


async def test_a_resumed_task_republishes_without_shrinking_the_playlist(tmp_path):
    # Recorder 1 publishes three segments and is replaced (no ENDLIST); recorder 2 re-publishes
    # the stored ones quietly (same names and bytes) and goes on with its own.
    task = RecordingTask.model_validate({"taskId": "t-res", "spec": {
        "recordUrl": "http://page.test/", "output": {"video": {"muxer": "hls", "encryptKey": KEY},
                                                     "liveHls": True}}})
    segs = make_segments(tmp_path / "segs")
    root = tmp_path / "out"
    target = WatchedDir(root, root / "live", "live", None)
    target.seen = []
    first = LiveHls(task, target, "live", tmp_path / "w1", RecorderSettings(), 2)
    first.start()
    for seg in segs[:3]:
        first.put(seg)
    assert await first.finish(ended=False)
    published = {p.name: p.read_bytes() for p in (root / "live").glob("*.ts")}
    assert len(published) == 3 and "#EXT-X-ENDLIST" not in target.seen[-1]

    second = LiveHls(task, target, "live", tmp_path / "w2", RecorderSettings(), 2)
    second.start()
    for seg in segs[:3]:
        second.put(seg, quiet=True)
    second.put(segs[3])
    assert await second.finish(ended=True)
    counts = [len(parse(text)[0]) for text in target.seen]
    assert counts == [1, 2, 3, 4, 4], counts  # never fewer than a player already saw
    for before, after in zip(target.seen, target.seen[1:]):  # EVENT: lines are only appended
        assert after.startswith(before), (before, after)
    for name, data in published.items():  # the same bytes: the IV is the sequence number
        assert (root / "live" / name).read_bytes() == data, name
    entries, jumps, ended = parse(target.seen[-1])
    assert ended and jumps == 1 and len(entries) == 4

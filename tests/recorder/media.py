"""Checks on recorded files with ffprobe/ffmpeg (real tools, no mocks)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "format=duration,format_name:stream=codec_type,codec_name,width,height,pix_fmt",
         "-of", "json", str(path)], capture_output=True, text=True, check=True, timeout=60).stdout
    info = json.loads(out)
    streams = {s["codec_type"]: s for s in info.get("streams", [])}
    return {"duration": float(info["format"]["duration"]), "format": info["format"]["format_name"],
            "video": streams.get("video"), "audio": streams.get("audio")}


def decode_errors(path: Path, timeout: float = 120) -> str:
    """What ffmpeg says while decoding every frame (what a player does); empty when clean.
    Frames keep the file's time base: by default ffmpeg 5.1 hands the null muxer timestamps in
    1/fps ticks, and two neighbours that sit half a tick off that grid (video starting 0.05 s
    after the audio, an 11 us step at a segment join) round to one tick and are reported as
    non-increasing DTS, though the file's own timestamps increase."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path),
                           "-enc_time_base:v", "-1", "-f", "null", "-"],
                          capture_output=True, text=True, timeout=timeout)
    return done.stderr.strip() if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"


def stream_ends(path: Path) -> dict[str, float]:
    """Where each stream ends (start + duration, seconds), by codec type."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,start_time,duration",
         "-of", "json", str(path)], capture_output=True, text=True, check=True, timeout=60).stdout
    return {s["codec_type"]: float(s["start_time"]) + float(s["duration"])
            for s in json.loads(out)["streams"]}


def assert_av(path: Path, width: int, height: int) -> dict:
    """H.264 video of exactly width x height (yuv420p) and AAC audio."""
    info = probe(path)
    assert info["video"] is not None and info["video"]["codec_name"] == "h264", info
    assert (info["video"]["width"], info["video"]["height"]) == (width, height), info
    assert info["video"]["pix_fmt"] == "yuv420p", info
    assert info["audio"] is not None and info["audio"]["codec_name"] == "aac", info
    return info


def mean_volume_db(path: Path) -> float:
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a",
                          "-af", "volumedetect", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60).stderr
    match = re.search(r"mean_volume: (-?[\d.]+|-inf) dB", err)
    assert match, err[-2000:]
    return float(match.group(1))


def frame_rgb(path: Path, at: float) -> np.ndarray:
    """One decoded frame as an HxWx3 uint8 array."""
    info = probe(path)
    w, h = info["video"]["width"], info["video"]["height"]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{at}", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8)[: w * h * 3].reshape(h, w, 3)


def mp4_top_level_boxes(path: Path) -> list[str]:
    """Box types in file order (faststart puts moov before mdat)."""
    boxes = []
    with open(path, "rb") as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                return boxes
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(f.read(8), "big")
                f.seek(size - 16, 1)
            else:
                f.seek(size - 8, 1)
            boxes.append(kind)
            if size == 0:
                return boxes


def av_onsets(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) where the picture turns white and where a beep starts (recorder_sync.html)."""
    info = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,start_time", "-of", "json",
         str(path)], capture_output=True, text=True, check=True, timeout=60).stdout)
    starts = {s["codec_type"]: float(s["start_time"]) for s in info["streams"]}
    pts_out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                              "frame=pts_time", "-of", "csv=p=0", str(path)],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    pts = np.array([float(x.strip(",")) for x in pts_out.split()])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-vf",
                          "scale=8:8,format=gray", "-fps_mode", "passthrough", "-f", "rawvideo", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    luma = np.frombuffer(raw, np.uint8).reshape(-1, 64).mean(1)
    pts = pts[: len(luma)]
    video = pts[np.where((luma[1:] > 128) & (luma[:-1] <= 128))[0] + 1]
    pcm = np.frombuffer(subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-ac", "1", "-ar", "48000",
         "-f", "s16le", "-"], capture_output=True, check=True, timeout=60).stdout, np.int16)
    win = 240  # 5 ms windows
    pcm = pcm[: len(pcm) // win * win].astype(float).reshape(-1, win)
    loud = np.sqrt((pcm ** 2).mean(1)) > 2000
    audio = starts["audio"] + (np.where(loud[1:] & ~loud[:-1])[0] + 1) * win / 48000
    return video, audio


def frame_codes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pts seconds, page clock seconds) of every video frame of a recording of
    recorder_framecode.html (16 full-height columns, a bit each, most significant left)."""
    pts_out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                              "frame=pts_time", "-of", "csv=p=0", str(path)],
                             capture_output=True, text=True, check=True, timeout=120).stdout
    pts = np.array([float(x.strip(",")) for x in pts_out.split()])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-vf",
                          "scale=16:1:flags=area,format=gray", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-"], capture_output=True, check=True, timeout=120).stdout
    bits = np.frombuffer(raw, np.uint8).reshape(-1, 16) > 128
    codes = (bits * (1 << np.arange(15, -1, -1))).sum(1)
    n = min(len(pts), len(codes))
    return pts[:n], codes[:n] / 100.0


def packet_hashes(path: Path) -> list[str]:
    """MD5 of every video packet as stored (no decode): equal hashes = the same encode. Empty
    when ffmpeg finds no video (the last segment of a Stop can be a few audio packets); callers
    count what they get, so an unreadable received file fails there."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v?", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True,
                         timeout=120).stdout
    return [line.split(",")[5].strip() for line in out.splitlines()
            if line and not line.startswith("#")]


def assert_file_whole(path: Path) -> None:
    """The recorded file lost nothing to the live outputs: a frame every 1/30 s (>= 97%), and
    the page clock covers the file's time (a gap would leave the clock ahead, a repeat
    behind). A single page stall on a loaded machine moves neither."""
    pts, clock = frame_codes(path)
    span = pts[-1] - pts[0]
    assert len(pts) >= 0.97 * span * 30, (len(pts), span)
    assert abs((clock[-1] - clock[0]) - span) < 0.3, (clock[-1] - clock[0], span)
    assert np.all(np.diff(clock) >= 0)

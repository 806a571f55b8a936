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

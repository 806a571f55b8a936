"""Analysis of recorded videos: frame barcodes (fidelity, start time) and flash/beep (A/V offset).

Everything reads the finished file through ffmpeg pipes, the way a player would see it:
video frames in presentation order with their timestamps (showinfo), audio samples with the
timestamps of the decoded audio frames (ashowinfo), both with -copyts so they share one clock.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Barcode layout, shared with pages/frames.html (test_analysis.py checks they agree).
CELLS = 26
DATA_BITS = 20
CHECK_BITS = 4
BANDS = ((0.0, 0.125), (0.4375, 0.5625), (0.875, 1.0))  # counter, clock, counter
VALUE_MASK = (1 << DATA_BITS) - 1

# Decoding size: area-scaled gray frames; big enough for 26 cells, cheap to move through a pipe.
DECODE_W = 416
DECODE_H = 240

_PTS_RE = re.compile(r"pts_time:\s*(-?[0-9.]+|nan)")
_NB_RE = re.compile(r"nb_samples:\s*(\d+)")


class AnalysisError(Exception):
    """The file cannot be analysed (no such stream, ffmpeg failed)."""


# ----------------------------------------------------------------------------------------
# Reading media


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:
        raise AnalysisError(f"ffprobe failed on {path}: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)


def _drain(stream, sink: list[str]) -> None:
    for raw in stream:
        sink.append(raw.decode(errors="replace"))


def _run_pipe(argv: list[str], frame_bytes: int, timeout: float) -> tuple[list[bytes], list[str]]:
    """Run ffmpeg, read stdout in frame_bytes chunks and collect stderr lines concurrently."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=_drain, args=(proc.stderr, lines), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    chunks: list[bytes] = []
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(frame_bytes)
            if not buf:
                break
            chunks.append(buf)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    if proc.returncode != 0:
        raise AnalysisError(f"ffmpeg failed ({proc.returncode}): {''.join(lines[-5:]).strip()[-400:]}")
    return chunks, lines


def _pts_lines(lines: list[str], tag: str) -> list[str]:
    return [line for line in lines if tag in line and "pts_time:" in line]


def video_frames(path: Path, width: int = DECODE_W, height: int = DECODE_H,
                 timeout: float = 300) -> tuple[np.ndarray, np.ndarray]:
    """All video frames as (times[n], gray[n, height, width]) in presentation order."""
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info", "-copyts", "-i", str(path),
            "-map", "0:v:0", "-fps_mode", "passthrough",
            "-vf", f"showinfo,scale={width}:{height}:flags=area,format=gray",
            "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
    size = width * height
    chunks, lines = _run_pipe(argv, size, timeout)
    data = b"".join(chunks)
    count = len(data) // size
    frames = np.frombuffer(data[: count * size], dtype=np.uint8).reshape(count, height, width)
    times = [float(_PTS_RE.search(line).group(1)) for line in _pts_lines(lines, "Parsed_showinfo")]
    if len(times) != count:
        raise AnalysisError(f"{path}: {count} frames decoded but {len(times)} timestamps")
    return np.asarray(times, dtype=np.float64), frames


def audio_samples(path: Path, timeout: float = 300) -> tuple[np.ndarray, np.ndarray, int]:
    """Mono float samples, the time of every sample, and the rate (gaps in the stream kept)."""
    info = probe(path)
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise AnalysisError(f"{path}: no audio stream")
    rate = int(streams[0].get("sample_rate") or 48000)
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info", "-copyts", "-i", str(path),
            "-map", "0:a:0", "-af", "ashowinfo", "-ac", "1", "-ar", str(rate),
            "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]
    chunks, lines = _run_pipe(argv, 1 << 16, timeout)
    samples = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float32) / 32768.0
    frames = []
    for line in _pts_lines(lines, "Parsed_ashowinfo"):
        pts = _PTS_RE.search(line).group(1)
        nb = _NB_RE.search(line)
        if pts != "nan" and nb:
            frames.append((float(pts), int(nb.group(1))))
    if not frames:
        raise AnalysisError(f"{path}: no audio frames decoded")
    times = np.empty(len(samples), dtype=np.float64)
    pos = 0
    for pts, nb in frames:
        end = min(pos + nb, len(samples))
        times[pos:end] = pts + np.arange(end - pos) / rate
        pos = end
    if pos < len(samples):  # should not happen; extend on the last frame's clock
        last = times[pos - 1] if pos else frames[0][0]
        times[pos:] = last + (np.arange(len(samples) - pos) + 1) / rate
    return samples, times, rate


def stream_starts(path: Path) -> dict[str, float]:
    """start_time of the first video and first audio stream (seconds, container clock)."""
    out: dict[str, float] = {}
    for st in probe(path).get("streams", []):
        kind = st.get("codec_type")
        if kind in ("video", "audio") and kind not in out and st.get("start_time") not in (None, "N/A"):
            out[kind] = float(st["start_time"])
    return out


# ----------------------------------------------------------------------------------------
# Barcodes


def check_bits(value: int) -> int:
    x = 0
    for shift in range(0, DATA_BITS, 4):
        x ^= (value >> shift) & 0xF
    return x


def encode_bits(value: int) -> list[int]:
    """The CELLS cell colours of a band, 1 = black."""
    value &= VALUE_MASK
    bits = [1, 0]
    bits += [(value >> i) & 1 for i in range(DATA_BITS - 1, -1, -1)]
    chk = check_bits(value)
    bits += [(chk >> i) & 1 for i in range(CHECK_BITS - 1, -1, -1)]
    return bits


def _cell_means(frames: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Mean gray of the central half of every cell of a band: array [n, CELLS]."""
    _, h, w = frames.shape
    y0, y1 = band[0] * h, band[1] * h
    ya, yb = int(round(y0 + (y1 - y0) * 0.25)), int(round(y0 + (y1 - y0) * 0.75))
    out = np.empty((frames.shape[0], CELLS), dtype=np.float32)
    for i in range(CELLS):
        x0, x1 = i * w / CELLS, (i + 1) * w / CELLS
        xa, xb = int(round(x0 + (x1 - x0) * 0.25)), int(round(x0 + (x1 - x0) * 0.75))
        out[:, i] = frames[:, ya:max(yb, ya + 1), xa:max(xb, xa + 1)].mean(axis=(1, 2))
    return out


# Band decode results (values >= 0 are decoded values).
BLANK = -1  # no barcode at all (page not shown yet, other content)
BAD = -2  # a barcode, but a cell is ambiguous or the check fails (tearing inside the band, damage)


def decode_bands(frames: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Decode one band in every frame: value, BLANK or BAD per frame."""
    means = _cell_means(frames, band)
    black, white = means[:, 0], means[:, 1]
    span = white - black
    result = np.full(frames.shape[0], BLANK, dtype=np.int64)
    present = span > 60  # calibration cells differ clearly: a barcode is there
    rel = (means - black[:, None]) / np.maximum(span, 1)[:, None]
    # 1 = black. Anything between 30% and 70% of the calibration span is a mixed cell.
    bits = rel < 0.5
    ambiguous = ((rel > 0.3) & (rel < 0.7)).any(axis=1)
    weights = 1 << np.arange(DATA_BITS - 1, -1, -1, dtype=np.int64)
    values = bits[:, 2:2 + DATA_BITS].astype(np.int64) @ weights
    cweights = 1 << np.arange(CHECK_BITS - 1, -1, -1, dtype=np.int64)
    checks = bits[:, 2 + DATA_BITS:CELLS].astype(np.int64) @ cweights
    expected = np.zeros_like(values)
    for shift in range(0, DATA_BITS, 4):
        expected ^= (values >> shift) & 0xF
    ok = present & ~ambiguous & (checks == expected)
    result[present] = BAD
    result[ok] = values[ok]
    return result


# Frame states
OK, TORN, UNDECODABLE, NO_PAGE = "ok", "torn", "undecodable", "no-page"


@dataclass
class FrameCodes:
    times: np.ndarray  # seconds, presentation order
    counter: np.ndarray  # decoded counter or -1
    clock_ms: np.ndarray  # decoded clock (ms since t0) or -1
    state: list[str]


def decode_frames(times: np.ndarray, frames: np.ndarray) -> FrameCodes:
    top = decode_bands(frames, BANDS[0])
    mid = decode_bands(frames, BANDS[1])
    bottom = decode_bands(frames, BANDS[2])
    state: list[str] = []
    counter = np.full(len(times), -1, dtype=np.int64)
    for i in range(len(times)):
        t, b = top[i], bottom[i]
        if t == BLANK and b == BLANK:
            state.append(NO_PAGE)
        elif t >= 0 and b >= 0 and t != b:
            state.append(TORN)  # two page frames in one capture
        elif t >= 0 and t == b:
            state.append(OK)
            counter[i] = t
        else:
            state.append(UNDECODABLE)
    clock = np.where(mid >= 0, mid, -1)
    return FrameCodes(times=times, counter=counter, clock_ms=clock, state=state)


@dataclass
class Fidelity:
    frames: int  # frames in the file
    lead_in: int  # frames before the first decodable page frame (page not shown yet)
    tail: int  # frames after the last decodable page frame
    window: int  # frames from the first to the last decodable frame
    good: int  # frames whose counter is strictly greater than the previous decoded counter
    repeats: int
    reorders: int
    torn: int
    undecodable: int  # including frames with no barcode inside the window
    span_s: float  # time from the first to the last decodable frame
    nominal_fps: float
    captured_fps: float  # frames in the window per second of span
    missing_slots: int  # frame slots at nominal_fps with no captured frame (dropped captures)
    skipped_mean: float  # page frames between consecutive good captures, mean (info)
    skipped_max: int
    page_fps: float  # page frames per second (rAF rate), from the counter
    first_clock_ms: int | None  # clock band of the first decodable frame (ms since t0)
    last_clock_ms: int | None  # clock band of the last decodable frame
    lead_in_s: float  # time from the first frame in the file to the first decodable one
    skips_hist: dict[int, int] = field(default_factory=dict)

    @property
    def fidelity(self) -> float:
        """Distinct in-order page frames over frame slots: repeats, reorders, torn or
        undecodable frames and dropped captures (missing slots at the nominal rate) all fail."""
        slots = max(self.window - 1, 0) + self.missing_slots
        return self.good / slots if slots else 0.0

    @property
    def fidelity_captured(self) -> float:
        """The same over captured frames only (dropped captures not counted)."""
        n = max(self.window - 1, 0)
        return self.good / n if n else 0.0


def fidelity(codes: FrameCodes, nominal_fps: float) -> Fidelity:
    ok_idx = [i for i, s in enumerate(codes.state) if s == OK]
    n = len(codes.state)
    if not ok_idx:
        return Fidelity(frames=n, lead_in=n, tail=0, window=0, good=0, repeats=0, reorders=0,
                        torn=0, undecodable=0, span_s=0.0, nominal_fps=nominal_fps,
                        captured_fps=0.0, missing_slots=0, skipped_mean=0.0, skipped_max=0,
                        page_fps=0.0, first_clock_ms=None, last_clock_ms=None, lead_in_s=0.0)
    first, last = ok_idx[0], ok_idx[-1]
    good = repeats = reorders = torn = undecodable = 0
    skips: list[int] = []
    prev = int(codes.counter[first])
    for i in range(first + 1, last + 1):
        s = codes.state[i]
        if s == TORN:
            torn += 1
            continue
        if s != OK:
            undecodable += 1
            continue
        c = int(codes.counter[i])
        if c > prev:
            good += 1
            skips.append(c - prev - 1)
        elif c == prev:
            repeats += 1
        else:
            reorders += 1
        prev = c
    span = float(codes.times[last] - codes.times[first])
    window = last - first + 1
    slots_nominal = int(round(span * nominal_fps))
    missing = max(0, slots_nominal - (window - 1))
    hist: dict[int, int] = {}
    for k in skips:
        hist[k] = hist.get(k, 0) + 1
    counters = codes.counter[ok_idx]
    page_fps = float(counters[-1] - counters[0]) / span if span > 0 else 0.0
    clock = int(codes.clock_ms[first]) if codes.clock_ms[first] >= 0 else None
    last_clock = int(codes.clock_ms[last]) if codes.clock_ms[last] >= 0 else None
    return Fidelity(
        frames=n, lead_in=first, tail=n - 1 - last, window=window, good=good, repeats=repeats,
        reorders=reorders, torn=torn, undecodable=undecodable, span_s=span,
        nominal_fps=nominal_fps, captured_fps=(window - 1) / span if span > 0 else 0.0,
        missing_slots=missing, skipped_mean=float(np.mean(skips)) if skips else 0.0,
        skipped_max=max(skips) if skips else 0, page_fps=page_fps, first_clock_ms=clock,
        last_clock_ms=last_clock,
        lead_in_s=float(codes.times[first] - codes.times[0]), skips_hist=dict(sorted(hist.items())),
    )


def analyse_barcode_video(path: Path, nominal_fps: float) -> tuple[Fidelity, FrameCodes]:
    times, frames = video_frames(path)
    codes = decode_frames(times, frames)
    return fidelity(codes, nominal_fps), codes


# ----------------------------------------------------------------------------------------
# Flash and beep


def frame_luma(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean luma (0-255) of every frame, with its time."""
    times, frames = video_frames(path, 32, 18)
    return times, frames.reshape(frames.shape[0], -1).mean(axis=1)


def flash_onsets(times: np.ndarray, luma: np.ndarray, min_gap: float = 0.3) -> list[float]:
    """Times of the first frame of every flash (mean luma crossing half way up)."""
    if len(luma) < 2:
        return []
    lo, hi = float(np.percentile(luma, 5)), float(np.max(luma))
    if hi - lo < 50:
        return []
    thr = (lo + hi) / 2
    above = luma > thr
    onsets: list[float] = []
    for i in range(1, len(luma)):
        if above[i] and not above[i - 1]:
            t = float(times[i])
            if not onsets or t - onsets[-1] >= min_gap:
                onsets.append(t)
    return onsets


def beep_onsets(samples: np.ndarray, times: np.ndarray, min_gap: float = 0.3,
                rel_threshold: float = 0.25, floor: float = 0.02) -> list[float]:
    """Times of the first sample of every beep (|x| above rel_threshold of the loudest beep)."""
    if len(samples) == 0:
        return []
    env = np.abs(samples)
    peak = float(np.percentile(env, 99.9))
    if peak < floor:
        return []
    idx = np.flatnonzero(env > rel_threshold * peak)
    if len(idx) == 0:
        return []
    t = times[idx]
    starts = [float(t[0])]
    gaps = np.flatnonzero(np.diff(t) >= min_gap)
    starts += [float(t[g + 1]) for g in gaps]
    return starts


@dataclass
class AvOffset:
    flashes: int
    beeps: int
    pairs: int
    offsets_ms: list[float]  # audio minus video per pair (positive: sound comes late)

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.offsets_ms)) if self.offsets_ms else float("nan")

    @property
    def mean_abs_ms(self) -> float:
        return float(np.mean(np.abs(self.offsets_ms))) if self.offsets_ms else float("nan")

    @property
    def max_abs_ms(self) -> float:
        return float(np.max(np.abs(self.offsets_ms))) if self.offsets_ms else float("nan")

    @property
    def spread_ms(self) -> float:
        return float(np.ptp(self.offsets_ms)) if self.offsets_ms else float("nan")


def pair_onsets(flashes: list[float], beeps: list[float], max_gap: float = 0.45) -> AvOffset:
    """Pair every flash with the nearest unused beep within max_gap seconds."""
    used: set[int] = set()
    offsets: list[float] = []
    for f in flashes:
        best, best_d = None, None
        for j, b in enumerate(beeps):
            if j in used:
                continue
            d = b - f
            if abs(d) <= max_gap and (best_d is None or abs(d) < abs(best_d)):
                best, best_d = j, d
        if best is not None:
            used.add(best)
            offsets.append(best_d * 1000.0)
    return AvOffset(flashes=len(flashes), beeps=len(beeps), pairs=len(offsets), offsets_ms=offsets)


def analyse_av_video(path: Path) -> AvOffset:
    times, luma = frame_luma(path)
    samples, stimes, _ = audio_samples(path)
    return pair_onsets(flash_onsets(times, luma), beep_onsets(samples, stimes))

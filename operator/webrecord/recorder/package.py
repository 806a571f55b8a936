"""From segments to the delivered files: concat without re-encoding into mp4 (faststart) or HLS
(optionally AES-128), with ffprobe for durations and clear errors for a full disk."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webrecord.api.models import ErrorCode
from webrecord.egress.childenv import minimal_env
from webrecord.files import write_private
from webrecord.logs import event
from webrecord.recorder.errors import RecorderError
from webrecord.recorder.settings import RecorderSettings
from webrecord.storage.video import LocalSnapshot

log = logging.getLogger(__name__)

_KEY_URI_BAD = re.compile(r'[\x00-\x1f\x7f"]')
_DISK_FULL_MARKERS = ("No space left on device", "File too large", "Disk quota exceeded")


@dataclass
class Packaged:
    path: Path  # the mp4, or the .m3u8 playlist
    muxer: str
    duration: float
    files: list[Path] = field(default_factory=list)  # everything that makes up the video
    # ffmpeg's input arguments that read the video on its own timeline (output.snapshots)
    input_args: list[str] = field(default_factory=list)
    snapshots: list[LocalSnapshot] | None = None
    poster: LocalSnapshot | None = None

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.exists())


async def run_tool(argv: list[str], timeout: float = 600,
                   stderr: bool = False) -> tuple[int, str]:
    """(exit code, stdout) of a finished ffmpeg/ffprobe, or its stderr when it failed or when
    `stderr` asks for it (filters such as showinfo report there)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE,
                                                env=minimal_env())
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        proc.kill()
        await proc.wait()
        return -9, "timed out"
    if proc.returncode == 0:
        return 0, (err if stderr else out).decode(errors="replace")
    return proc.returncode or 1, err.decode(errors="replace")


async def probe(path: Path, settings: RecorderSettings) -> dict:
    """ffprobe's format + streams as a dict ({} when the file is unreadable)."""
    code, out = await run_tool([settings.ffprobe_path, "-v", "error", "-show_entries",
                            "format=duration:stream=codec_type,codec_name,width,height,duration",
                            "-of", "json", str(path)], timeout=60)
    if code != 0:
        return {}
    try:
        return json.loads(out)
    except ValueError:
        return {}


async def duration(path: Path, settings: RecorderSettings) -> float:
    info = await probe(path, settings)
    try:
        return float(info.get("format", {}).get("duration", 0) or 0)
    except (TypeError, ValueError):
        return 0.0


async def usable_segments(paths: list[Path], settings: RecorderSettings,
                          audio_only: bool = False) -> list[Path]:
    """Segments with a video stream (audio only: an audio stream) and some duration (a
    process killed at birth leaves none)."""
    wanted = "audio" if audio_only else "video"
    present = [p for p in paths if p.exists() and p.stat().st_size > 0]
    good = []
    for path, facts in zip(present, await segments_facts(present, settings)):
        if facts is not None and wanted in facts.kinds and facts.duration > 0.05:
            good.append(path)
        else:
            event(log, "dropping empty segment", logging.WARNING, path=str(path))
    return good


async def drop_torn_tail(segment: Path, settings: RecorderSettings) -> bool:
    """A segment cut short by a full disk ends in a partly written packet, which decodes with
    errors: keep everything before the last video packet (one frame and the sound after it),
    timestamps unchanged, in place. True when the segment was rewritten."""
    code, out = await run_tool([settings.ffprobe_path, "-v", "error", "-select_streams", "v:0",
                            "-show_entries", "packet=dts_time", "-of", "csv=p=0", str(segment)],
                           timeout=60)
    dts = [float(x) for x in out.replace(",", " ").split() if x != "N/A"] if code == 0 else []
    if len(dts) < 2:
        return False
    trimmed = segment.with_name(segment.stem + ".trim.ts")
    # Stream copy stops at the first packet whose decode time reaches -to.
    code, err = await run_tool([settings.ffmpeg_path, "-hide_banner", "-loglevel", "error", "-y",
                            "-copyts", "-i", str(segment), "-map", "0", "-c", "copy",
                            "-to", f"{dts[-1] - 0.0005:.6f}", "-muxdelay", "0", "-muxpreload", "0",
                            "-f", "mpegts", str(trimmed)], timeout=120)
    if code != 0 or not trimmed.exists() or trimmed.stat().st_size == 0:
        trimmed.unlink(missing_ok=True)
        event(log, "torn segment kept as it is", logging.WARNING, path=str(segment),
              error=err.strip()[-200:])
        return False
    os.replace(trimmed, segment)
    return True


def playlist_duration(playlist: Path) -> float:
    """Sum of #EXTINF: works for encrypted playlists whose key URI is not reachable from here."""
    total = 0.0
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            total += float(line[len("#EXTINF:"):].split(",")[0])
    return total


def _fail(err: str, what: str, outputs: list[Path]) -> RecorderError:
    for p in outputs:
        try:
            p.unlink()
        except OSError:
            pass
    if any(m in err for m in _DISK_FULL_MARKERS):
        return RecorderError(ErrorCode.DISK_FULL, f"disk full while {what}")
    last = [line for line in err.strip().splitlines() if line.strip()][-1:] or ["ffmpeg failed"]
    return RecorderError(ErrorCode.ENCODER_FAILED, f"{what} failed: {last[0]}")


# Two segments whose timestamps meet within this many seconds were cut from one stream.
_SEAM_TOLERANCE_S = 0.25


@dataclass(frozen=True)
class SegmentFacts:
    kinds: frozenset[str]  # codec types of its streams whose parameters ffprobe found
    start: float | None  # the format's start_time (None: unreadable)
    duration: float
    # (start_time, duration) of the first stream of each codec type that states both
    streams: dict[str, tuple[float, float]] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # absent, or ffprobe's "N/A"
        return None


def _decodable(stream: dict[str, Any]) -> bool:
    """ffprobe found the stream's parameters. A segment cut 0.1 s after it began can hold only
    the start of one sound packet: its stream then reads as mp2 at 0 Hz, and joining it first
    made the mp4 writer fail ("Error initializing output stream")."""
    if stream.get("codec_type") == "audio":
        return (_number(stream.get("sample_rate")) or 0) > 0
    if stream.get("codec_type") == "video":
        return (_number(stream.get("width")) or 0) > 0
    return True


async def _segment_facts(path: Path, settings: RecorderSettings) -> SegmentFacts | None:
    code, out = await run_tool([settings.ffprobe_path, "-v", "error", "-show_entries",
                                "format=start_time,duration:"
                                "stream=codec_type,start_time,duration,sample_rate,width",
                                "-of", "json", str(path)], timeout=60)
    try:
        info = json.loads(out) if code == 0 else {}
        fmt = info.get("format") or {}
        streams = info.get("streams") or []
        spans: dict[str, tuple[float, float]] = {}
        for st in streams:
            start, length = _number(st.get("start_time")), _number(st.get("duration"))
            if start is not None and length is not None:
                spans.setdefault(st.get("codec_type"), (start, length))
        return SegmentFacts(frozenset(st.get("codec_type") for st in streams if _decodable(st)),
                            _number(fmt.get("start_time")),
                            float(fmt.get("duration") or 0), spans)
    except (ValueError, TypeError, AttributeError):
        return None


# Facts of closed segments by (path, size, mtime): the session probes each segment when it
# closes, while the task still records, so Stop probes only the last one (two sequential
# probes of every segment at Stop took 0.2 s per segment: 72 s for an hour of 10 s segments).
# A rewritten file (drop_torn_tail) has another key. Bounded: oldest entries go first.
_FACTS: dict[tuple[str, int, int], SegmentFacts] = {}
_PROBING: dict[tuple[str, int, int], asyncio.Future[SegmentFacts | None]] = {}
_FACTS_KEPT = 20000
_PROBES_AT_ONCE = 4


async def closed_segment_facts(path: Path, settings: RecorderSettings) -> SegmentFacts | None:
    """What ffprobe says of a segment that no longer changes, remembered."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _FACTS:
        return _FACTS[key]
    # Asked twice at once (the session's probe at the close and live HLS publishing the same
    # segment): one ffprobe, both wait for it.
    probing = _PROBING.get(key)
    if probing is None:
        probing = _PROBING[key] = asyncio.ensure_future(_segment_facts(path, settings))
        probing.add_done_callback(lambda _: _PROBING.pop(key, None))
    facts = await asyncio.shield(probing)
    if facts is not None:
        if len(_FACTS) >= _FACTS_KEPT:
            del _FACTS[next(iter(_FACTS))]
        _FACTS[key] = facts
    return facts


async def segments_facts(paths: list[Path], settings: RecorderSettings
                         ) -> list[SegmentFacts | None]:
    """closed_segment_facts of each, a few probes at once."""
    limit = asyncio.Semaphore(_PROBES_AT_ONCE)

    async def one(path: Path) -> SegmentFacts | None:
        async with limit:
            return await closed_segment_facts(path, settings)

    return list(await asyncio.gather(*(one(p) for p in paths)))


async def join_durations(segments: list[Path], settings: RecorderSettings) -> list[float | None]:
    """How long each segment lasts in the joined file.

    Why: the concat demuxer places each file at the end of the previous one's longest stream,
    which at a timed cut is a few ms past the next file's first packet, so every cut would add
    a small gap that sums up over hours. Where two segments are consecutive cuts of one stream
    (all segments of a task share one clock, see Capture), the next one's start is the exact
    length; elsewhere (pause, crash, resume) the measured duration stands (None)."""
    spans = [(f.start, f.duration) if f is not None and f.start is not None else None
             for f in await segments_facts(segments, settings)]
    out: list[float | None] = []
    for this, following in zip(spans, [*spans[1:], None]):
        length = None
        if this is not None and following is not None:
            delta = following[0] - this[0]
            if abs(delta - this[1]) <= _SEAM_TOLERANCE_S and delta > 0:
                length = delta
        out.append(length)
    return out


def _concat_list(segments: list[Path], list_path: Path,
                 durations: list[float | None] | None = None) -> None:
    lines = []
    for seg, length in zip(segments, durations or [None] * len(segments)):
        quoted = str(seg.resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'\n")
        if length is not None:
            lines.append(f"duration {length:.6f}\n")
    try:
        list_path.write_text("".join(lines))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise RecorderError(ErrorCode.DISK_FULL, "disk full while packaging") from exc
        raise


async def package_mp4(segments: list[Path], out: Path, work_dir: Path,
                      settings: RecorderSettings) -> Packaged:
    out.parent.mkdir(parents=True, exist_ok=True)
    list_path = work_dir / "concat.txt"
    _concat_list(segments, list_path, await join_durations(segments, settings))
    tmp = out.with_name(out.name + ".part")
    code, err = await run_tool([
        settings.ffmpeg_path, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(list_path),
        # "0:v?": an audio-only task's segments have no video (the file is an .m4a).
        "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-bsf:a", "aac_adtstoasc",
        "-movflags", "+faststart", "-f", "mp4", str(tmp),
    ])
    if code != 0:
        raise _fail(err, "writing mp4", [tmp])
    os.replace(tmp, out)
    dur = await duration(out, settings)
    event(log, "packaged mp4", path=str(out), seconds=dur, bytes=out.stat().st_size)
    return Packaged(path=out, muxer="mp4", duration=dur, files=[out], input_args=["-i", str(out)])


async def package_hls(segments: list[Path], playlist: Path, work_dir: Path,
                      settings: RecorderSettings, encrypt_key: str | None = None,
                      auth_url: str | None = None) -> Packaged:
    """HLS VOD playlist + TS segments beside it. With a key: AES-128, key URI = auth_url.

    The key file itself never goes beside the playlist (that would publish the key); without
    an auth_url the URI is `<name>.key`, to be served by whoever holds the key.
    """
    playlist.parent.mkdir(parents=True, exist_ok=True)
    list_path = work_dir / "concat.txt"
    _concat_list(segments, list_path, await join_durations(segments, settings))
    stem = playlist.stem
    argv = [
        settings.ffmpeg_path, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(list_path),
        "-map", "0:v", "-map", "0:a?", "-c", "copy",
        "-f", "hls", "-hls_time", f"{settings.hls_segment_seconds:g}", "-hls_list_size", "0",
        "-hls_playlist_type", "vod",
        "-hls_segment_filename", str(playlist.parent / f"{stem}_%05d.ts"),
    ]
    if encrypt_key:
        key_file = work_dir / "hls.key"
        write_private(key_file, bytes.fromhex(encrypt_key))
        uri = auth_url or stem + ".key"
        # One line per field: a line break in the URI would choose the key file and the IV.
        # The models refuse such an AuthUrl; this guards the file itself.
        if _KEY_URI_BAD.search(uri):
            raise RecorderError(ErrorCode.INVALID_PARAM,
                                "AuthUrl: must not contain control characters or quotes")
        info = work_dir / "hls.keyinfo"
        # Line 3 is the IV: a random one per task, written into the playlist.
        write_private(info, f"{uri}\n{key_file}\n{secrets.token_hex(16)}\n")
        argv += ["-hls_key_info_file", str(info)]
    argv.append(str(playlist))
    code, err = await run_tool(argv)
    produced = [playlist, *sorted(playlist.parent.glob(f"{stem}_*.ts"))]
    if code != 0:
        raise _fail(err, "writing HLS", produced)
    dur = playlist_duration(playlist)
    event(log, "packaged hls", path=str(playlist), seconds=dur, segments=len(produced) - 1,
          encrypted=bool(encrypt_key))
    # The segments' join rather than the playlist: an encrypted playlist's key URI may not be
    # reachable from here; the join is the playlist's timeline (stream copy of the same list).
    return Packaged(path=playlist, muxer="hls", duration=dur, files=produced,
                    input_args=["-f", "concat", "-safe", "0", "-i", str(list_path)])

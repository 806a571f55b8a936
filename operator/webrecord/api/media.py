"""Per-task encoding settings (issue 15, an optional extension of `output.video`).

Every field is optional: unset means the recorder's own setting (WEBRECORD_FPS, _X264_CRF,
_KEYINT_SECONDS, _AUDIO_BITRATE), so a task that names none of them records exactly as before.
The bounds live here once; the models, the protocol's shapes, the CRD and /openapi.json all
use them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

MIN_FPS, MAX_FPS = 5, 60
MIN_VIDEO_KBPS, MAX_VIDEO_KBPS = 100, 20000
MIN_CRF, MAX_CRF = 0, 51
MIN_KEYINT_S, MAX_KEYINT_S = 0.5, 10.0
MIN_AUDIO_KBPS, MAX_AUDIO_KBPS = 32, 320

BITRATE_OR_QUALITY = "give videoBitrate or quality, not both"
AUDIO_ONLY_MP4 = "audioOnly requires muxer 'mp4' (the file is an .m4a)"
AUDIO_ONLY_VIDEO = "audioOnly records no video: frameRate, videoBitrate, quality and " \
                   "keyframeInterval do not apply"


def frame_rate_field(alias_doc: str = "") -> Any:
    return Field(None, ge=MIN_FPS, le=MAX_FPS,
                 description=f"Frames per second ({MIN_FPS}-{MAX_FPS}). Unset: the recorder's "
                 "default (30; 15 above 1920x1080)" + alias_doc)


def video_bitrate_field() -> Any:
    return Field(None, ge=MIN_VIDEO_KBPS, le=MAX_VIDEO_KBPS,
                 description="Video bitrate cap in kbit/s (constrained VBR); excludes quality")


def quality_field() -> Any:
    return Field(None, ge=MIN_CRF, le=MAX_CRF,
                 description="x264 CRF: 0 best .. 51 worst (default 23); excludes videoBitrate")


def keyframe_interval_field() -> Any:
    return Field(None, ge=MIN_KEYINT_S, le=MAX_KEYINT_S,
                 description="Seconds between keyframes (default 2); segments and HLS "
                 "parts are cut at keyframes")


def audio_bitrate_field() -> Any:
    return Field(None, ge=MIN_AUDIO_KBPS, le=MAX_AUDIO_KBPS,
                 description="AAC bitrate in kbit/s (default 128)")


def audio_only_field() -> Any:
    return Field(None, description="Record the page's sound only: an .m4a (AAC), no display "
                 "capture or video encode. mp4 muxer only")


def encoding_problem(muxer: str | None, video_bitrate: int | None, quality: int | None,
                     audio_only: bool | None, frame_rate: int | None,
                     keyframe_interval: float | None) -> str | None:
    """The rules between fields (each field's own range is checked by its Field)."""
    if video_bitrate is not None and quality is not None:
        return BITRATE_OR_QUALITY
    if audio_only:
        if muxer not in (None, "mp4"):
            return AUDIO_ONLY_MP4
        if any(v is not None for v in (frame_rate, video_bitrate, quality, keyframe_interval)):
            return AUDIO_ONLY_VIDEO
    return None


def protocol_words(message: str) -> str:
    """A rule's message in the protocol's PascalCase names."""
    for snake, pascal in (("videoBitrate", "VideoBitrate"), ("quality", "Quality"),
                          ("audioOnly", "AudioOnly"), ("muxer", "Muxer"),
                          ("frameRate", "FrameRate"), ("keyframeInterval", "KeyframeInterval")):
        message = message.replace(snake, pascal)
    return message


# CEL for the CRD: the same rules between fields, so kubectl refuses what the protocol refuses.
CEL_RULES = [
    ("!(has(self.videoBitrate) && has(self.quality))", BITRATE_OR_QUALITY),
    ("!has(self.audioOnly) || !self.audioOnly || self.muxer == 'mp4'", AUDIO_ONLY_MP4),
    ("!has(self.audioOnly) || !self.audioOnly || (!has(self.frameRate) && "
     "!has(self.videoBitrate) && !has(self.quality) && !has(self.keyframeInterval))",
     AUDIO_ONLY_VIDEO),
]

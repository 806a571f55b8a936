"""The encoding one task gets: the task's `output.video` settings where given, the recorder's
defaults (RecorderSettings) elsewhere. Resolved once, used by the capture (ffmpeg's
arguments), packaging (.m4a for audio only) and the cost model (fps)."""

from __future__ import annotations

from dataclasses import dataclass

from webrecord.api.models import RecordingSpec
from webrecord.recorder.settings import RecorderSettings


@dataclass(frozen=True)
class Encoding:
    fps: int
    keyint_seconds: float
    crf: int | None  # quality mode (x264 CRF) ...
    video_kbps: int | None  # ... or a bitrate cap; exactly one of the two is set
    audio_bitrate: str  # ffmpeg's form, "128k"
    audio_only: bool = False

    @property
    def gop(self) -> int:
        return max(1, round(self.fps * self.keyint_seconds))

    def rate_args(self) -> list[str]:
        """x264 rate control: CRF, or a capped VBR (maxrate with a one-second buffer so the cap
        holds over any second, not just on average)."""
        if self.video_kbps is None:
            return ["-crf", str(self.crf)]
        kbps = self.video_kbps
        return ["-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k"]


def encoding_for(settings: RecorderSettings, spec: RecordingSpec | None = None,
                 width: int | None = None, height: int | None = None) -> Encoding:
    """The task's encoding (spec None: the recorder's defaults for a width x height page)."""
    width = spec.width if spec is not None else width or 1280
    height = spec.height if spec is not None else height or 720
    video = spec.output.video if spec is not None else None
    given = (lambda name: getattr(video, name)) if video is not None else (lambda _name: None)
    kbps = given("video_bitrate")
    audio_kbps = given("audio_bitrate")
    return Encoding(
        fps=given("frame_rate") or settings.fps_for(width, height),
        keyint_seconds=given("keyframe_interval") or settings.keyint_seconds,
        crf=None if kbps is not None else (
            given("quality") if given("quality") is not None else settings.x264_crf),
        video_kbps=kbps,
        audio_bitrate=f"{audio_kbps}k" if audio_kbps else settings.audio_bitrate,
        audio_only=bool(given("audio_only")),
    )

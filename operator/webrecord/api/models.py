"""Pydantic models of a recording task: the single source of truth.

The CRD schema is generated from these (`webrecord.api.crd`), the adapter translates the
protocol's PascalCase names to and from them, and the recorder reads its task from them.
Field names are snake_case in Python and camelCase on the wire (CRD, task file, status JSON).
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from webrecord.api import media
from webrecord.api import page as pg
from webrecord.api import snapshots as snap
from webrecord.api.live import MAX_LIVE_OUTPUTS, parse_live_url
from webrecord.api.names import ContainedDir, ContainedName
from webrecord.api.urls import parse_http_url

DEFAULT_WIDTH = 1280
DEFAULT_HEIGHT = 720
MAX_DIMENSION = 2560
DEFAULT_MAX_DURATION_S = 21600
MAX_DURATION_LIMIT_S = 36000

_HEX_KEY = re.compile(r"^[0-9a-fA-F]{32}$")
ENCRYPT_KEY_SECRET_KEY = "encryptKey"  # the default key of an encryptKeySecretRef
LIVE_HLS_NEEDS_HLS = "liveHls requires video.muxer 'hls' (the live playlist is HLS)"


def http_url(value: str | None) -> str | None:
    """The browser's serialisation of an http(s) URL; ValueError naming the rule otherwise."""
    return parse_http_url(value).href if value else value


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors, not silence."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )

    def wire(self) -> dict:
        """The JSON-ready camelCase form, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Phase(str, enum.Enum):
    """Task status values of the protocol, in lifecycle order."""

    NORMAL = "normal"  # created, not started (e.g. waiting for ManualStart)
    RECORDING = "recording"
    PAUSED = "paused"
    CANCELED = "canceled"  # stop requested
    TRANSCODE = "transcode"
    UPLOAD = "upload"
    CALLBACK = "callback"
    FINISHED = "finished"

    @property
    def active(self) -> bool:
        """True while the page is still being recorded (controls apply)."""
        return self in (Phase.NORMAL, Phase.RECORDING, Phase.PAUSED)


class Action(str, enum.Enum):
    """Controls a caller can send to a running task."""

    PAUSE = "Pause"
    RESUME = "Resume"
    REFRESH = "Refresh"
    STOP = "Stop"
    CANCEL = "Cancel"  # stop and produce no video


class ErrorCode(str, enum.Enum):
    """Result.ErrorCode values. Empty string (no error) is represented by None."""

    INVALID_PARAM = "InvalidParam"
    PAGE_LOAD_FAILED = "PageLoadFailed"
    MANUAL_START_TIMEOUT = "ManualStartTimeout"
    BROWSER_CRASHED = "BrowserCrashed"
    ENCODER_FAILED = "EncoderFailed"
    DISK_FULL = "DiskFull"
    NOTHING_RECORDED = "NothingRecorded"
    PAGE_BLANK = "PageBlank"  # one flat colour and silence for idle.blankSeconds after start
    UPLOAD_FAILED = "UploadFailed"
    VOD_FAILED = "VodUploadFailed"
    CALLBACK_FAILED = "CallbackFailed"
    CANCELED = "Canceled"
    RECORDER_LOST = "RecorderLost"  # pod failed, evicted, never started
    TIMEOUT = "Timeout"
    INTERNAL = "InternalError"


class CosOutput(WireModel):
    """Object storage target (COS, S3, MinIO). Credentials never come from the task."""

    domain: str | None = Field(None, description="Public domain used to build FileURL")
    bucket: str | None = Field(None, max_length=255)
    region: str | None = Field(None, max_length=64)
    # Names become paths and object keys under the target root: never outside it.
    target_dir: ContainedDir = Field(None, max_length=1024, description="Default: the task id")
    target_name: ContainedName = Field(
        None, max_length=255, description="File name without extension. Default: stop timestamp"
    )


class VodMediaInfo(WireModel):
    media_name: str | None = Field(None, max_length=256)
    expire_time: str | None = Field(None, description="ISO 8601 expiry of the media")
    storage_region: str | None = None
    class_id: int | None = Field(None, ge=0)
    source_context: str | None = Field(None, max_length=250)


class VodProcedureInfo(WireModel):
    procedure: str | None = None
    session_context: str | None = Field(None, max_length=1000)


class VodOutput(WireModel):
    media_info: VodMediaInfo | None = None
    procedure_info: VodProcedureInfo | None = None
    sub_app_id: int | None = Field(None, ge=0)


class SecretKeyRef(WireModel):
    """A key of a Secret in the WebRecording's namespace."""

    name: str = Field(min_length=1, max_length=253,
                      pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    key: str = Field(ENCRYPT_KEY_SECRET_KEY, min_length=1, max_length=253,
                     pattern=r"^[-._a-zA-Z0-9]+$")


class VideoOutput(WireModel):
    muxer: Literal["mp4", "hls"] = "mp4"
    encrypt_key: str | None = Field(
        None, description="AES-128 key, 32 hex digits; HLS only (segments are encrypted). "
        "Task files and the protocol only: a WebRecording names a Secret instead"
    )
    encrypt_key_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret (same namespace) holding the AES-128 key as 32 hex digits; "
        "HLS only. The operator reads it when it creates the recorder"
    )
    auth_url: str | None = Field(
        None, max_length=8192, description="Key URI written into the HLS playlist (http/https)")
    # Encoding (extension, webrecord.api.media): unset = the recorder's defaults.
    frame_rate: int | None = media.frame_rate_field()
    video_bitrate: int | None = media.video_bitrate_field()
    quality: int | None = media.quality_field()
    keyframe_interval: float | None = media.keyframe_interval_field()
    audio_bitrate: int | None = media.audio_bitrate_field()
    audio_only: bool | None = media.audio_only_field()

    @field_validator("encrypt_key")
    @classmethod
    def _hex_key(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _HEX_KEY.match(value):
            raise ValueError("must be 32 hexadecimal digits (a 128-bit AES key)")
        return value.lower()

    @field_validator("auth_url")
    @classmethod
    def _key_uri(cls, value: str | None) -> str | None:
        # Written into ffmpeg's key-info file and the playlist's URI="...": the browser's
        # serialisation has no line breaks or quotes.
        return http_url(value)

    @model_validator(mode="after")
    def _key_needs_hls(self) -> "VideoOutput":
        if (self.encrypt_key or self.encrypt_key_secret_ref) and self.muxer != "hls":
            raise ValueError("encryptKey requires muxer 'hls'")
        if self.encrypt_key and self.encrypt_key_secret_ref:
            raise ValueError("give encryptKey or encryptKeySecretRef, not both")
        problem = media.encoding_problem(self.muxer, self.video_bitrate, self.quality,
                                         self.audio_only, self.frame_rate, self.keyframe_interval)
        if problem:
            raise ValueError(problem)
        return self


class LiveOutput(WireModel):
    """One live receiver (extension): the recording's own encode, copied while recording."""

    url: str = Field(
        min_length=1, max_length=4096,
        description="rtmp://host[:port]/app/stream, rtmps://... or srt://host:port[?streamid=...]; "
        "judged by the egress policy before each connect; shown redacted (stream keys are secrets)")

    @field_validator("url")
    @classmethod
    def _live_url(cls, value: str) -> str:
        parse_live_url(value)  # UrlRejected is a ValueError naming the rule
        return value


def unique_live(outputs: list[LiveOutput] | None) -> list[LiveOutput] | None:
    if outputs and len({o.url for o in outputs}) != len(outputs):
        raise ValueError("the same URL twice")
    return outputs


class LiveState(str, enum.Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    PAUSED = "paused"  # connected; nothing sent while the recording is paused
    RETRYING = "retrying"  # the receiver went away: reconnecting with backoff
    REFUSED = "refused"  # the egress policy refuses the host
    STOPPED = "stopped"


class LiveOutputStatus(WireModel):
    url: str = Field(description="The URL with its stream key redacted")
    state: LiveState
    message: str | None = None
    reconnects: int = Field(0, ge=0)
    sent_bytes: int = Field(0, ge=0)
    dropped_bytes: int = Field(0, ge=0, description="Dropped for this receiver: it was too slow")


class SnapshotSpec(WireModel):
    """Snapshots (extension, webrecord.api.snapshots): taken from the recorded video after it
    is packaged (no second capture or encode), delivered beside it."""

    interval_seconds: int | None = snap.interval_field()
    poster: bool = Field(True, description=snap.DOC["poster"])
    max_count: int = snap.max_count_field(snap.DEFAULT_MAX_COUNT)

    @model_validator(mode="after")
    def _something_to_take(self) -> "SnapshotSpec":
        if self.interval_seconds is None and not self.poster:
            raise ValueError(snap.NOTHING_TO_TAKE)
        return self


class LiveHlsStatus(WireModel):
    """The growing HLS playlist of output.liveHls (extension)."""

    url: str = Field(description="The live playlist: EVENT type, grows while recording")
    segments: int = Field(0, ge=0, description="Segments listed in it so far")
    pending: int = Field(0, ge=0, description="Closed segments not uploaded yet")
    ended: bool = Field(False, description="#EXT-X-ENDLIST written: the recording is complete")
    message: str | None = Field(None, description="Why uploads are behind (retrying), if so")


class OutputSpec(WireModel):
    cos: CosOutput | None = None
    vod: VodOutput | None = None
    video: VideoOutput = Field(default_factory=VideoOutput)
    live: list[LiveOutput] | None = Field(
        None, max_length=MAX_LIVE_OUTPUTS,
        description="Extension: live receivers of the recording (RTMP/RTMPS/SRT); may change "
        "while recording")
    snapshots: SnapshotSpec | None = Field(None, description=snap.DOC["snapshots"])
    live_hls: bool | None = Field(
        None, description="Extension, muxer hls only: while recording, each closed segment is "
        "uploaded beside the final HLS and a growing EVENT playlist (<name>_live.m3u8) is "
        "rewritten after it; it ends with #EXT-X-ENDLIST at Stop. Encrypted like the final HLS "
        "when an encryptKey is given. Its URL is in status.liveHls")

    @field_validator("live")
    @classmethod
    def _unique_live(cls, value: list[LiveOutput] | None) -> list[LiveOutput] | None:
        return unique_live(value)

    @model_validator(mode="after")
    def _snapshots_need_video(self) -> "OutputSpec":
        if self.snapshots is not None and self.video.audio_only:
            raise ValueError(snap.AUDIO_ONLY)
        return self

    @model_validator(mode="after")
    def _live_hls_needs_hls(self) -> "OutputSpec":
        if self.live_hls and self.video.muxer != "hls":
            raise ValueError(LIVE_HLS_NEEDS_HLS)
        return self


class HeaderSpec(WireModel):
    name: pg.HeaderName
    value: pg.HeaderValue


class CookieSpec(WireModel):
    name: pg.CookieName
    value: pg.CookieValue
    domain: pg.CookieDomain | None = Field(None, description="Default: the RecordURL's host")
    path: pg.CookiePath = "/"
    secure: bool = False
    http_only: bool = False
    same_site: Literal["Lax", "Strict", "None"] = "Lax"


class PageSpec(WireModel):
    """Page control (extension, webrecord.api.page)."""

    user_agent: Annotated[str | None, Field(None, min_length=1, max_length=512,
                                            description=pg.DOC["user_agent"]),
                          AfterValidator(pg.check_user_agent)]
    device_scale_factor: float | None = pg.scale_field()
    headers: list[HeaderSpec] = Field(default_factory=list, max_length=pg.MAX_HEADERS,
                                      description=pg.DOC["headers"])
    cookies: list[CookieSpec] = Field(default_factory=list, max_length=pg.MAX_COOKIES,
                                      description=pg.DOC["cookies"])
    scripts: list[Annotated[str, pg.InjectedText]] = Field(
        default_factory=list, max_length=pg.MAX_INJECTED, description=pg.DOC["scripts"])
    styles: list[Annotated[str, pg.InjectedText]] = Field(
        default_factory=list, max_length=pg.MAX_INJECTED, description=pg.DOC["styles"])
    console_signals: bool = Field(True, description=pg.DOC["console_signals"])


class IdleSpec(WireModel):
    """Idle and blank pages (extension; detected per closed segment, recorder/idle.py)."""

    seconds: int | None = Field(None, ge=pg.MIN_IDLE_S, le=pg.MAX_IDLE_S,
                                description=pg.IDLE_DOC["seconds"])
    action: Literal["stop", "pause"] = Field("stop", description=pg.IDLE_DOC["action"])
    blank_seconds: int | None = Field(None, ge=0, le=pg.MAX_BLANK_S,
                                      description=pg.IDLE_DOC["blank_seconds"])


class RecordingSpec(WireModel):
    """Everything a Start carries; also the `spec` of a WebRecording resource."""

    record_url: Annotated[str, Field(min_length=1, max_length=8192, pattern=r"^https?://")]
    manual_start: bool = False
    width: int = Field(DEFAULT_WIDTH, ge=0, le=MAX_DIMENSION, description="0 means 1280")
    height: int = Field(DEFAULT_HEIGHT, ge=0, le=MAX_DIMENSION, description="0 means 720")
    callback_url: str | None = Field(None, max_length=8192, pattern=r"^https?://")
    max_duration_limit: int = Field(
        DEFAULT_MAX_DURATION_S, ge=0, le=MAX_DURATION_LIMIT_S, description="Seconds; 0 means 21600"
    )
    storage_type: Literal["cos", "cfs"] = "cfs"
    output: OutputSpec = Field(default_factory=OutputSpec)
    page: PageSpec | None = None  # extension: cookies, headers, scripts before the page loads
    idle: IdleSpec | None = None  # extension: stop an idle page, fail a blank one
    # Control of a running task (CRD only): set `action`, bump `actionSeq` to repeat it.
    action: Action | None = None
    action_seq: int = Field(0, ge=0)
    # Lifetime of a finished WebRecording (CRD only; as a Job's ttlSecondsAfterFinished).
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Seconds after finishTime when the operator deletes the "
        "finished WebRecording (0: at once). Unset: the operator's default "
        "(WEBRECORD_OPERATOR_TTL_SECONDS_AFTER_FINISHED, chart operator.ttlSecondsAfterFinished)",
    )

    @field_validator("record_url", "callback_url")
    @classmethod
    def _judgeable_url(cls, value: str | None) -> str | None:
        # Parsed as the browser parses it; refused when it cannot be judged (credentials,
        # backslashes, ambiguous IPv4 forms). The caller's text is kept as given.
        http_url(value)
        return value

    @model_validator(mode="after")
    def _cookies_for_this_site(self) -> "RecordingSpec":
        for i, cookie in enumerate(self.page.cookies if self.page else []):
            if cookie.domain and (why := pg.cookie_domain_problem(cookie.domain, self.record_url)):
                raise ValueError(f"page.cookies[{i}].domain: {why}")
        return self

    @model_validator(mode="after")
    def _zero_means_default(self) -> "RecordingSpec":
        # The protocol treats 0 as "use the default"; normalise once here so no reader guesses.
        if self.width == 0:
            self.width = DEFAULT_WIDTH
        if self.height == 0:
            self.height = DEFAULT_HEIGHT
        if self.max_duration_limit == 0:
            self.max_duration_limit = DEFAULT_MAX_DURATION_S
        return self


class VideoFile(WireModel):
    filename: str
    file_size: int = Field(ge=0)
    file_duration: float = Field(ge=0, description="Seconds")
    file_id: str | None = None
    file_url: str | None = Field(None, alias="fileURL")


class SnapshotFile(WireModel):
    """One delivered JPEG (extension): its name beside the video and where in the video."""

    filename: str
    time: float = Field(ge=0, description="Seconds into the video")
    file_size: int = Field(ge=0)
    file_url: str | None = Field(None, alias="fileURL")


class Result(WireModel):
    error_code: ErrorCode | None = None
    error_message: str | None = None
    videos: list[VideoFile] = Field(default_factory=list)
    # Extension (output.snapshots): absent unless the task asked, so old callers see no change.
    snapshots: list[SnapshotFile] | None = Field(
        None, max_length=snap.MAX_COUNT, description="Periodic snapshots, in video order")
    poster: SnapshotFile | None = Field(None, description="The last frame of the video")


class TaskTimes(WireModel):
    """Unix seconds, each present only once it happened."""

    create_time: int | None = None
    start_time: int | None = None
    cancel_time: int | None = None
    stop_time: int | None = None
    finish_time: int | None = None


class RecorderStatus(TaskTimes):
    """What a recorder reports on GET /status and in its status file."""

    task_id: str
    status: Phase = Phase.NORMAL
    result: Result = Field(default_factory=Result)
    recorded_seconds: float = Field(0.0, ge=0, description="Recorded (not paused) time so far")
    segments: int = Field(0, ge=0, description="Segments closed or in progress")
    last_action_seq: int = Field(0, ge=0, description="Highest control sequence applied")
    message: str | None = Field(None, description="Human-readable progress note")
    restarts: int = Field(0, ge=0, description="Recorders started to replace lost ones")
    live: list[LiveOutputStatus] | None = Field(None, description="Extension: each live output")
    live_hls: LiveHlsStatus | None = Field(None, description="Extension: the live HLS playlist")


def valid_encrypt_key(value: str) -> str:
    """An AES-128 key as stored in a Secret (whitespace around it ignored), or ValueError."""
    key = VideoOutput._hex_key(value.strip())
    if not key:
        raise ValueError("must be 32 hexadecimal digits (a 128-bit AES key)")
    return key


class RecordingTask(WireModel):
    """The recorder's input: the task file written by the adapter or the operator."""

    task_id: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    spec: RecordingSpec
    create_time: int | None = None

"""The legacy protocol's request shapes (PascalCase names) and their translation to our models.

Everything that knows the protocol's field names lives here: parsing an envelope, turning
validation errors into `InvalidParam`/`MissingParam` messages that name the field
("Data.Width: must be between 0 and 2560"), and `to_spec()`, the one translation from a Start's
Data to `webrecord.api.models.RecordingSpec`. Replies are built by `replies`, errors by `errors`.

Types are strict: "1280" is not a Width and 1 is not a ManualStart. Unknown fields are errors
(a typo must not silently fall back to a default). `null` and, for optional text fields, ""
mean "not given".
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from webrecord.api.protocol.errors import AdapterErrorCode, ApiError
from webrecord.api import media
from webrecord.api import page as pg
from webrecord.api import snapshots as snap
from webrecord.api import models as m
from webrecord.api.live import MAX_LIVE_OUTPUTS, parse_live_url
from webrecord.api.names import ContainedDir, ContainedName

TASK_ID_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_URL_PATTERN = r"^https?://"
_HEX32 = r"^[0-9a-fA-F]{32}$"


class ProtocolModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: Any) -> Any:
        # Legacy clients send "" for "not set" in optional text fields.
        field = cls.model_fields[info.field_name]
        if value == "" and not field.is_required() and field.default is None:
            return None
        return value


class CosData(ProtocolModel):
    Domain: str | None = Field(None, max_length=1024, description="Public domain for FileURL")
    Bucket: str | None = Field(None, max_length=255)
    Region: str | None = Field(None, max_length=64)
    # The same rules as the models (and the CRD): here so the error names the protocol field.
    TargetDir: ContainedDir = Field(None, max_length=1024, description="Default: the task id")
    TargetName: ContainedName = Field(None, max_length=255, description="Default: stop timestamp")


class MediaInfoData(ProtocolModel):
    MediaName: str | None = Field(None, max_length=256)
    ExpireTime: str | None = Field(None, max_length=64, description="ISO 8601")
    StorageRegion: str | None = Field(None, max_length=64)
    ClassId: int | None = Field(None, ge=0, le=2**31 - 1)
    SourceContext: str | None = Field(None, max_length=250)


class ProcedureInfoData(ProtocolModel):
    Procedure: str | None = Field(None, max_length=256)
    SessionContext: str | None = Field(None, max_length=1000)


class VodData(ProtocolModel):
    MediaInfo: MediaInfoData | None = None
    ProcedureInfo: ProcedureInfoData | None = None
    SubAppId: int | None = Field(None, ge=0, le=2**31 - 1)


class VideoData(ProtocolModel):
    Muxer: Literal["mp4", "hls"] | None = Field(None, description="Default mp4")
    EncryptKey: str | None = Field(
        None, pattern=_HEX32, description="AES-128 key, 32 hex digits; HLS only"
    )
    AuthUrl: str | None = Field(None, max_length=8192, description="Key URI in the HLS playlist")
    # Extensions (webrecord.api.media): unset = the recorder's defaults.
    FrameRate: int | None = media.frame_rate_field()
    VideoBitrate: int | None = media.video_bitrate_field()
    Quality: int | None = media.quality_field()
    KeyframeInterval: float | None = media.keyframe_interval_field()
    AudioBitrate: int | None = media.audio_bitrate_field()
    AudioOnly: bool | None = media.audio_only_field()

    @field_validator("KeyframeInterval", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # Strict mode refuses 2 for a float; whole seconds are the common case.
        return float(value) if type(value) is int else value

    @field_validator("AuthUrl")
    @classmethod
    def _key_uri(cls, value: str | None) -> str | None:
        return m.http_url(value)

    @model_validator(mode="after")
    def _key_needs_hls(self) -> "VideoData":
        if self.EncryptKey and self.Muxer != "hls":
            raise ValueError("EncryptKey requires Muxer 'hls'")
        problem = media.encoding_problem(self.Muxer, self.VideoBitrate, self.Quality,
                                         self.AudioOnly, self.FrameRate, self.KeyframeInterval)
        if problem:
            raise ValueError(media.protocol_words(problem))
        return self


class LiveData(ProtocolModel):
    Url: str = Field(min_length=1, max_length=4096, description=(
        "rtmp://host[:port]/app/stream, rtmps://... or srt://host:port[?streamid=...]; "
        "Describe shows it redacted"))

    @field_validator("Url")
    @classmethod
    def _live_url(cls, value: str) -> str:
        parse_live_url(value)  # UrlRejected (a ValueError) names the rule
        return value


def _unique_urls(value: list[LiveData] | None) -> list[LiveData] | None:
    if value and len({o.Url for o in value}) != len(value):
        raise ValueError("the same Url twice")
    return value


# The one rule set of a list of live receivers, at Start (Data.Output.Live) and in UpdateLive
# (Data.Live): each Url parsed alike, at most MAX_LIVE_OUTPUTS, no Url twice.
LiveList = Annotated[list[LiveData], Field(max_length=MAX_LIVE_OUTPUTS),
                     AfterValidator(_unique_urls)]


class SnapshotsData(ProtocolModel):
    """Extension: JPEG snapshots and a poster frame (webrecord.api.snapshots)."""
    IntervalSeconds: int | None = snap.interval_field()
    Poster: bool | None = Field(None, description=snap.DOC["poster"])
    MaxCount: int | None = snap.max_count_field(None)

    @model_validator(mode="after")
    def _something_to_take(self) -> "SnapshotsData":
        if self.IntervalSeconds is None and self.Poster is False:
            raise ValueError(snap.protocol_words(snap.NOTHING_TO_TAKE))
        return self


class OutputData(ProtocolModel):
    Cos: CosData | None = None
    Vod: VodData | None = None
    Video: VideoData | None = None
    Live: LiveList | None = Field(
        None, description="Extension: live receivers (RTMP/RTMPS/SRT) of the recording's own encode")
    Snapshots: SnapshotsData | None = Field(None, description=snap.DOC["snapshots"])
    LiveHls: bool | None = Field(
        None, description="Extension, Video.Muxer hls only: a growing EVENT playlist beside the "
        "final HLS while recording (Describe: LiveHls.Url); ends with #EXT-X-ENDLIST at Stop")

    @model_validator(mode="after")
    def _snapshots_need_video(self) -> "OutputData":
        if self.Snapshots is not None and self.Video is not None and self.Video.AudioOnly:
            raise ValueError(snap.protocol_words(snap.AUDIO_ONLY))
        return self

    @model_validator(mode="after")
    def _live_hls_needs_hls(self) -> "OutputData":
        if self.LiveHls and (self.Video is None or self.Video.Muxer != "hls"):
            raise ValueError("LiveHls requires Video.Muxer 'hls' (the live playlist is HLS)")
        return self


class HeaderData(ProtocolModel):
    Name: pg.HeaderName
    Value: pg.HeaderValue


class CookieData(ProtocolModel):
    Name: pg.CookieName
    Value: pg.CookieValue
    Domain: pg.CookieDomain | None = Field(None, description="Default: the RecordURL's host")
    Path: pg.CookiePath | None = None
    Secure: bool | None = None
    HttpOnly: bool | None = None
    SameSite: Literal["Lax", "Strict", "None"] | None = None


class PageData(ProtocolModel):
    """Extension: page control (webrecord.api.page)."""
    UserAgent: Annotated[str | None, Field(None, min_length=1, max_length=512,
                                           description=pg.DOC["user_agent"]),
                         AfterValidator(pg.check_user_agent)]
    DeviceScaleFactor: float | None = pg.scale_field()
    Headers: list[HeaderData] | None = Field(None, max_length=pg.MAX_HEADERS,
                                             description=pg.DOC["headers"])
    Cookies: list[CookieData] | None = Field(None, max_length=pg.MAX_COOKIES,
                                             description=pg.DOC["cookies"])
    Scripts: list[Annotated[str, pg.InjectedText]] | None = Field(
        None, max_length=pg.MAX_INJECTED, description=pg.DOC["scripts"])
    Styles: list[Annotated[str, pg.InjectedText]] | None = Field(
        None, max_length=pg.MAX_INJECTED, description=pg.DOC["styles"])
    ConsoleSignals: bool | None = Field(None, description=pg.DOC["console_signals"])

    @field_validator("DeviceScaleFactor", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if type(value) is int else value  # strict mode: 2 is a factor too


class IdleData(ProtocolModel):
    """Extension: idle and blank pages."""
    Seconds: int | None = Field(None, ge=pg.MIN_IDLE_S, le=pg.MAX_IDLE_S,
                                description=pg.IDLE_DOC["seconds"])
    Action: Literal["stop", "pause"] | None = Field(None, description=pg.IDLE_DOC["action"])
    BlankSeconds: int | None = Field(None, ge=0, le=pg.MAX_BLANK_S,
                                     description=pg.IDLE_DOC["blank_seconds"])


class StartData(ProtocolModel):
    RecordURL: str = Field(min_length=1, max_length=8192, pattern=_URL_PATTERN)
    ManualStart: bool | None = Field(None, description="Wait for window.startRecord()")
    Width: int | None = Field(None, ge=0, le=m.MAX_DIMENSION, description="0 or unset: 1280")
    Height: int | None = Field(None, ge=0, le=m.MAX_DIMENSION, description="0 or unset: 720")
    CallbackURL: str | None = Field(None, max_length=8192, pattern=_URL_PATTERN)
    MaxDurationLimit: int | None = Field(
        None, ge=0, le=m.MAX_DURATION_LIMIT_S, description="Seconds; 0 or unset: 21600"
    )
    StorageType: Literal["cos", "cfs"] | None = Field(None, description="Default cfs")
    Output: OutputData | None = None
    Page: PageData | None = None
    Idle: IdleData | None = None

    @field_validator("RecordURL", "CallbackURL")
    @classmethod
    def _judgeable_url(cls, value: str | None) -> str | None:
        m.http_url(value)
        return value

    @model_validator(mode="after")
    def _cookies_for_this_site(self) -> "StartData":
        for i, cookie in enumerate((self.Page.Cookies or []) if self.Page else []):
            if cookie.Domain and (why := pg.cookie_domain_problem(cookie.Domain, self.RecordURL)):
                raise ValueError(f"Page.Cookies[{i}].Domain: {why}")
        return self


class TaskData(ProtocolModel):
    TaskID: str = Field(min_length=1, max_length=63, pattern=TASK_ID_PATTERN)


class LiveUpdateData(TaskData):
    """Extension: the live receivers of a recording or paused task become exactly `Live`."""
    Live: LiveList = Field(description=(
        "The whole new list (not a difference): Urls in it and not yet streamed to connect, "
        "those streamed to and missing from it end, the others go on untouched; [] ends all. "
        "Sending the same list again changes nothing"))


class ListData(ProtocolModel):
    Offset: int | None = Field(None, ge=0, le=10**9, description="Default 0")
    Limit: int | None = Field(None, ge=1, le=100, description="Default 20")


# The protocol's Actions: Start, the controls (`webrecord.api.models.Action`, one list of them),
# UpdateLive (extension: not a control of the recording, so not in spec.action), Describe and
# List; in this order (the OpenAPI document lists them so).
ActionName = enum.Enum("ActionName", [("START", "Start"), *((a.name, a.value) for a in m.Action),
                                      ("UPDATE_LIVE", "UpdateLive"),
                                      ("DESCRIBE", "Describe"), ("LIST", "List")], type=str)

DATA_MODELS: dict[ActionName, type[ProtocolModel]] = {
    ActionName.START: StartData,
    **{ActionName(a.value): TaskData for a in m.Action},
    ActionName.UPDATE_LIVE: LiveUpdateData,
    ActionName.DESCRIBE: TaskData,
    ActionName.LIST: ListData,
}

CONTROL_ACTIONS: dict[ActionName, m.Action] = {ActionName(a.value): a for a in m.Action}

_ENVELOPE_FIELDS = ("Action", "Data")


# ---------------------------------------------------------------- parsing


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Bytes -> JSON value, or MalformedBody naming what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(AdapterErrorCode.MALFORMED_BODY, f"body: not UTF-8 (byte {exc.start})")
    if not text.strip():
        raise ApiError(AdapterErrorCode.MALFORMED_BODY, "body: empty; expected a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(
            AdapterErrorCode.MALFORMED_BODY,
            f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
        )
    except RecursionError:
        raise ApiError(AdapterErrorCode.MALFORMED_BODY, "body: JSON nested too deeply")
    except ValueError as exc:  # NaN/Infinity, integers with too many digits
        raise ApiError(AdapterErrorCode.MALFORMED_BODY, f"body: not valid JSON ({exc})")


def parse_envelope(body: Any) -> tuple[ActionName, ProtocolModel]:
    """A decoded JSON body -> (action, validated Data), or the ApiError that names the field."""
    if not isinstance(body, dict):
        raise ApiError(
            AdapterErrorCode.MALFORMED_BODY,
            f"body: must be a JSON object with Action and Data, got {_json_type(body)}",
        )
    for key in body:
        if key not in _ENVELOPE_FIELDS:
            raise ApiError(
                AdapterErrorCode.INVALID_PARAM,
                f"{_short(key)}: unknown field (the envelope has only Action and Data)",
            )
    if "Action" not in body or body["Action"] is None:
        raise ApiError(AdapterErrorCode.MISSING_PARAM, "Action: required")
    raw_action = body["Action"]
    if not isinstance(raw_action, str):
        raise ApiError(
            AdapterErrorCode.INVALID_PARAM, f"Action: must be a string, got {_json_type(raw_action)}"
        )
    try:
        action = ActionName(raw_action)
    except ValueError:
        known = ", ".join(a.value for a in ActionName)
        raise ApiError(
            AdapterErrorCode.UNSUPPORTED_ACTION,
            f"Action: {_short(raw_action)!r} is not supported (one of: {known})",
        )
    data = body.get("Data")
    if data is None:
        if action is ActionName.LIST:
            data = {}
        else:
            raise ApiError(AdapterErrorCode.MISSING_PARAM, "Data: required")
    if not isinstance(data, dict):
        raise ApiError(
            AdapterErrorCode.INVALID_PARAM, f"Data: must be a JSON object, got {_json_type(data)}"
        )
    model = DATA_MODELS[action]
    try:
        return action, model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model, prefix=("Data",))


# ---------------------------------------------------------------- error messages


def validation_error(exc: ValidationError, model: type[BaseModel], prefix: tuple = ()) -> ApiError:
    """A ValidationError as an ApiError naming each field and its rule (the first few), so a
    caller fixes a body in one round trip; the ErrorCode follows the first problem."""
    errors = exc.errors(include_url=False)
    # Report a missing field first: it is usually the root cause of the others.
    errors.sort(key=lambda e: e["type"] != "missing")
    first = errors[0]
    empty = first["type"] == "string_too_short" and (first.get("ctx") or {}).get("min_length") == 1
    code = (
        AdapterErrorCode.MISSING_PARAM
        if first["type"] == "missing" or empty
        else AdapterErrorCode.INVALID_PARAM
    )
    problems = [_problem(error, model, prefix) for error in errors[:_LISTED_PROBLEMS]]
    message = "; ".join(problems)
    if len(errors) > _LISTED_PROBLEMS:
        rest = len(errors) - _LISTED_PROBLEMS
        message += f" (and {rest} more problem{'s' if rest > 1 else ''})"
    return ApiError(code, message)


_LISTED_PROBLEMS = 3


def _problem(error: dict, model: type[BaseModel], prefix: tuple) -> str:
    loc = tuple(str(p) for p in error["loc"])
    path = ".".join(prefix + tuple(_short(p, 40) for p in loc)) or "body"
    return f"{path}: {_rule(error, model, loc)}"


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "dict_type": "a JSON object",
    "list_type": "an array",
}


def _rule(error: dict, model: type[BaseModel], loc: tuple[str, ...]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, got {_json_type(error.get('input'))}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(model, loc)
        if low is not None and high is not None:
            return f"must be between {low} and {high}"
        if low is not None:
            return f"must be at least {low}"
        return f"must be at most {high}"
    if kind == "string_too_short":
        return "required (got an empty string)" if ctx.get("min_length") == 1 else f"must have at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must have at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return _PATTERN_WORDS.get(ctx.get("pattern", ""), "has an invalid format")
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_short(error.get('input'))!r}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error") or error.get("msg", "invalid value"))
    return "invalid value"


_PATTERN_WORDS = {
    _URL_PATTERN: "must be an http:// or https:// URL",
    _HEX32: "must be 32 hexadecimal digits (a 128-bit AES key)",
    TASK_ID_PATTERN: "not a task id (lowercase letters, digits and '-')",
}


def _bounds(model: type[BaseModel], loc: tuple[str, ...]) -> tuple[Any, Any]:
    """The ge/le limits declared on the field at `loc` (for "must be between A and B")."""
    current: Any = model
    info = None
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None, None
        info = current.model_fields.get(part)
        if info is None:
            return None, None
        current = _unwrap(info.annotation)
    low = high = None
    for meta in info.metadata if info else []:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            low = meta.gt
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
        elif isinstance(meta, annotated_types.Lt):
            high = meta.lt
    return low, high


def _unwrap(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


# In order: a bool is also an int.
_JSON_TYPES = ((type(None), "null"), (bool, "a boolean"), (int, "an integer"),
               (float, "a number"), (str, "a string"), (list, "an array"), (dict, "an object"))


def _json_type(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)),
                type(value).__name__)


def _short(value: Any, limit: int = 64) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- translation


def to_spec(data: StartData) -> m.RecordingSpec:
    """The one translation from a Start's Data to our RecordingSpec (defaults applied there)."""
    spec: dict[str, Any] = {"record_url": data.RecordURL}
    for name, attr in (
        ("manual_start", "ManualStart"),
        ("width", "Width"),
        ("height", "Height"),
        ("callback_url", "CallbackURL"),
        ("max_duration_limit", "MaxDurationLimit"),
        ("storage_type", "StorageType"),
    ):
        value = getattr(data, attr)
        if value is not None:
            spec[name] = value
    output: dict[str, Any] = {}
    if data.Output is not None:
        if data.Output.Cos is not None:
            output["cos"] = _snake(data.Output.Cos)
        if data.Output.Vod is not None:
            vod = data.Output.Vod
            output["vod"] = {
                "media_info": _snake(vod.MediaInfo) if vod.MediaInfo else None,
                "procedure_info": _snake(vod.ProcedureInfo) if vod.ProcedureInfo else None,
                "sub_app_id": vod.SubAppId,
            }
        if data.Output.Video is not None:
            output["video"] = _snake(data.Output.Video)
        if data.Output.Live:
            output["live"] = [{"url": o.Url} for o in data.Output.Live]
        if data.Output.Snapshots is not None:
            output["snapshots"] = _snake(data.Output.Snapshots)
        if data.Output.LiveHls is not None:
            output["live_hls"] = data.Output.LiveHls
    spec["output"] = output
    if data.Page is not None:
        spec["page"] = _snake_deep(data.Page)
    if data.Idle is not None:
        spec["idle"] = _snake_deep(data.Idle)
    try:
        return m.RecordingSpec.model_validate(spec)
    except ValidationError as exc:  # every rule is also checked above; this is a safety net
        first = exc.errors(include_url=False)[0]
        path = ".".join(["Data", *(_pascal(str(p)) for p in first["loc"])])
        raise ApiError(AdapterErrorCode.INVALID_PARAM, f"{path}: {first['msg']}")


def to_live(live: list[LiveData]) -> list[m.LiveOutput]:
    """Live receivers in the protocol's shape -> the models' (spec.output.live, PUT /live)."""
    return [m.LiveOutput(url=o.Url) for o in live]


def _snake(model: ProtocolModel) -> dict[str, Any]:
    from pydantic.alias_generators import to_snake

    return {to_snake(k): v for k, v in model.model_dump(exclude_none=True).items()}


def _snake_deep(model: ProtocolModel) -> dict[str, Any]:
    """PascalCase -> snake_case through nested lists of models (Page.Cookies[].Name)."""
    from pydantic.alias_generators import to_snake

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {to_snake(k): convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value
    return convert(model.model_dump(exclude_none=True))


def _pascal(name: str) -> str:
    if name in ("record_url", "callback_url"):
        return name.split("_")[0].capitalize() + "URL"
    from pydantic.alias_generators import to_pascal

    return to_pascal(name)


# ---------------------------------------------------------------- documentation examples

# The bodies the protocol's documentation shows; the OpenAPI description carries them and a
# test sends each one through real HTTP.
EXAMPLE_TASK_ID = "wr-0123456789abcdef01234567"
EXAMPLES: dict[str, dict[str, Any]] = {
    "Start": {
        "Action": "Start",
        "Data": {
            "RecordURL": "https://example.com/classroom?room=1",
            "ManualStart": False,
            "Width": 1280,
            "Height": 720,
            "CallbackURL": "https://example.com/webrecord/callback",
            "MaxDurationLimit": 3600,
            "StorageType": "cos",
            "Output": {
                "Cos": {
                    "Domain": "https://media.example.com",
                    "Bucket": "records-1250000000",
                    "Region": "ap-guangzhou",
                    "TargetDir": "class/2026-11-25",
                    "TargetName": "room-1",
                },
                "Vod": {
                    "MediaInfo": {
                        "MediaName": "room 1",
                        "ExpireTime": "2027-11-25T00:00:00Z",
                        "StorageRegion": "ap-guangzhou",
                        "ClassId": 0,
                        "SourceContext": "room=1",
                    },
                    "ProcedureInfo": {"Procedure": "transcode-720p", "SessionContext": "abc"},
                    "SubAppId": 1500000000,
                },
                "Video": {
                    "Muxer": "hls",
                    "EncryptKey": "00112233445566778899aabbccddeeff",
                    "AuthUrl": "https://example.com/hls-key",
                },
            },
        },
    },
    "StartMinimal": {"Action": "Start", "Data": {"RecordURL": "https://example.com/"}},
    "Pause": {"Action": "Pause", "Data": {"TaskID": EXAMPLE_TASK_ID}},
    "Resume": {"Action": "Resume", "Data": {"TaskID": EXAMPLE_TASK_ID}},
    "Refresh": {"Action": "Refresh", "Data": {"TaskID": EXAMPLE_TASK_ID}},
    "Stop": {"Action": "Stop", "Data": {"TaskID": EXAMPLE_TASK_ID}},
    "Cancel": {"Action": "Cancel", "Data": {"TaskID": EXAMPLE_TASK_ID}},
    "UpdateLive": {"Action": "UpdateLive", "Data": {"TaskID": EXAMPLE_TASK_ID, "Live": [
        {"Url": "rtmp://live.example.com/app/stream-key"},
        {"Url": "srt://live.example.com:9000?streamid=stream-key"}]}},
    "Describe": {"Action": "Describe", "Data": {"TaskID": EXAMPLE_TASK_ID}},
    "List": {"Action": "List", "Data": {"Offset": 0, "Limit": 20}},
}

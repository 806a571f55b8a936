"""Models shared by the recorder, the adapter and the operator."""

from webrecord.api.models import (  # noqa: F401
    Action,
    ErrorCode,
    Phase,
    RecorderStatus,
    RecordingSpec,
    RecordingTask,
    Result,
    VideoFile,
)

"""Snapshots (issue 15, an optional extension of `output`): a JPEG every N seconds of the video
and a poster frame at its end, delivered beside the video and listed in the Result.

Unset (the default) means none: a task that does not ask records and reports exactly as
before. The bounds and rule texts live here once; the models, the protocol's shapes, the CRD
and /openapi.json all use them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

MIN_INTERVAL_S, MAX_INTERVAL_S = 1, 3600
# Each snapshot is a line of the Result, of Describe and of the WebRecording's status: bounded
# so a six-hour recording at 1 s cannot grow a status past what etcd takes.
MAX_COUNT = 500
DEFAULT_MAX_COUNT = 100

NOTHING_TO_TAKE = "give intervalSeconds or poster: true (nothing to take)"
AUDIO_ONLY = "snapshots require video: video.audioOnly records none"

DOC = {
    "interval_seconds": f"A JPEG every N seconds of the video ({MIN_INTERVAL_S}-{MAX_INTERVAL_S}),"
    " the first at 0 s; video time, so paused time (not in the video) takes none. "
    "Unset: no periodic snapshots",
    "poster": "A JPEG of the video's last frame, taken at the end (default true)",
    "max_count": f"At most this many periodic snapshots, the first ones (1-{MAX_COUNT}, "
    f"default {DEFAULT_MAX_COUNT})",
    "snapshots": "Extension: JPEG snapshots every N seconds and a poster frame at the end, "
    "delivered beside the video; unset: none",
}


def interval_field() -> Any:
    return Field(None, ge=MIN_INTERVAL_S, le=MAX_INTERVAL_S, description=DOC["interval_seconds"])


def max_count_field(default: int | None) -> Any:
    return Field(default, ge=1, le=MAX_COUNT, description=DOC["max_count"])


def protocol_words(message: str) -> str:
    """A rule's message in the protocol's PascalCase names."""
    for camel, pascal in (("intervalSeconds", "IntervalSeconds"), ("poster: true", "Poster: true"),
                          ("video.audioOnly", "Video.AudioOnly")):
        message = message.replace(camel, pascal)
    return message


# CEL for the CRD: the same rules, so kubectl refuses what the protocol refuses.
CEL_SNAPSHOT_RULES = [("has(self.intervalSeconds) || !has(self.poster) || self.poster",
                       NOTHING_TO_TAKE)]
CEL_OUTPUT_RULES = [("!has(self.snapshots) || !has(self.video) || !has(self.video.audioOnly) "
                     "|| !self.video.audioOnly", AUDIO_ONLY)]

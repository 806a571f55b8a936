"""The legacy protocol's PascalCase shapes, built from our models in one place.

Both the adapter (Describe replies) and the delivery stage (callback bodies) use
`describe_body`, so a caller sees the same document either way.
"""

from __future__ import annotations

from typing import Any

from webrecord.api.models import RecorderStatus, Result, SnapshotFile, VideoFile

_TIME_FIELDS = {
    "create_time": "CreateTime",
    "start_time": "StartTime",
    "cancel_time": "CancelTime",
    "stop_time": "StopTime",
    "finish_time": "FinishTime",
}


def video_body(video: VideoFile) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Filename": video.filename,
        "FileSize": video.file_size,
        "FileDuration": round(video.file_duration, 3),
    }
    if video.file_id:
        body["FileId"] = video.file_id
    if video.file_url:
        body["FileURL"] = video.file_url
    return body


def snapshot_body(snapshot: SnapshotFile) -> dict[str, Any]:
    body: dict[str, Any] = {"Filename": snapshot.filename, "Time": round(snapshot.time, 3),
                            "FileSize": snapshot.file_size}
    if snapshot.file_url:
        body["FileURL"] = snapshot.file_url
    return body


def result_body(result: Result) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ErrorCode": result.error_code.value if result.error_code else "",
        "ErrorMessage": result.error_message or "",
        "Videos": [video_body(v) for v in result.videos],
    }
    # Extension (Output.Snapshots): only for a task that asked, so old callers see no change.
    if result.snapshots is not None:
        body["Snapshots"] = [snapshot_body(s) for s in result.snapshots]
    if result.poster is not None:
        body["Poster"] = snapshot_body(result.poster)
    return body


def describe_body(status: RecorderStatus) -> dict[str, Any]:
    """Describe reply (without RequestID): times appear only once they happened."""
    body: dict[str, Any] = {"TaskID": status.task_id, "Status": status.status.value}
    for field, name in _TIME_FIELDS.items():
        value = getattr(status, field)
        if value is not None:
            body[name] = value
    body["Result"] = result_body(status.result)
    if status.message:  # extension: progress, or why a `normal` task still waits
        body["Message"] = status.message
    if status.live:  # extension: each live output, its URL redacted
        body["Live"] = [{"Url": o.url, "State": o.state.value, "Message": o.message or "",
                         "Reconnects": o.reconnects, "SentBytes": o.sent_bytes,
                         "DroppedBytes": o.dropped_bytes} for o in status.live]
    if status.live_hls:  # extension: the growing HLS playlist of Output.LiveHls
        hls = status.live_hls
        body["LiveHls"] = {"Url": hls.url, "Segments": hls.segments, "Pending": hls.pending,
                           "Ended": hls.ended, "Message": hls.message or ""}
    return body

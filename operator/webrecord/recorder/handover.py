"""How a replacement recorder learns the state its task was left in (environment variables,
read as RecorderSettings): the operator and the local backend both start it this way."""

from __future__ import annotations

_STOPPED = ("canceled", "transcode", "upload", "callback")


def resume_env(phase: str | None) -> dict[str, str]:
    """Env of a replacement recorder for a task last seen in `phase`: a paused task starts
    paused; a stopped one records nothing more and packages and delivers what is stored."""
    if phase == "paused":
        return {"WEBRECORD_START_PAUSED": "true"}
    if phase in _STOPPED:
        return {"WEBRECORD_RESUME_STOPPED": "true"}
    return {}

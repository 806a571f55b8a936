"""Metrics and liveness details: every watch event of a WebRecording goes through the
operator's RecordingBook (recordings by status, finished by ErrorCode, start latency, delivered
bytes, callback outcomes, restarts); kopf's liveness endpoint (/healthz) reports how many it
follows. The book takes its first look at each object after a start as the baseline, so a
restarted operator does not count old tasks again."""

from __future__ import annotations

from typing import Any

import kopf

from webrecord.api.resource import GROUP, PLURAL, VERSION, recorder_status
from webrecord.metrics import OPERATOR_BOOK


@kopf.on.event(GROUP, VERSION, PLURAL)
def observe(event: dict[str, Any], name: str, namespace: str, body: kopf.Body, **_: Any) -> None:
    key = f"{namespace}/{name}"
    if event.get("type") == "DELETED":
        OPERATOR_BOOK.forget(key)
        return
    raw = dict(body.get("status") or {})
    status = recorder_status(name, raw).model_copy(update={"restarts": int(raw.get("restarts") or 0)})
    OPERATOR_BOOK.observe(key, status, bool((body.get("spec") or {}).get("callbackUrl")))


@kopf.on.probe(id="recordings")
def recordings(**_: Any) -> dict[str, int]:
    """Unfinished WebRecordings by status (the liveness endpoint answers only while the
    operator's loop runs these probes)."""
    return dict(OPERATOR_BOOK.by_phase())

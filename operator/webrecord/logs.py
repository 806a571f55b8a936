"""Structured logging: one JSON object per line on stderr.

Use `log = logging.getLogger(__name__)` and pass fields with `extra={"fields": {...}}`,
or the helper `event(log, "message", key=value)`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str | None = None) -> None:
    """Configure the root logger once; level from WEBRECORD_LOG_LEVEL (default INFO)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("WEBRECORD_LOG_LEVEL", "INFO")).upper())


def event(log: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, msg, extra={"fields": fields})


def now() -> int:
    """Unix seconds, the protocol's time unit."""
    return int(time.time())

"""List-valued settings from one environment variable: a JSON list or "a,b,c"."""

from __future__ import annotations

import json
from typing import Any


def split_list(value: Any) -> Any:
    """For a pydantic `mode="before"` validator of a `NoDecode` list field."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value

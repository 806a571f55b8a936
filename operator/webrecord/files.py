"""Small file helpers shared by the recorder, the delivery stage and the adapter."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old content or the new, never a part: write a temp file beside it, then
    rename. Raises OSError (the temp file is removed); callers decide whether that is fatal."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise

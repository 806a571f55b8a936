"""Small file helpers shared by the recorder, the delivery stage and the adapter."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from webrecord.logs import event

log = logging.getLogger(__name__)


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


def try_write_atomic(path: Path, text: str) -> bool:
    """write_atomic for files whose loss is not fatal (a recorder's status, port and result
    files): a failed write is logged and False returned, the caller goes on."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        event(log, "could not write file", logging.WARNING, path=str(path), error=str(exc))
        return False
    return True


class PathEscape(ValueError):
    """A path built from caller-chosen names would leave its root."""


def contained(root: Path, *parts: str | Path) -> Path:
    """`root/parts...`, resolved (symlinks followed), or PathEscape when it is not strictly
    inside `root`: a last line of defence behind the name rules of `webrecord.api.names`."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if base not in target.parents:
        raise PathEscape(f"{target} is outside {base}")
    return target


def write_private(path: Path, data: str | bytes) -> None:
    """Like write_atomic, for secrets: the file is created 0600 (os.open with the mode, so no
    moment exists where another user could open it) and never follows a planted symlink."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise

"""Filesystem target (the cfs case): atomic copies into a mounted directory.

A reader of the target never sees a partial file under its final name: data goes to a hidden
temporary name in the same directory (same filesystem, so rename is atomic), is fsynced, then
renamed. An HLS directory is staged the same way and renamed as a whole.

Callers that write names chosen by a task pass `root`: the final path must resolve inside it
(`webrecord.files.contained`), and `replace=False` publishes without overwriting what another
task put there (FileExistsError), while a retry of the same delivery (same bytes) succeeds.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from webrecord.files import contained

_CHUNK = 4 * 1024 * 1024


class DiskFullError(OSError):
    """The target cannot hold the file (ENOSPC, EDQUOT, EFBIG); the source is untouched."""


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial")


def _fsync_dir(path: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_data(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())


def _raise_mapped(exc: OSError, target: Path) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise DiskFullError(exc.errno, f"{os.strerror(exc.errno)} ({target.parent})") from exc
    raise exc


def atomic_copy(src: Path, final: Path, root: Path | None = None, replace: bool = True) -> Path:
    """Copy `src` to `final` so that `final` appears complete or not at all."""
    if root is not None:
        final = contained(root, final)
    if not replace and _same_file(src, final):
        return final  # this delivery already put it there
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final)
    try:
        _copy_data(src, tmp)
        if replace:
            os.replace(tmp, final)
        else:
            _publish_new(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError) and _same_file(src, final):
            return final
        _raise_mapped(exc, final)
    _fsync_dir(final.parent)
    return final


def _publish_new(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final` unless `final` exists (FileExistsError): link, then unlink."""
    try:
        os.link(tmp, final)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
            raise
        if final.exists():  # a filesystem without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, "file exists", str(final)) from exc
        os.replace(tmp, final)
        return
    tmp.unlink()


def _same_file(src: Path, other: Path) -> bool:
    try:
        if other.stat().st_size != src.stat().st_size:
            return False
        with open(src, "rb") as a, open(other, "rb") as b:
            while chunk := a.read(_CHUNK):
                if chunk != b.read(len(chunk)):
                    return False
        return True
    except OSError:
        return False


def atomic_copy_tree(files: dict[str, Path], final_dir: Path, root: Path | None = None,
                     replace: bool = True, marker: str | None = None) -> Path:
    """Copy `{relative name: source}` into a new directory `final_dir`, published by one rename.

    An existing `final_dir` (an earlier delivery of the same task) is replaced: the old one is
    moved aside first, then removed once the new one is in place. With `replace=False` an
    existing `final_dir` is left alone: FileExistsError, unless its `marker` file (a name in
    `files`) has the same bytes as ours (the same delivery, retried).
    """
    if root is not None:
        final_dir = contained(root, final_dir)
        for rel in files:
            contained(final_dir, rel)
    if not replace and final_dir.exists():
        if marker is not None and _same_file(files[marker], final_dir / marker):
            return final_dir
        raise FileExistsError(errno.EEXIST, "directory exists", str(final_dir))
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = _tmp_name(final_dir)
    old: Path | None = None
    try:
        stage.mkdir()
        for rel, src in files.items():
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            _copy_data(src, dst)
        _fsync_dir(stage)
        if final_dir.exists():
            old = _tmp_name(final_dir)
            os.replace(final_dir, old)
        os.replace(stage, final_dir)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None and not final_dir.exists():
            os.replace(old, final_dir)  # put the earlier delivery back
        _raise_mapped(exc, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(final_dir.parent)
    return final_dir

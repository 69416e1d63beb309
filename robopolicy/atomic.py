"""Writes that are all or nothing: a file or a directory is either the old one or the new one.

A file goes to a temporary sibling, is flushed and fsynced, then renamed over the target with
``os.replace`` (atomic on POSIX), and the directory entry is fsynced. A directory is built in a
hidden sibling and renamed into place only when complete (``docs/RELIABILITY.md`` R14).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data``; a crash leaves the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, document: Any, *, indent: int | None = 2) -> None:
    """Replace ``path`` with ``document`` as UTF-8 JSON, atomically."""
    text = json.dumps(document, indent=indent, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``path`` to fill; it becomes ``path`` on success.

    On an exception the sibling is removed and ``path`` is untouched. An existing non-empty
    ``path`` is refused unless ``overwrite``, and then replaced only after the new one is
    complete.
    """
    from robopolicy.errors import DataError

    path = Path(path)
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise DataError(path, "already exists; choose another path or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
        os.replace(staging, path)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(staging, path)
    _fsync_dir(path.parent)

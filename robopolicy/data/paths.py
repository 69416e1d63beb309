"""Paths made from what a dataset says stay inside the dataset (``docs/RELIABILITY.md`` R18).

Feature names, keys and ``info.json`` path templates come from the input, so every path built
from them goes through :func:`inside` (or :func:`fill_template`, which also checks the template
itself): a path that would leave its root — ``..``, an absolute path, a name longer than a file
system allows — is a :class:`~robopolicy.errors.DataError` naming the file and the field, before
anything is opened or written. The check is on the path's text, not on symbolic links: the
Hugging Face cache links a dataset's files to blobs outside it, and those must keep reading.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

from robopolicy.errors import DataError

NAME_MAX = 255
"""Longest file name (bytes of UTF-8) that Linux, macOS and Windows file systems all take."""
PATH_MAX = 4096
"""Longest path Linux takes, terminating NUL included."""
_FORMAT_SPEC = re.compile(r"0?[0-9]{0,2}d?")
"""Format specs a path template may use on its fields (``03d``, ``06d``): bounded widths."""


def check_name(name: str, *, where: object, field: str) -> str:
    """``name`` if it can be one path component (a file or directory name) as it is; otherwise
    a DataError naming ``where`` and ``field``: empty, ``.``/``..``, a leading dot (zarr's own
    metadata files), a separator or NUL, or longer than :data:`NAME_MAX` bytes."""
    text = name if isinstance(name, str) else ""
    if (
        not text
        or text.startswith(".")
        or any(c in text for c in "/\\\0")
        or len(text.encode("utf-8", "surrogatepass")) > NAME_MAX
    ):
        shown = repr(name) if len(text) <= 80 else repr(text[:77] + "...")
        raise DataError(
            where,
            f"{shown} cannot be a file name: it must be non-empty, not start with '.', contain "
            f"no '/', '\\' or NUL, and be at most {NAME_MAX} bytes",
            key=field,
        )
    return name


def inside(root: str | Path, relative: str, *, where: object, field: str) -> Path:
    """``root / relative``, refused (DataError naming ``where`` and ``field``) unless it stays
    inside ``root``: not absolute, no ``..`` above the root, no component over NAME_MAX bytes."""
    root = Path(root)
    if not isinstance(relative, str) or not relative or "\0" in relative:
        raise DataError(where, f"path {relative!r} is empty or not text", key=field)
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, relative))
    if os.path.isabs(relative) or os.path.commonpath([base, target]) != base or target == base:
        raise DataError(where, f"path {relative!r} leads outside {root}", key=field)
    parts = Path(relative).parts
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in parts)
    if longest > NAME_MAX or len(target.encode("utf-8", "surrogatepass")) >= PATH_MAX:
        raise DataError(
            where,
            f"path {relative[:80]!r}{'...' if len(relative) > 80 else ''} is too long for a "
            f"file system (names up to {NAME_MAX} bytes, paths up to {PATH_MAX})",
            key=field,
        )
    return root / relative


def fill_template(
    root: str | Path, template: str, *, where: object, field: str, **fields: object
) -> Path:
    """Fill a path ``template`` (``info.json``'s ``data_path``, ``video_path``) and return it
    under ``root``. The template may use only ``fields`` by name, with at most a zero-padded
    width (``{episode_index:06d}``); the result must stay inside ``root`` (:func:`inside`)."""
    if not isinstance(template, str):
        raise DataError(where, f"path template {template!r} is not text", key=field)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DataError(where, f"bad path template {template!r} ({exc})", key=field) from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in fields or conversion or not _FORMAT_SPEC.fullmatch(spec or ""):
            allowed = ", ".join("{" + f + "}" for f in fields)
            raise DataError(
                where,
                f"bad path template {template!r}: {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not one of {allowed} (with an optional width)",
                key=field,
            )
    try:
        relative = template.format(**fields)
    except (ValueError, TypeError) as exc:  # e.g. ``{video_key:03d}``: a width on a name
        raise DataError(where, f"bad path template {template!r} ({exc})", key=field) from exc
    return inside(root, relative, where=where, field=field)

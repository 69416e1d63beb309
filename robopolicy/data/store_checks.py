"""What an episode store must be before any chunk of it is decoded (R20, R21).

:func:`read_layouts` reads every array's ``.zarray`` as JSON — before zarr parses it — and
refuses a codec off the allowlist (pickle and the like never reach numcodecs), a non-numeric
dtype, a malformed shape, or a chunk larger than the read limits. :func:`check_chunks_exist`
lists an array's chunk files once and refuses an array that lacks one covering the rows it
must hold (zarr would read it as the fill value: zeros). :func:`check_chunk_headers` reads the
first bytes of each chunk a read will touch and refuses one whose compressed header declares
more decoded bytes than the array's chunk holds, so a forged header cannot make the decoder
allocate gigabytes. Checksums (the CRC32 filter of the stores we write) are verified by
numcodecs as each chunk decodes.

Allowlisted: the ``blosc`` compressor (ours, and diffusion_policy's replay buffers: lz4 or zstd
inside blosc), ``zstd`` (zarr-python 3's default for format-2 arrays), no compressor, and the
``crc32`` filter. Both compressors record the decoded size in their header.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.data.limits import ReadLimits, check_count
from robopolicy.errors import DataError

COMPRESSORS = ("blosc", "zstd")
FILTERS = {"crc32": 4}
"""Allowlisted filters and the bytes each adds to an encoded chunk."""
GROUPS = ("data", "meta")
_MAX_METADATA_BYTES = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclasses.dataclass(frozen=True)
class ArrayLayout:
    """One array's ``.zarray``, checked."""

    key: str
    """``data/<key>`` or ``meta/<name>``."""
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    compressor: str | None
    filters: tuple[str, ...]
    separator: str

    @property
    def frame_bytes(self) -> int:
        """Bytes of one row (one frame of a data array)."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    @property
    def chunk_bytes(self) -> int:
        """Decoded bytes one chunk may hold: the chunk's values plus what the filters add."""
        values = math.prod(self.chunks) * self.dtype.itemsize
        return values + sum(FILTERS[name] for name in self.filters)


def read_layouts(root: Path, limits: ReadLimits) -> dict[str, ArrayLayout]:
    """The checked layout of every array under ``data/`` and ``meta/`` of the store ``root``."""
    layouts = {}
    for group in GROUPS:
        folder = root / group
        if not folder.is_dir():
            continue  # EpisodeStore.open names the missing group
        for child in sorted(folder.iterdir()):
            file = child / ".zarray"
            if file.is_file():
                key = f"{group}/{child.name}"
                layouts[key] = _parse_layout(file, key, _read_json(file), limits)
    return layouts


def _read_json(file: Path) -> Any:
    try:
        if file.stat().st_size > _MAX_METADATA_BYTES:
            raise DataError(file, f"array metadata over {_MAX_METADATA_BYTES} bytes")
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(file, f"unreadable array metadata ({exc})") from exc


def _sizes(file: Path, document: dict[str, Any], field: str, least: int) -> tuple[int, ...]:
    value = document.get(field)
    if not (
        isinstance(value, list)
        and value
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= least for d in value)
    ):
        raise DataError(file, f"expected a list of integers >= {least}, got {value!r}", key=field)
    return tuple(value)


def check_codec(where: object, codec: Any, field: str, allowed: tuple[str, ...] | dict) -> str:
    """The id of ``codec`` (a numcodecs config dict), or a DataError naming ``where`` and
    ``field`` when it is not ``allowed`` (:data:`COMPRESSORS` or :data:`FILTERS`)."""
    name = codec.get("id") if isinstance(codec, dict) else None
    if not isinstance(name, str) or name not in allowed:
        shown = repr(name) if isinstance(name, str) else repr(codec)[:80]
        raise DataError(
            where,
            f"codec {shown} is not one robopolicy decodes (allowed: {', '.join(allowed)})",
            key=field,
        )
    return name


def _parse_layout(file: Path, key: str, document: Any, limits: ReadLimits) -> ArrayLayout:
    if not isinstance(document, dict):
        raise DataError(file, "expected a JSON object")
    if document.get("zarr_format") != 2:
        raise DataError(file, f"expected 2, got {document.get('zarr_format')!r}", key="zarr_format")
    shape = _sizes(file, document, "shape", 0)
    chunks = _sizes(file, document, "chunks", 1)
    if len(chunks) != len(shape):
        raise DataError(
            file, f"{len(chunks)} chunk sizes for {len(shape)} dimensions", key="chunks"
        )
    try:
        dtype = np.dtype(document.get("dtype")) if isinstance(document.get("dtype"), str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf" or dtype.fields is not None:
        raise DataError(file, f"not a numeric dtype: {document.get('dtype')!r}", key="dtype")
    compressor = document.get("compressor")
    if compressor is not None:
        compressor = check_codec(file, compressor, "compressor", COMPRESSORS)
    filters = document.get("filters") or []
    if not isinstance(filters, list):
        raise DataError(file, f"expected a list, got {filters!r}", key="filters")
    names = tuple(check_codec(file, codec, "filters", FILTERS) for codec in filters)
    separator = document.get("dimension_separator") or "."
    if separator not in (".", "/"):
        raise DataError(file, f"expected '.' or '/', got {separator!r}", key="dimension_separator")
    layout = ArrayLayout(key, shape, chunks, dtype, compressor, names, separator)
    what = "decoded bytes in one chunk"
    check_count(file, layout.chunk_bytes, limits, "max_episode_bytes", what, key="chunks")
    return layout


def _grid(layout: ArrayLayout, rows: int) -> list[int]:
    """Chunks along each dimension that hold rows ``[0, rows)``."""
    return [-(-rows // layout.chunks[0])] + [
        -(-size // chunk) for size, chunk in zip(layout.shape[1:], layout.chunks[1:], strict=True)
    ]


def _chunk_name(layout: ArrayLayout, index: tuple[int, ...]) -> str:
    return layout.separator.join(str(i) for i in index)


def check_chunks_exist(
    root: Path, layout: ArrayLayout, rows: int, *, missing_ok: bool = False
) -> int:
    """DataError naming the first chunk file missing among those holding rows ``[0, rows)``;
    with ``missing_ok``, the number missing instead (see ``EpisodeStore``'s legacy stores)."""
    grid = _grid(layout, rows)
    expected = math.prod(grid) if rows else 0
    if not expected:
        return 0
    folder = root / layout.key
    present: set[tuple[int, ...]] = set()
    for directory, _, files in os.walk(folder):
        prefix = os.path.relpath(directory, folder)
        for name in files:
            relative = name if prefix == "." else f"{prefix}{os.sep}{name}"
            parts = relative.replace(os.sep, "/").split(layout.separator)
            if len(parts) == len(grid) and all(p.isdigit() for p in parts):
                index = tuple(int(p) for p in parts)
                if all(i < n for i, n in zip(index, grid, strict=True)):
                    present.add(index)
    if len(present) == expected or missing_ok:
        return expected - len(present)
    missing = next(i for i in itertools.product(*map(range, grid)) if i not in present)
    raise DataError(
        folder / _chunk_name(layout, missing),
        f"missing chunk file: {expected - len(present)} of the {expected} chunks holding "
        f"rows [0, {rows}) are absent (zarr would read them as zeros)",
        key=layout.key,
    )


def check_chunk_headers(
    root: Path, layout: ArrayLayout, start: int, stop: int, *, missing_ok: bool = False
) -> None:
    """Before rows ``[start, stop)`` are decoded: every chunk they touch exists (unless
    ``missing_ok``) and declares at most :attr:`ArrayLayout.chunk_bytes` decoded bytes (a raw
    chunk: that many bytes on disk)."""
    if stop <= start:
        return
    first, last = start // layout.chunks[0], (stop - 1) // layout.chunks[0]
    others = [range(n) for n in _grid(layout, 0)[1:]]
    limit = layout.chunk_bytes
    for index in itertools.product(range(first, last + 1), *others):
        file = root / layout.key / _chunk_name(layout, index)
        try:
            with open(file, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                header = f.read(32)
        except FileNotFoundError as exc:
            if missing_ok:
                continue
            raise DataError(file, "missing chunk file", key=layout.key) from exc
        except OSError as exc:
            raise DataError(file, f"unreadable chunk file ({exc})", key=layout.key) from exc
        declared = _declared_size(file, layout, header, size)
        if declared > limit:
            raise DataError(
                file,
                f"chunk declares {declared:,} decoded bytes, the array's chunks hold {limit:,}",
                key=layout.key,
            )


def _declared_size(file: Path, layout: ArrayLayout, header: bytes, size: int) -> int:
    """Decoded bytes the chunk's header says it holds (its size on disk when uncompressed)."""
    if layout.compressor is None:
        return size
    if layout.compressor == "blosc":
        if len(header) < 16:
            raise DataError(file, "truncated blosc chunk (no header)", key=layout.key)
        return int.from_bytes(header[4:8], "little")
    # zstd frame header: magic, descriptor, [window], [dictionary id], content size
    if len(header) < 6 or header[:4] != _ZSTD_MAGIC:
        raise DataError(file, "not a zstd frame", key=layout.key)
    descriptor = header[4]
    single = (descriptor >> 5) & 1
    position = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3]
    width = (1 if single else 0, 2, 4, 8)[descriptor >> 6]
    if not width or len(header) < position + width:
        raise DataError(file, "zstd frame does not declare its decoded size", key=layout.key)
    value = int.from_bytes(header[position : position + width], "little")
    return value + 256 if width == 2 else value

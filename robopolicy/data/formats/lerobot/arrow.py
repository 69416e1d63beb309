"""Parquet columns as numpy arrays and back, as LeRobot (through Hugging Face ``datasets``) lays
them out.

A feature of ``shape: [1]`` is a plain scalar column; a feature of shape ``[n]`` is a
``fixed_size_list<dtype>[n]`` column (older writers may use variable-length lists, which read the
same when every row has ``n`` values); higher ranks nest lists. Image features (``dtype: image``)
are structs of encoded ``bytes`` and a ``path``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data.limits import check_count, read_limits
from robopolicy.data.paths import inside
from robopolicy.errors import DataError


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a parquet file (or some of its columns); DataError naming it when unreadable or
    when its footer declares more decoded bytes than one read may hold (R21)."""
    try:
        footer = pq.read_metadata(path)
        size = sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups))
        what = "decoded bytes in one file"
        check_count(path, size, read_limits(), "max_episode_bytes", what, key=None)
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except FileNotFoundError as exc:
        raise DataError(path, "missing file") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(path, f"unreadable parquet file ({exc})") from exc


def parquet_schema(path: Path) -> pa.Schema:
    """Schema of a parquet file, read from its footer only."""
    try:
        return pq.read_schema(path)
    except FileNotFoundError as exc:
        raise DataError(path, "missing file") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(path, f"unreadable parquet file ({exc})") from exc


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def column_to_numpy(
    column: pa.ChunkedArray | pa.Array,
    shape: Sequence[int],
    dtype: np.dtype | None,
    *,
    path: Path,
    key: str,
) -> np.ndarray:
    """Rows of a (possibly nested) list column as a (T, *frame_shape) array.

    ``shape`` is the feature's shape from ``info.json``: ``[1]`` allows a scalar column, which
    becomes (T,); list levels must hold exactly the sizes ``shape`` says. ``dtype`` (None: the
    column's own) is what the values are cast to, as LeRobot casts to its declared features.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    rows = len(array)
    dims: list[int] = []
    while _is_list(array.type):
        if array.null_count:
            raise DataError(path, f"{array.null_count} empty (null) rows", key=key)
        level = len(dims)
        if level >= len(shape):
            raise DataError(
                path, f"list column nested deeper than info.json shape {list(shape)}", key=key
            )
        want = shape[level]
        if pa.types.is_fixed_size_list(array.type):
            size = array.type.list_size
        else:
            lengths = np.diff(np.asarray(array.offsets))
            size = int(lengths[0]) if lengths.size else 0
            if lengths.size and np.any(lengths != size):
                bad = int(np.argmax(lengths != size))
                raise DataError(
                    path,
                    f"list lengths differ between rows ({size} in row 0, "
                    f"{int(lengths[bad])} in row {bad})",
                    key=key,
                )
        if size != want:
            raise DataError(
                path,
                f"list column holds {size} values per row at depth {level}, "
                f"info.json shape is {list(shape)}",
                key=key,
            )
        dims.append(size)
        array = array.flatten()
    if len(dims) < len(shape) and list(shape) != [1]:
        raise DataError(
            path, f"column of type {column.type} cannot hold shape {list(shape)}", key=key
        )
    if array.null_count:
        raise DataError(path, f"{array.null_count} missing (null) values", key=key)
    if pa.types.is_struct(array.type) or pa.types.is_string(array.type):
        raise DataError(path, f"column of type {column.type} is not numeric", key=key)
    values = array.to_numpy(zero_copy_only=False)
    if dtype is not None and values.dtype != dtype:
        values = values.astype(dtype)
    return values.reshape(rows, *dims)


def numpy_to_column(values: np.ndarray) -> pa.Array:
    """A (T, *shape) array as a column: scalar for (T,), nested fixed-size lists otherwise."""
    values = np.ascontiguousarray(values)
    array: pa.Array = pa.array(values.reshape(-1), type=pa.from_numpy_dtype(values.dtype))
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def hf_feature(kind: pa.DataType) -> dict[str, Any]:
    """The Hugging Face ``datasets`` (4.x) feature description of an arrow column type."""
    if pa.types.is_fixed_size_list(kind):
        return {"feature": hf_feature(kind.value_type), "length": kind.list_size, "_type": "List"}
    return {"dtype": _HF_DTYPES.get(str(kind), str(kind)), "_type": "Value"}


_HF_DTYPES = {"bool": "bool", "halffloat": "float16", "float": "float32", "double": "float64"}


def with_hf_metadata(table: pa.Table) -> pa.Table:
    """``table`` with the ``huggingface`` schema metadata ``datasets`` writes beside its columns."""
    features = {field.name: hf_feature(field.type) for field in table.schema}
    document = {"info": {"features": features}}
    return table.replace_schema_metadata({"huggingface": json.dumps(document)})


def decode_images(
    column: pa.ChunkedArray, root: Path, shape: Sequence[int], *, path: Path, key: str
) -> np.ndarray:
    """An image column (struct of encoded ``bytes`` and ``path``) as (T, H, W, 3) uint8.

    An image larger than ``shape`` (``info.json``'s, in either H, W, C or C, H, W order) is
    refused from its header, before it is decoded; so is a ``path`` outside ``root``."""
    from PIL import Image

    declared = math.prod(shape)
    if not pa.types.is_struct(column.type):
        raise DataError(
            path,
            f"image column of type {column.type}, expected a struct of bytes and path",
            key=key,
        )
    frames = []
    for row, item in enumerate(column.to_pylist()):
        item = item or {}
        try:
            if item.get("bytes") is not None:
                image = Image.open(io.BytesIO(item["bytes"]))
            elif item.get("path"):
                image = Image.open(inside(root, item["path"], where=path, field=f"{key} row {row}"))
            else:
                raise DataError(path, f"row {row} has no image", key=key)
            if image.width * image.height * 3 > declared:
                raise DataError(
                    path,
                    f"row {row}: a {image.width}x{image.height} image is larger than the "
                    f"shape {list(shape)} info.json declares",
                    key=key,
                )
            frames.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(path, f"row {row}: undecodable image ({exc})", key=key) from exc
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise DataError(path, f"images of different sizes {sorted(shapes)}", key=key)
    return np.stack(frames)

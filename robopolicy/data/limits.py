"""How much a dataset may ask us to hold (``docs/RELIABILITY.md`` R21).

A store's metadata declares its sizes — episode lengths, per-frame shapes and dtypes, chunk
shapes — and a few hundred compressed bytes can declare gigabytes. Readers check what the
metadata declares against these limits before allocating or decompressing anything, and refuse
with a DataError naming the file and field. The defaults fit every real dataset we know of (an
episode of four 480x640 cameras for a minute at 30 fps is 2.2 GB); raise them with environment
variables for bigger ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping

import numpy as np

from robopolicy.errors import DataError, RobopolicyError

ENV = {
    "max_episode_frames": "ROBOPOLICY_MAX_EPISODE_FRAMES",
    "max_episode_bytes": "ROBOPOLICY_MAX_EPISODE_BYTES",
    "max_episodes": "ROBOPOLICY_MAX_EPISODES",
}


@dataclasses.dataclass(frozen=True)
class ReadLimits:
    """Bounds on what a dataset's metadata may declare; see :func:`read_limits`."""

    max_episode_frames: int = 10_000_000
    """Frames in one episode (a day at 100 Hz is 8.6 million)."""
    max_episode_bytes: int = 4 << 30
    """Decoded bytes of one episode, all keys together; also bounds one stored chunk and one
    file read whole."""
    max_episodes: int = 10_000_000
    """Episodes in one dataset."""


def read_limits() -> ReadLimits:
    """The limits in force: the defaults, each replaced by its environment variable in
    :data:`ENV` when set (a positive integer)."""
    values = {}
    for name, variable in ENV.items():
        text = os.environ.get(variable)
        if text is None:
            continue
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            value = 0
        if value < 1:
            raise RobopolicyError(f"{variable}={text!r}: expected a positive integer")
        values[name] = value
    return ReadLimits(**values)


def frame_bytes(shape: tuple[int, ...] | list[int], dtype: np.dtype | str) -> int:
    """Bytes of one frame of ``shape`` (per-frame, no time axis) and ``dtype``."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def check_count(
    where: object, count: int, limits: ReadLimits, name: str, what: str, *, key: str | None
) -> None:
    """DataError naming ``where`` and ``key`` when ``count`` (of ``what``) exceeds the limit
    ``name`` of ``limits``; the message says which variable raises it."""
    limit = getattr(limits, name)
    if count > limit:
        raise DataError(
            where,
            f"declares {count:,} {what}, over the limit of {limit:,} (set {ENV[name]} to allow "
            "more)",
            key=key,
        )


def check_episodes(
    where: object,
    lengths: np.ndarray | list[int],
    frame_sizes: Mapping[str, int],
    limits: ReadLimits,
    *,
    key: str | None = None,
) -> None:
    """Check declared episode ``lengths`` (frames) times the per-frame bytes of every key
    (``frame_sizes``) against ``limits``, before any episode is read."""
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    check_count(where, lengths.size, limits, "max_episodes", "episodes", key=key)
    if not lengths.size:
        return
    length = int(lengths.max())
    check_count(where, length, limits, "max_episode_frames", "frames in one episode", key=key)
    per_frame = sum(int(size) for size in frame_sizes.values())
    what = "bytes in one episode"
    check_count(where, length * per_frame, limits, "max_episode_bytes", what, key=key)

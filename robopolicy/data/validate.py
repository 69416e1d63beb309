"""Checks an episode before it is stored: equal lengths, finite numbers, time that moves forward.

Every failure is a :class:`~robopolicy.errors.DataError` naming the file and the key, so a
converter can report it or, with ``--drop-bad-episodes``, drop the episode and say why.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robopolicy.errors import DataError

TIME_KEY = "timestamp"


def check_episode(path: object, frames: Mapping[str, np.ndarray], *, episode: int | str) -> int:
    """Validate one episode's per-frame arrays and return its length.

    Args:
        path: the file or store the episode comes from (named in errors).
        frames: key -> array whose first axis is time.
        episode: the episode's index or name (named in errors).
    """
    if not frames:
        raise DataError(path, f"episode {episode} has no arrays")
    lengths = {}
    for key, value in frames.items():
        arr = np.asarray(value)
        if arr.ndim == 0:
            raise DataError(path, f"episode {episode}: expected a time axis, got a scalar", key=key)
        if arr.dtype.kind not in "biuf":
            raise DataError(path, f"episode {episode}: dtype {arr.dtype} is not numeric", key=key)
        lengths[key] = arr.shape[0]
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr.reshape(arr.shape[0], -1)))[0][0]
            raise DataError(
                path, f"episode {episode}: non-finite value (NaN or inf) at frame {bad}", key=key
            )
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}={n}" for k, n in sorted(lengths.items()))
        raise DataError(path, f"episode {episode}: arrays of unequal length ({detail})")
    length = next(iter(lengths.values()))
    if length == 0:
        raise DataError(path, f"episode {episode} is empty")
    if TIME_KEY in frames:
        t = np.asarray(frames[TIME_KEY], dtype=np.float64).reshape(length, -1)[:, 0]
        back = np.flatnonzero(np.diff(t) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise DataError(
                path,
                f"episode {episode}: timestamps go backwards at frame {i} "
                f"({t[i - 1]:.6f} -> {t[i]:.6f})",
                key=TIME_KEY,
            )
    return length

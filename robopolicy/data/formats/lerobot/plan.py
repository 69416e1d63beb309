"""How native keys become LeRobot columns when writing, fixed by the first episode.

Cameras become video features: (T, H, W, 3) frames (H, W >= 8) of uint8, or of whole numbers
0-255 in another dtype (Push-T's float32 ``img``), which are encoded as the same uint8 levels and
cast back to their dtype when read. ``image.<camera>`` keys are named
``observation.images.<camera>``; a camera under another key is ``observation.image`` when it is
the only one (see :func:`~robopolicy.data.formats.lerobot.layout.camera_name`). Every other key
becomes a parquet column of its own dtype, observations under ``observation.`` (see
:func:`~robopolicy.data.formats.lerobot.layout.to_lerobot`). LeRobot's ``timestamp`` column is
what video frames are looked up by, so it must sit on the ``i / fps`` grid of the episode:

- native timestamps on that grid (within 5e-5 s) are written as they are, dtype kept;
- episodes without timestamps get ``i / fps`` (float32, as lerobot writes), recorded in
  ``meta/robopolicy.json`` as made up;
- recorded timestamps off the grid (sensed times, a clock offset) are kept, exactly, in an
  ``observation.timestamp`` column next to a made-up ``timestamp``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.data.array_spec import is_image_shape
from robopolicy.data.formats.base import DatasetInfo, Episode
from robopolicy.data.formats.lerobot.layout import (
    BOOKKEEPING,
    DEFAULT_FEATURES,
    TIMESTAMP,
    VIDEO_NAMES,
    Extras,
    camera_name,
    to_lerobot,
    to_native,
)
from robopolicy.data.paths import check_name
from robopolicy.errors import DataError

SENSED_TIMESTAMP = "observation.timestamp"
"""LeRobot column holding recorded timestamps that are off the ``i / fps`` grid."""
GRID_TOLERANCE_S = 5e-5
"""How far a native timestamp may be from ``i / fps`` to be written as LeRobot's ``timestamp``
(half LeRobot's video lookup tolerance, leaving room for float32 rounding)."""
_ATTRS_IN_INFO = ("robot_type", "tasks", "lerobot_info")


@dataclasses.dataclass(frozen=True)
class Column:
    """One native key and the LeRobot feature it is written as."""

    native: str
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    """Per-frame shape of the native array."""
    video: bool

    @property
    def lerobot_shape(self) -> list[int]:
        return list(self.shape) or [1]


def camera_levels(values: np.ndarray) -> np.ndarray | None:
    """(T, H, W, 3) camera frames as uint8, or None when ``values`` are not camera frames: of
    another shape, smaller than 8 x 8, or not all whole numbers in [0, 255]."""
    if values.ndim != 4 or values.shape[-1] != 3 or not is_image_shape(values.shape[1:]):
        return None
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind not in "iuf" or values.size == 0:
        return None
    if not (values.min() >= 0 and values.max() <= 255):  # also false for NaN
        return None
    levels = values.astype(np.uint8)
    return levels if np.array_equal(levels, values) else None


def on_grid(values: np.ndarray, fps: float) -> bool:
    """True when ``values`` (T,) are within :data:`GRID_TOLERANCE_S` of ``i / fps``."""
    if values.dtype.kind != "f":
        return False
    times = values.astype(np.float64).reshape(-1)
    slack = GRID_TOLERANCE_S + 2 * np.spacing(np.abs(values.reshape(-1))).astype(np.float64)
    return bool(np.all(np.abs(times - np.arange(times.size) / fps) <= slack))


@dataclasses.dataclass
class ColumnPlan:
    """The LeRobot schema of a dataset being written, and each episode's columns under it."""

    columns: list[Column]
    """Features in ``info.json`` order, before LeRobot's default features."""
    timestamp: str
    """``"native"``, ``"synthesized"`` or ``"sensed"`` (see the module docstring)."""
    timestamp_dtype: np.dtype
    timestamp_shape: tuple[int, ...]
    fps: float
    destination: Path

    @property
    def videos(self) -> list[Column]:
        return [column for column in self.columns if column.video]

    def feature_order(self) -> list[str]:
        return [column.name for column in self.columns] + list(DEFAULT_FEATURES)

    def arrays(
        self, episode: Episode, episode_index: int, first_index: int, task_index: int
    ) -> dict[str, np.ndarray]:
        """The parquet columns of one episode (LeRobot name -> (T, ...) array)."""
        frames = episode.frames
        where = episode.source or self.destination
        expected = {column.native for column in self.columns}
        if self.timestamp == "native":
            expected.add(TIMESTAMP)
        if set(frames) != expected:
            raise DataError(
                where,
                f"episode {episode_index} has keys {sorted(frames)}, the first "
                f"episode had {sorted(expected)}",
            )
        length = len(next(iter(frames.values())))
        out: dict[str, np.ndarray] = {}
        for column in self.columns:
            values = np.asarray(frames[column.native])
            if values.dtype != column.dtype or values.shape[1:] != column.shape:
                raise DataError(
                    where,
                    f"episode {episode_index}: {values.dtype} "
                    f"{values.shape[1:]} differs from the first episode's "
                    f"{column.dtype} {column.shape}",
                    key=column.native,
                )
            if not column.video:
                out[column.name] = values.reshape(length) if column.shape == (1,) else values
        grid = np.arange(length) / self.fps
        if self.timestamp == "native":
            times = np.asarray(frames[TIMESTAMP])
            same = times.dtype == self.timestamp_dtype and times.shape[1:] == self.timestamp_shape
            if not same or not on_grid(times, self.fps):
                raise DataError(
                    where,
                    f"episode {episode_index}: timestamps are off the 1/fps "
                    "grid (or of another dtype or shape) while the first episode's "
                    "were on it",
                    key=TIMESTAMP,
                )
            out[TIMESTAMP] = times.reshape(length)
        else:
            out[TIMESTAMP] = grid.astype(np.float32)
        out["frame_index"] = np.arange(length, dtype=np.int64)
        out["episode_index"] = np.full(length, episode_index, dtype=np.int64)
        out["index"] = np.arange(first_index, first_index + length, dtype=np.int64)
        out["task_index"] = np.full(length, task_index, dtype=np.int64)
        return out

    def video_frames(self, episode: Episode, episode_index: int, column: Column) -> np.ndarray:
        """The uint8 frames of a camera (after :meth:`arrays` checked dtype and shape)."""
        frames = camera_levels(np.asarray(episode.frames[column.native]))
        if frames is None:
            raise DataError(
                episode.source or self.destination,
                f"episode {episode_index}: camera frames are not whole numbers 0-255 as the "
                "first episode's were",
                key=column.native,
            )
        return frames

    def features(
        self, info: DatasetInfo, video_info: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """The ``features`` block of ``info.json``."""
        features: dict[str, dict[str, Any]] = {}
        for column in self.columns:
            if column.video:
                features[column.name] = {
                    "dtype": "video",
                    "shape": list(column.shape),
                    "names": list(VIDEO_NAMES),
                    "info": video_info[column.name],
                }
            else:
                features[column.name] = {
                    "dtype": column.dtype.name,
                    "shape": column.lerobot_shape,
                    "names": info.features.get(column.native, {}).get("names"),
                }
        for name, default in DEFAULT_FEATURES.items():
            features[name] = dict(default, shape=list(default["shape"]))
        if self.timestamp == "native":
            features[TIMESTAMP]["dtype"] = self.timestamp_dtype.name
            features[TIMESTAMP]["names"] = info.features.get(TIMESTAMP, {}).get("names")
        return features

    def extras(self, info: DatasetInfo) -> Extras:
        """What ``meta/robopolicy.json`` must record for this dataset to read back as written."""
        extras = Extras()
        for column in self.columns:
            if column.shape == (1,) and not column.video:
                extras.shapes[column.native] = [1]
            if to_native(column.name) != column.native:
                extras.renamed[column.name] = column.native
            if column.video and column.dtype != np.uint8:
                extras.dtypes[column.native] = column.dtype.name
        if self.timestamp == "native" and self.timestamp_shape == (1,):
            extras.shapes[TIMESTAMP] = [1]
        if self.timestamp != "native":
            extras.dropped.append(TIMESTAMP)
        for key, feature in info.features.items():
            rest = {k: v for k, v in feature.items() if k != "names"}
            if rest:
                extras.features[key] = rest
        extras.attrs = {k: v for k, v in info.attrs.items() if k not in _ATTRS_IN_INFO}
        return extras


def plan_columns(episode: Episode, info: DatasetInfo, fps: float, destination: Path) -> ColumnPlan:
    """Fix the LeRobot schema from the first episode; DataError for keys LeRobot cannot hold."""
    frames = {key: np.asarray(value) for key, value in episode.frames.items()}
    where = episode.source or destination
    times = frames.get(TIMESTAMP)
    if times is None:
        mode = "synthesized"
    elif times.shape[1:] in ((), (1,)) and on_grid(times, fps):
        mode = "native"
    else:
        mode = "sensed"
    columns = []
    for key, values in frames.items():
        if key in BOOKKEEPING:
            raise DataError(where, "key name is reserved by LeRobot for its own columns", key=key)
        if key == TIMESTAMP and mode == "native":
            continue
        name = SENSED_TIMESTAMP if key == TIMESTAMP else to_lerobot(key)
        video = key != TIMESTAMP and camera_levels(values) is not None
        columns.append(Column(key, name, values.dtype, values.shape[1:], video))
    cameras = [column for column in columns if column.video]
    columns = [
        dataclasses.replace(column, name=camera_name(column.native, len(cameras) == 1))
        if column.video
        else column
        for column in columns
    ]
    names = [column.name for column in columns] + list(DEFAULT_FEATURES)
    for column in columns:
        if column.video:  # a camera's feature name is a directory of the dataset
            check_name(column.name, where=where, field=column.native)
        if names.count(column.name) > 1:
            raise DataError(
                where,
                f"two keys would both be the LeRobot feature {column.name!r}",
                key=column.native,
            )
    timestamp = frames.get(TIMESTAMP, np.zeros(0, np.float32))
    return ColumnPlan(columns, mode, timestamp.dtype, timestamp.shape[1:], fps, destination)

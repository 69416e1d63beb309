"""Reading LeRobot v2.x and v3.0 datasets as native episodes.

Numeric columns become arrays of the dtype ``info.json`` declares; ``dtype: image`` columns are
decoded from their PNG bytes; ``dtype: video`` features are decoded with PyAV at each frame's
``timestamp`` (plus the episode's ``from_timestamp`` in a v3.0 file), taking the nearest frame
within LeRobot's default tolerance of 1e-4 s, as uint8 or the dtype ``meta/robopolicy.json``
records for the camera. Video files that are absent are skipped with a warning naming them, or
refused under ``require_video``.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from robopolicy.data.formats.base import DatasetInfo, Episode
from robopolicy.data.formats.lerobot.arrow import column_to_numpy, decode_images, read_parquet
from robopolicy.data.formats.lerobot.episodes import EpisodeSpan, load_episodes
from robopolicy.data.formats.lerobot.layout import (
    BOOKKEEPING,
    EXTRAS_PATH,
    INFO_PATH,
    TIMESTAMP,
    Extras,
    load_info,
    to_native,
)
from robopolicy.data.limits import check_episodes, frame_bytes, read_limits
from robopolicy.data.video import decode_frames
from robopolicy.errors import DataError

log = logging.getLogger(__name__)

VIDEO_TOLERANCE_S = 1e-4
"""Largest gap between a frame's timestamp and the decoded frame LeRobot accepts by default."""
_NOT_CARRIED = {
    "features",
    "fps",
    "robot_type",
    "splits",
    "data_path",
    "video_path",
    "total_episodes",
    "total_frames",
    "total_tasks",
    "total_chunks",
    "total_videos",
}
"""info.json fields that are derived from the data (or v2-only) and so not kept as attributes."""


def numpy_dtype(name: str) -> np.dtype | None:
    """The numpy dtype of a numeric LeRobot feature dtype, or None (video, image, string, ...)."""
    try:
        dtype = np.dtype(name)
    except TypeError:
        return None
    return dtype if dtype.kind in "biuf" else None


def open_dataset(root: Path, *, require_video: bool = False) -> LeRobotReader:
    """Open the LeRobot dataset at ``root`` (v2.0, v2.1 or v3.0)."""
    info = load_info(root)
    spans, tasks = load_episodes(root, info)
    if len(spans) != info["total_episodes"]:
        raise DataError(
            root / INFO_PATH,
            f"says {info['total_episodes']} episodes but the episode metadata lists {len(spans)}",
            key="total_episodes",
        )
    return LeRobotReader(root, info, spans, tasks, Extras.load(root), require_video=require_video)


class LeRobotReader:
    """Reads one LeRobot dataset episode by episode, never writing to it."""

    def __init__(
        self,
        root: Path,
        info: dict[str, Any],
        spans: list[EpisodeSpan],
        tasks: dict[int, str],
        extras: Extras,
        *,
        require_video: bool,
    ) -> None:
        self.root = root
        self._features: dict[str, dict[str, Any]] = info["features"]
        self._spans = spans
        self._tasks = tasks
        self._extras = extras
        self._cache: tuple[Path, pa.Table, dict[int, tuple[int, int]]] | None = None
        by_dtype: dict[str, list[str]] = {"video": [], "image": [], "numeric": []}
        for name, feature in self._features.items():
            if name in BOOKKEEPING or name in extras.dropped:
                continue
            if feature["dtype"] in ("video", "image"):
                by_dtype[feature["dtype"]].append(name)
            elif numpy_dtype(feature["dtype"]) is not None:
                by_dtype["numeric"].append(name)
        self._numeric, self._images = by_dtype["numeric"], by_dtype["image"]
        self._videos = self._available_videos(by_dtype["video"], require_video)
        self._native = self._native_names([*self._numeric, *self._images, *self._videos])
        self._camera_dtypes = self._recorded_dtypes()
        self._check_sizes()
        self._check_data_files()
        self.info = DatasetInfo(
            fps=float(info["fps"]),
            n_episodes=len(spans),
            features=self._native_features(),
            attrs={
                "robot_type": info.get("robot_type"),
                "tasks": [tasks[i] for i in sorted(tasks) if tasks[i] != extras.default_task],
                "lerobot_info": {k: v for k, v in info.items() if k not in _NOT_CARRIED},
                **extras.attrs,
            },
        )

    # ------------------------------------------------------------------ setup

    def _native_names(self, names: list[str]) -> dict[str, str]:
        native: dict[str, str] = {}
        for name in names:
            key = self._extras.renamed.get(name, to_native(name))
            clash = next((other for other, k in native.items() if k == key), None)
            if clash is not None:
                raise DataError(
                    self.root / INFO_PATH,
                    f"features {clash!r} and {name!r} both map to the native key {key!r}",
                    key=f"features.{name}",
                )
            native[name] = key
        return native

    def _recorded_dtypes(self) -> dict[str, np.dtype]:
        """Native camera key -> the numeric dtype its decoded uint8 frames are cast back to."""
        dtypes = {}
        for key, name in self._extras.dtypes.items():
            dtype = numpy_dtype(name)
            if dtype is None:
                raise DataError(
                    self.root / EXTRAS_PATH, f"not a numeric dtype: {name!r}", key=f"dtypes.{key}"
                )
            dtypes[key] = dtype
        return dtypes

    def _native_features(self) -> dict[str, dict[str, Any]]:
        features = {}
        for name, key in self._native.items():
            entry: dict[str, Any] = {}
            names = self._features[name].get("names")
            if names is not None and name not in self._videos and name not in self._images:
                entry["names"] = names
            entry.update(self._extras.features.get(key, {}))
            if entry:
                features[key] = entry
        return features

    def _available_videos(self, keys: list[str], require_video: bool) -> list[str]:
        missing: dict[str, list[Path]] = {}
        for key in keys:
            files = sorted({span.videos[key][0] for span in self._spans})
            absent = [path for path in files if not path.is_file()]
            if absent:
                missing[key] = absent
        if not missing:
            return keys
        files = [path for paths in missing.values() for path in paths]
        shown = ", ".join(os.path.relpath(p, self.root) for p in files[:10])
        more = f" and {len(files) - 10} more" if len(files) > 10 else ""
        if require_video:
            raise DataError(
                files[0] if len(files) == 1 else self.root, f"missing video files: {shown}{more}"
            )
        log.warning(
            "%s: video files missing (%s%s); importing without %s",
            self.root,
            shown,
            more,
            ", ".join(missing),
        )
        return [key for key in keys if key not in missing]

    def _check_sizes(self) -> None:
        """Declared episode lengths times declared frame sizes within the read limits (R21)."""
        sizes = {}
        for name, key in self._native.items():
            feature = self._features[name]
            camera = self._camera_dtypes.get(key, np.dtype(np.uint8))
            sizes[name] = frame_bytes(feature["shape"], numpy_dtype(feature["dtype"]) or camera)
        if self._spans:
            lengths = [span.length for span in self._spans]
            longest = self._spans[int(np.argmax(lengths))]
            check_episodes(longest.where, lengths, sizes, read_limits(), key="length")

    def _check_data_files(self) -> None:
        for span in self._spans:
            if not span.data_file.is_file():
                raise DataError(
                    span.data_file,
                    f"missing data file of episode {span.index} (listed in {span.where})",
                )

    # ------------------------------------------------------------------ reading

    def read_episode(self, index: int) -> Episode:
        if not 0 <= index < len(self._spans):
            raise IndexError(f"episode {index} out of range (0..{len(self._spans) - 1})")
        span = self._spans[index]
        rows = self._rows(span)
        path = span.data_file
        frames: dict[str, np.ndarray] = {}
        for name in self._numeric:
            feature = self._features[name]
            values = column_to_numpy(
                self._column(rows, name, path),
                feature["shape"],
                numpy_dtype(feature["dtype"]),
                path=path,
                key=name,
            )
            frames[self._native[name]] = self._reshape(values, name, path)
        for name in self._images:
            frames[self._native[name]] = decode_images(
                self._column(rows, name, path),
                self.root,
                self._features[name]["shape"],
                path=path,
                key=name,
            )
        if self._videos:
            times = column_to_numpy(
                self._column(rows, TIMESTAMP, path), [1], np.dtype("f8"), path=path, key=TIMESTAMP
            ).reshape(-1)

            def decode(name: str) -> np.ndarray:
                video, offset = span.videos[name]
                values = math.prod(self._features[name]["shape"])
                return decode_frames(
                    video, offset + times, tolerance_s=VIDEO_TOLERANCE_S, max_values=values
                )

            # cameras decode in parallel: PyAV releases the GIL while decoding and converting
            with ThreadPoolExecutor(max_workers=len(self._videos)) as pool:
                for name, decoded in zip(self._videos, pool.map(decode, self._videos), strict=True):
                    frames[self._native[name]] = decoded
        for key, dtype in self._camera_dtypes.items():
            if key in frames:
                frames[key] = frames[key].astype(dtype)
        return Episode(
            frames,
            task=self._task(span, rows),
            meta=dict(span.meta),
            source=f"{path} episode {span.index}",
        )

    def _rows(self, span: EpisodeSpan) -> pa.Table:
        """The episode's rows of its data file, checked against the episode metadata."""
        path = span.data_file
        if self._cache is None or self._cache[0] != path:
            table = read_parquet(path)
            episodes = column_to_numpy(
                self._column(table, "episode_index", path),
                [1],
                None,
                path=path,
                key="episode_index",
            ).reshape(-1)
            starts = np.flatnonzero(np.diff(episodes, prepend=episodes[:1] - 1))
            stops = np.append(starts[1:], episodes.size)
            bounds: dict[int, tuple[int, int]] = {}
            for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                value = int(episodes[start])
                if value in bounds:
                    raise DataError(
                        path, f"rows of episode {value} are not contiguous", key="episode_index"
                    )
                bounds[value] = (start, stop)
            self._cache = (path, table, bounds)
        _, table, bounds = self._cache
        if span.index not in bounds:
            raise DataError(
                path,
                f"no rows for episode {span.index} (listed in {span.where})",
                key="episode_index",
            )
        start, stop = bounds[span.index]
        if stop - start != span.length:
            raise DataError(
                path,
                f"episode {span.index} has {stop - start} rows but "
                f"{span.where} says length {span.length}",
                key="length",
            )
        if span.first_row is not None and "index" in table.column_names:
            first = table["index"][start].as_py()
            if first != span.first_row:
                raise DataError(
                    path,
                    f"episode {span.index} starts at index {first} but "
                    f"{span.where} says dataset_from_index {span.first_row}",
                    key="index",
                )
        return table.slice(start, stop - start)

    @staticmethod
    def _column(table: pa.Table, name: str, path: Path) -> pa.ChunkedArray:
        if name not in table.column_names:
            raise DataError(path, "missing column", key=name)
        return table[name]

    def _reshape(self, values: np.ndarray, name: str, path: Path) -> np.ndarray:
        shape = self._extras.shapes.get(self._native[name])
        if shape is None or values.shape[1:] == tuple(shape):
            return values
        if int(np.prod(shape)) != int(np.prod(values.shape[1:])):
            raise DataError(
                path,
                f"values of shape {values.shape[1:]} cannot take the recorded native shape {shape}",
                key=name,
            )
        return values.reshape(values.shape[0], *shape)

    def _task(self, span: EpisodeSpan, rows: pa.Table) -> str | None:
        task: str | None = span.tasks[0] if span.tasks else None
        if "task_index" in rows.column_names and self._tasks:
            index = rows["task_index"][0].as_py()
            if index not in self._tasks:
                raise DataError(
                    span.data_file, f"task_index {index} is not in the task list", key="task_index"
                )
            task = self._tasks[index]
        return None if task == self._extras.default_task else task or None

    def close(self) -> None:
        self._cache = None

"""Writing native episodes as a LeRobot v3.0 dataset, laid out as lerobot lays it out.

Numeric keys become parquet columns of their own dtype (``shape: [1]`` features as scalar
columns, vectors as ``fixed_size_list`` columns), one row group per episode, files rolled over
at ``data_files_size_in_mb``. Cameras (see :mod:`.plan`) become one AV1 mp4 per camera per file,
episodes back to back, each camera encoding in its own thread; the episode's place in the file is
its ``from_timestamp``/``to_timestamp``. Per-episode metadata and statistics go to
``meta/episodes``, tasks to ``meta/tasks.parquet`` (:data:`~.layout.DEFAULT_TASK` for episodes
without one), dataset statistics to ``meta/stats.json`` and the schema to ``meta/info.json``.

The caller gives an empty directory (``convert`` stages it and renames it into place when done).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data.formats.base import DatasetInfo, Episode
from robopolicy.data.formats.lerobot import stats as fstats
from robopolicy.data.formats.lerobot.arrow import numpy_to_column, with_hf_metadata
from robopolicy.data.formats.lerobot.episodes import is_reserved_column
from robopolicy.data.formats.lerobot.layout import (
    DATA_PATH,
    DEFAULT_CHUNKS_SIZE,
    DEFAULT_DATA_FILE_MB,
    DEFAULT_TASK,
    DEFAULT_VIDEO_FILE_MB,
    EPISODES_PATH,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    V30,
    VIDEO_PATH,
    write_json,
)
from robopolicy.data.formats.lerobot.plan import ColumnPlan, plan_columns
from robopolicy.data.formats.lerobot.shards import ParquetShards, VideoShards, video_file
from robopolicy.data.video import probe_video
from robopolicy.errors import DataError

_INFO_SETTINGS = ("chunks_size", "data_files_size_in_mb", "video_files_size_in_mb")
_INFO_DERIVED = {
    "codebase_version",
    "robot_type",
    "total_episodes",
    "total_frames",
    "total_tasks",
    "fps",
    "splits",
    "data_path",
    "video_path",
    "features",
    "total_chunks",
    "total_videos",
}


def write_dataset(path: Path, info: DatasetInfo, episodes: Iterator[Episode]) -> int:
    """Write ``episodes`` as a LeRobot v3.0 dataset into the empty directory ``path``; return how
    many were written. A failure closes the encoders and leaves the directory to the caller."""
    path = Path(path)
    if info.fps is None:
        raise DataError(
            path, "LeRobot datasets need a frame rate; the source has none (pass --fps)"
        )
    writer = _DatasetWriter(path, info)
    try:
        for episode in episodes:
            writer.add(episode)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return writer.episodes


class _DatasetWriter:
    """Accumulates episodes into a v3.0 dataset under ``root`` (the staging directory)."""

    def __init__(self, root: Path, info: DatasetInfo) -> None:
        self.root, self.info = root, info
        self.fps = float(info.fps or 0)
        source = info.attrs.get("lerobot_info")
        self.lerobot_info: dict[str, Any] = dict(source) if isinstance(source, dict) else {}
        settings = {
            "chunks_size": DEFAULT_CHUNKS_SIZE,
            "data_files_size_in_mb": DEFAULT_DATA_FILE_MB,
            "video_files_size_in_mb": DEFAULT_VIDEO_FILE_MB,
        }
        for key in _INFO_SETTINGS:
            value = self.lerobot_info.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                settings[key] = value
        self.settings = settings
        self.tasks: list[str] = [t for t in info.attrs.get("tasks") or [] if isinstance(t, str)]
        self.plan: ColumnPlan | None = None
        self.data = ParquetShards(
            root, settings["data_files_size_in_mb"], int(settings["chunks_size"])
        )
        self.videos: dict[str, VideoShards] = {}
        self.rows: list[dict[str, Any]] = []
        self.stats: list[dict[str, fstats.Stats]] = []
        self.episodes = self.frames = 0

    def add(self, episode: Episode) -> None:
        if self.plan is None:
            self.plan = plan_columns(episode, self.info, self.fps, self.root)
            self.videos = {
                column.name: VideoShards(
                    self.root,
                    column.name,
                    self.fps,
                    self.settings["video_files_size_in_mb"],
                    int(self.settings["chunks_size"]),
                )
                for column in self.plan.videos
            }
        task = episode.task or DEFAULT_TASK
        if task not in self.tasks:
            self.tasks.append(task)
        arrays = self.plan.arrays(episode, self.episodes, self.frames, self.tasks.index(task))
        length = len(arrays["frame_index"])
        table = pa.table({name: numpy_to_column(values) for name, values in arrays.items()})
        chunk, file = self.data.write(with_hf_metadata(table))
        row: dict[str, Any] = {
            "episode_index": self.episodes,
            "tasks": [task],
            "length": length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.frames,
            "dataset_to_index": self.frames + length,
        }
        stats = {name: fstats.numeric_stats(values) for name, values in arrays.items()}
        for column in self.plan.videos:
            frames = self.plan.video_frames(episode, self.episodes, column)
            v_chunk, v_file, start, stop = self.videos[column.name].add(frames)
            row[f"videos/{column.name}/chunk_index"] = v_chunk
            row[f"videos/{column.name}/file_index"] = v_file
            row[f"videos/{column.name}/from_timestamp"] = start
            row[f"videos/{column.name}/to_timestamp"] = stop
            stats[column.name] = fstats.image_stats(frames)
        stats = {name: stats[name] for name in self.plan.feature_order() if name in stats}
        for name, values in stats.items():
            for stat, value in values.items():
                row[f"stats/{name}/{stat}"] = np.asarray(value).tolist()
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        for name, value in episode.meta.items():
            if is_reserved_column(name) or name in row:
                raise DataError(self.root, "per-episode value has a name LeRobot uses", key=name)
            row[name] = value.item() if isinstance(value, np.generic) else value
        self.rows.append(row)
        self.stats.append(stats)
        self.episodes += 1
        self.frames += length

    def finish(self) -> None:
        if self.plan is None:
            raise DataError(self.root, "no episodes to write")
        self.data.close()
        video_info = {}
        for name, shards in self.videos.items():
            shards.close()
            video_info[name] = _video_info(video_file(self.root, name, 0, 0))
        episodes_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.rows), episodes_path, compression="snappy")
        _write_tasks(self.root / TASKS_PATH, self.tasks)
        write_json(self.root / STATS_PATH, fstats.to_json(fstats.aggregate(self.stats)))
        write_json(self.root / INFO_PATH, self._info_json(self.plan, video_info))
        extras = self.plan.extras(self.info)
        if DEFAULT_TASK in self.tasks:
            extras.default_task = DEFAULT_TASK
        extras.save(self.root)

    def abort(self) -> None:
        self.data.close()
        for shards in self.videos.values():
            shards.abort()

    def _info_json(self, plan: ColumnPlan, video_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
        fps = int(self.fps) if self.fps.is_integer() else self.fps
        info: dict[str, Any] = {
            "codebase_version": V30,
            "robot_type": self.info.attrs.get("robot_type"),
            "total_episodes": self.episodes,
            "total_frames": self.frames,
            "total_tasks": len(self.tasks),
            **self.settings,
            "fps": fps,
            "splits": {"train": f"0:{self.episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if plan.videos else None,
            "features": plan.features(self.info, video_info),
        }
        for key, value in self.lerobot_info.items():
            if key not in _INFO_DERIVED and key not in info:
                info[key] = value
        return info


def _video_info(path: Path) -> dict[str, Any]:
    """The ``info`` block lerobot records for a video feature, probed from its first file."""
    probe = probe_video(path)
    fps = int(probe.fps) if float(probe.fps).is_integer() else probe.fps
    return {
        "video.height": probe.height,
        "video.width": probe.width,
        "video.codec": probe.codec,
        "video.pix_fmt": probe.pix_fmt,
        "video.is_depth_map": False,
        "video.fps": fps,
        "video.channels": probe.channels,
        "has_audio": probe.has_audio,
    }


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """``tasks.parquet`` as pandas writes a frame of ``task_index`` indexed by ``task``."""
    table = pa.table(
        {
            "task_index": pa.array(range(len(tasks)), type=pa.int64()),
            "task": pa.array(tasks, type=pa.string()),
        }
    )
    pandas = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = table.replace_schema_metadata({"pandas": json.dumps(pandas)})
    pq.write_table(table, path, compression="snappy")

"""LeRobot v3.0 and v2.1 datasets built on disk the way lerobot writes them.

These builders use pyarrow and PyAV directly, independently of robopolicy's LeRobot writer, so
reading them tests our reader against lerobot's layout rather than against ourselves:

- v3.0 (lerobot >= 0.4): ``data/chunk-000/file-XXX.parquet`` holding several episodes, one row
  group each, with the ``huggingface`` schema metadata of ``datasets`` 4 (``List`` features);
  per camera ``videos/<key>/chunk-000/file-XXX.mp4`` made as lerobot makes them: each episode
  encoded on its own, then joined by the concat demuxer with stream copy, so an episode's
  ``from_timestamp`` is the summed duration of the episodes before it in that file;
  ``meta/episodes/chunk-000/file-000.parquet`` (offsets, tasks, ``stats/<feature>/<stat>``);
  ``meta/tasks.parquet`` (task strings as the pandas index), ``meta/stats.json`` and
  ``meta/info.json``.
- v2.1 (lerobot 0.3): one parquet and one mp4 per camera per episode, ``meta/episodes.jsonl``,
  ``meta/tasks.jsonl``, ``meta/episodes_stats.jsonl`` (v2.0: ``meta/stats.json`` instead).

The dataset: a 6-joint arm plus gripper (7-dim state and action), two cameras (``front`` and
``wrist``, 48x64), a scalar reward and a boolean done flag, three episodes over two tasks.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robopolicy.data.video import encode_video

FPS = 30
HEIGHT, WIDTH = 48, 64
CAMERAS = ("front", "wrist")
JOINTS = [
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "wrist_yaw.pos",
    "gripper.pos",
]
TASKS = ("pick up the red cube", "place the cube in the bowl")
LENGTHS = (24, 31, 20)
EPISODE_TASKS = (0, 1, 0)
ROBOT_TYPE = "so101_follower"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


@dataclasses.dataclass
class SourceEpisode:
    """What a fixture episode holds, in native key names."""

    frames: dict[str, np.ndarray]
    task: str


def _camera_frames(length: int, episode: int, camera: int) -> np.ndarray:
    """Smooth test images: a colour gradient with a soft blob moving across it."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    frames = np.empty((length, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(length):
        cx = 10 + (WIDTH - 20) * t / max(length - 1, 1)
        cy = HEIGHT / 2 + 8 * np.sin(t / 5 + episode + camera)
        blob = 90 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 60)
        frames[t, ..., 0] = np.clip(40 + 2 * x + blob, 0, 255)
        frames[t, ..., 1] = np.clip(60 + 3 * y + 30 * camera, 0, 255)
        frames[t, ..., 2] = np.clip(120 + 40 * episode - blob / 2, 0, 255)
    return frames


def make_episodes(lengths: tuple[int, ...] = LENGTHS, seed: int = 0) -> list[SourceEpisode]:
    rng = np.random.default_rng(seed)
    episodes = []
    for index, length in enumerate(lengths):
        t = np.arange(length)
        phase = rng.uniform(0, np.pi, size=7)
        state = (np.sin(t[:, None] / 7 + phase) * 1.5).astype(np.float32)
        action = (state + rng.normal(0, 0.01, state.shape)).astype(np.float32)
        frames = {
            "state": state,
            "action": action,
            "next.reward": (t == length - 1).astype(np.float32),
            "next.done": t == length - 1,
            "timestamp": (t / FPS).astype(np.float32),
        }
        for camera, name in enumerate(CAMERAS):
            frames[f"image.{name}"] = _camera_frames(length, index, camera)
        episodes.append(SourceEpisode(frames, TASKS[EPISODE_TASKS[index % len(EPISODE_TASKS)]]))
    return episodes


# ---------------------------------------------------------------------- shared pieces


def _features(image_dtype: str) -> dict[str, dict[str, Any]]:
    camera = {
        "dtype": image_dtype,
        "shape": [HEIGHT, WIDTH, 3],
        "names": ["height", "width", "channels"],
    }
    scalar = {"shape": [1], "names": None}
    return {
        "action": {"dtype": "float32", "shape": [7], "names": JOINTS},
        "observation.state": {"dtype": "float32", "shape": [7], "names": JOINTS},
        **{f"observation.images.{name}": dict(camera) for name in CAMERAS},
        "next.reward": {"dtype": "float32", **scalar},
        "next.done": {"dtype": "bool", **scalar},
        "timestamp": {"dtype": "float32", **scalar},
        "frame_index": {"dtype": "int64", **scalar},
        "episode_index": {"dtype": "int64", **scalar},
        "index": {"dtype": "int64", **scalar},
        "task_index": {"dtype": "int64", **scalar},
    }


def _video_info(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.codec_context.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate),
            "video.channels": 3,
            "has_audio": False,
        }


def _duration(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def _concat_videos(parts: list[Path], out: Path) -> None:
    """Join mp4 files without re-encoding through FFmpeg's concat demuxer (lerobot's way)."""
    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", delete=False) as listing:
        listing.write("ffconcat version 1.0\n")
        listing.writelines(f"file '{part.resolve()}'\n" for part in parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            av.open(listing.name, format="concat", options={"safe": "0"}) as source,
            av.open(str(out), "w", format="mp4") as target,
        ):
            stream = source.streams.video[0]
            copy = target.add_stream_from_template(stream, opaque=True)
            copy.time_base = stream.time_base
            for packet in source.demux(stream):
                if packet.dts is None:
                    continue
                packet.stream = copy
                target.mux(packet)
    finally:
        os.unlink(listing.name)


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def _stats(values: np.ndarray, image: bool = False) -> dict[str, Any]:
    """min/max/mean/std/count and quantiles as lerobot stores them (images per channel in
    [0, 1], shaped (3, 1, 1); scalars shaped (1,))."""
    if image:
        x = values.reshape(-1, 3).astype(np.float64) / 255.0
        count = len(values)
    else:
        x = values.astype(np.float64).reshape(len(values), -1)
        count = len(values)
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    out.update({name: np.quantile(x, q, axis=0) for name, q in QUANTILES.items()})
    shaped = {k: (v.reshape(3, 1, 1) if image else v).tolist() for k, v in out.items()}
    return {
        **{k: shaped[k] for k in ("min", "max", "mean", "std")},
        "count": [count],
        **{k: shaped[k] for k in QUANTILES},
    }


def _episode_columns(
    ep: SourceEpisode, episode: int, first: int, image_dtype: str
) -> dict[str, Any]:
    """One episode's columns, in lerobot names (no video columns: they live in mp4 files)."""
    f, length = ep.frames, len(ep.frames["state"])
    columns: dict[str, Any] = {"action": f["action"], "observation.state": f["state"]}
    if image_dtype == "image":
        for name in CAMERAS:
            columns[f"observation.images.{name}"] = [
                {"bytes": _png(frame), "path": f"frame_{i:06d}.png"}
                for i, frame in enumerate(f[f"image.{name}"])
            ]
    columns.update(
        {
            "next.reward": f["next.reward"],
            "next.done": f["next.done"],
            "timestamp": f["timestamp"],
            "frame_index": np.arange(length, dtype=np.int64),
            "episode_index": np.full(length, episode, dtype=np.int64),
            "index": np.arange(first, first + length, dtype=np.int64),
            "task_index": np.full(length, TASKS.index(ep.task), dtype=np.int64),
        }
    )
    return columns


def _table(columns: dict[str, Any], list_type: str) -> pa.Table:
    """An arrow table as ``datasets`` writes it, with its ``huggingface`` schema metadata."""
    arrays, hf = {}, {}
    for name, values in columns.items():
        if isinstance(values, list):  # encoded images
            arrays[name] = pa.array(
                values, pa.struct([("bytes", pa.binary()), ("path", pa.string())])
            )
            hf[name] = {"decode": True, "_type": "Image"}
            continue
        dtype = {"float32": "float32", "bool": "bool", "int64": "int64"}[values.dtype.name]
        flat = pa.array(values.reshape(-1))
        if values.ndim == 2:
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
            hf[name] = {
                "feature": {"dtype": dtype, "_type": "Value"},
                "length": values.shape[1],
                "_type": list_type,
            }
        else:
            arrays[name] = flat
            hf[name] = {"dtype": dtype, "_type": "Value"}
    table = pa.table(arrays)
    return table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": hf}})})


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=4, ensure_ascii=False))


def _episode_stats(ep: SourceEpisode, columns: dict[str, Any]) -> dict[str, Any]:
    stats = {}
    for name in _features("video"):
        if name.startswith("observation.images."):
            stats[name] = _stats(ep.frames["image." + name.rsplit(".", 1)[1]], image=True)
        else:
            stats[name] = _stats(np.asarray(columns[name]))
    return stats


def _global_stats(episodes: list[SourceEpisode]) -> dict[str, Any]:
    everything = {
        name: np.concatenate([ep.frames[name] for ep in episodes]) for name in episodes[0].frames
    }
    stats = {}
    for name, values in everything.items():
        key = {"state": "observation.state"}.get(name, name)
        if name.startswith("image."):
            key = "observation.images." + name.split(".", 1)[1]
        stats[key] = _stats(values, image=name.startswith("image."))
    return stats


# ---------------------------------------------------------------------- v3.0


def build_v30(
    root: Path,
    episodes: list[SourceEpisode] | None = None,
    *,
    data_files: tuple[tuple[int, ...], ...] = ((0, 1), (2,)),
    video_files: dict[str, tuple[tuple[int, ...], ...]] | None = None,
    image_dtype: str = "video",
    legacy_task_column: bool = False,
) -> list[SourceEpisode]:
    """Write a v3.0 dataset at ``root``; return the episodes it holds.

    ``data_files`` and ``video_files`` (per camera) say which episodes share each file; by
    default episodes 0-1 share the first data file and episode 2 has the second, the front
    camera holds all three in one mp4 and the wrist camera splits them like the data.
    ``legacy_task_column`` writes tasks.parquet as lerobot 0.4 did (unnamed pandas index).
    """
    episodes = episodes if episodes is not None else make_episodes()
    video_files = video_files or {"front": (tuple(range(len(episodes))),), "wrist": data_files}
    features = _features(image_dtype)
    rows: list[dict[str, Any]] = [{} for _ in episodes]
    first = np.cumsum([0, *[len(ep.frames["state"]) for ep in episodes]])
    columns = [_episode_columns(ep, i, int(first[i]), image_dtype) for i, ep in enumerate(episodes)]
    for file_index, members in enumerate(data_files):
        path = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tables = [_table(columns[i], "List") for i in members]
        with pq.ParquetWriter(path, tables[0].schema, compression="snappy") as writer:
            for i, table in zip(members, tables, strict=True):
                writer.write_table(table)  # one row group per episode
                rows[i].update({"data/chunk_index": 0, "data/file_index": file_index})
    video_info = {}
    if image_dtype == "video":
        with tempfile.TemporaryDirectory(dir=root) as scratch:
            for camera in CAMERAS:
                key = f"observation.images.{camera}"
                for file_index, members in enumerate(video_files[camera]):
                    parts, offset = [], 0.0
                    for i in members:
                        part = Path(scratch) / f"{camera}_{i:03d}.mp4"
                        encode_video(part, episodes[i].frames[f"image.{camera}"], FPS)
                        duration = _duration(part)
                        rows[i].update(
                            {
                                f"videos/{key}/chunk_index": 0,
                                f"videos/{key}/file_index": file_index,
                                f"videos/{key}/from_timestamp": offset,
                                f"videos/{key}/to_timestamp": offset + duration,
                            }
                        )
                        parts.append(part)
                        offset += duration
                    target = root / f"videos/{key}/chunk-000/file-{file_index:03d}.mp4"
                    _concat_videos(parts, target)
                video_info[key] = _video_info(root / f"videos/{key}/chunk-000/file-000.mp4")
    for key, value in video_info.items():
        features[key]["info"] = value
    meta_rows = []
    for i, ep in enumerate(episodes):
        length = len(ep.frames["state"])
        row = {"episode_index": i, "tasks": [ep.task], "length": length}
        row.update({k: rows[i][k] for k in ("data/chunk_index", "data/file_index")})
        row.update({"dataset_from_index": int(first[i]), "dataset_to_index": int(first[i + 1])})
        row.update({k: v for k, v in rows[i].items() if k.startswith("videos/")})
        for name, stats in _episode_stats(ep, columns[i]).items():
            row.update({f"stats/{name}/{stat}": value for stat, value in stats.items()})
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        meta_rows.append(row)
    meta_path = root / "meta/episodes/chunk-000/file-000.parquet"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(meta_rows), meta_path, compression="snappy")
    _write_tasks_parquet(root / "meta/tasks.parquet", legacy_task_column)
    _write_json(root / "meta/stats.json", _global_stats(episodes))
    _write_json(
        root / "meta/info.json",
        {
            "codebase_version": "v3.0",
            "robot_type": ROBOT_TYPE,
            "total_episodes": len(episodes),
            "total_frames": int(first[-1]),
            "total_tasks": len(TASKS),
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": FPS,
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": (
                "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
                if image_dtype == "video"
                else None
            ),
            "features": features,
        },
    )
    return episodes


def _write_tasks_parquet(path: Path, legacy: bool) -> None:
    """A pandas frame of ``task_index`` indexed by the task strings, as pandas writes it."""
    column = "__index_level_0__" if legacy else "task"
    table = pa.table(
        {
            "task_index": pa.array(range(len(TASKS)), pa.int64()),
            column: pa.array(TASKS, pa.string()),
        }
    )
    pandas = {
        "index_columns": [column],
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
                "name": None if legacy else "task",
                "field_name": column,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": "21.0.0"},
        "pandas_version": "2.3.1",
    }
    pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas)}), path)


# ---------------------------------------------------------------------- v2.1 / v2.0


def build_v21(
    root: Path,
    episodes: list[SourceEpisode] | None = None,
    *,
    version: str = "v2.1",
    image_dtype: str = "video",
) -> list[SourceEpisode]:
    """Write a v2.1 (or, with ``version="v2.0"``, v2.0) dataset at ``root``."""
    episodes = episodes if episodes is not None else make_episodes()
    features = _features(image_dtype)
    first = np.cumsum([0, *[len(ep.frames["state"]) for ep in episodes]])
    lines: dict[str, list[dict[str, Any]]] = {"episodes": [], "episodes_stats": []}
    for i, ep in enumerate(episodes):
        columns = _episode_columns(ep, i, int(first[i]), image_dtype)
        path = root / f"data/chunk-000/episode_{i:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(columns, "Sequence"), path)
        if image_dtype == "video":
            for camera in CAMERAS:
                key = f"observation.images.{camera}"
                video = root / f"videos/chunk-000/{key}/episode_{i:06d}.mp4"
                encode_video(video, ep.frames[f"image.{camera}"], FPS)
                features[key]["info"] = _video_info(video)
        length = len(ep.frames["state"])
        lines["episodes"].append({"episode_index": i, "tasks": [ep.task], "length": length})
        lines["episodes_stats"].append({"episode_index": i, "stats": _episode_stats(ep, columns)})
    (root / "meta").mkdir(parents=True, exist_ok=True)
    files = {
        "episodes": lines["episodes"],
        "tasks": [{"task_index": i, "task": task} for i, task in enumerate(TASKS)],
    }
    if version == "v2.1":
        files["episodes_stats"] = lines["episodes_stats"]
    else:
        _write_json(root / "meta/stats.json", _global_stats(episodes))
    for name, records in files.items():
        (root / f"meta/{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    n_videos = len(episodes) * len(CAMERAS) if image_dtype == "video" else 0
    _write_json(
        root / "meta/info.json",
        {
            "codebase_version": version,
            "robot_type": ROBOT_TYPE,
            "total_episodes": len(episodes),
            "total_frames": int(first[-1]),
            "total_tasks": len(TASKS),
            "total_videos": n_videos,
            "total_chunks": 1,
            "chunks_size": 1000,
            "fps": FPS,
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": (
                "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
                if n_videos
                else None
            ),
            "features": features,
        },
    )
    return episodes

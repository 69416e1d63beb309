"""Per-episode metadata of a LeRobot dataset: where each episode's rows and video frames are.

v3.0 keeps one row per episode in ``meta/episodes/chunk-XXX/file-XXX.parquet`` (data file,
``dataset_from_index``/``dataset_to_index``, per camera the video file and the episode's
``from_timestamp`` in it) and the task strings in ``meta/tasks.parquet``. v2.x keeps one JSON
line per episode in ``meta/episodes.jsonl`` and derives file names from the episode index.
Both become a list of :class:`EpisodeSpan`, so reading frames is one piece of code.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from robopolicy.data.formats.lerobot.arrow import parquet_schema, read_parquet
from robopolicy.data.formats.lerobot.layout import (
    EPISODES_DIR,
    LEGACY_EPISODES_PATH,
    LEGACY_TASKS_PATH,
    TASKS_PATH,
    V30,
    format_path,
)
from robopolicy.errors import DataError

_V3_COLUMNS = (
    "episode_index",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
)
_V3_VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp")
_RESERVED = {"episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index"}
_RESERVED_PREFIXES = ("data/", "videos/", "meta/episodes/", "stats/")


def is_reserved_column(name: str) -> bool:
    """True for the per-episode columns LeRobot itself writes (the rest are per-episode meta)."""
    return name in _RESERVED or name.startswith(_RESERVED_PREFIXES)


@dataclasses.dataclass(frozen=True)
class EpisodeSpan:
    """Where one episode lives on disk."""

    index: int
    """The episode's ``episode_index``."""
    length: int
    """Number of frames."""
    data_file: Path
    """Parquet file holding its rows (with other episodes' rows in v3.0)."""
    first_row: int | None
    """Global ``index`` of its first frame (v3.0 ``dataset_from_index``), to check the rows."""
    videos: dict[str, tuple[Path, float]]
    """LeRobot video key -> (mp4 file, time of the episode's first frame in that file)."""
    tasks: tuple[str, ...]
    """Task strings listed for the episode."""
    meta: dict[str, int | float]
    """Other numeric per-episode values."""
    where: str
    """The metadata file (and row) describing the episode, for error messages."""


def load_episodes(root: Path, info: dict[str, Any]) -> tuple[list[EpisodeSpan], dict[int, str]]:
    """Episodes sorted by index, and task_index -> task string, for either layout version."""
    if info["codebase_version"] == V30:
        spans, tasks = _episodes_v3(root, info), _tasks_v3(root / TASKS_PATH)
    else:
        spans, tasks = _episodes_v2(root, info), _tasks_v2(root / LEGACY_TASKS_PATH)
    spans.sort(key=lambda span: span.index)
    for before, after in itertools.pairwise(spans):
        if before.index == after.index:
            raise DataError(
                after.where, f"episode {after.index} is listed twice", key="episode_index"
            )
    placed = sorted((s for s in spans if s.first_row is not None), key=lambda s: s.first_row)
    for before, after in itertools.pairwise(placed):
        if after.first_row < before.first_row + before.length:
            raise DataError(
                after.where,
                f"rows [{after.first_row}, {after.first_row + after.length}) of episode "
                f"{after.index} overlap episode {before.index}'s [{before.first_row}, "
                f"{before.first_row + before.length})",
                key="dataset_from_index",
            )
    return spans, tasks


def _video_keys(info: dict[str, Any]) -> list[str]:
    return [key for key, feature in info["features"].items() if feature["dtype"] == "video"]


def _numeric_meta(row: dict[str, Any], names: list[str]) -> dict[str, int | float]:
    return {
        name: row[name]
        for name in names
        if isinstance(row.get(name), int | float) and not isinstance(row[name], bool)
    }


def _episodes_v3(root: Path, info: dict[str, Any]) -> list[EpisodeSpan]:
    files = sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise DataError(root / EPISODES_DIR, "no episode metadata (chunk-XXX/file-XXX.parquet)")
    video_keys = _video_keys(info)
    required = [*_V3_COLUMNS]
    required += [f"videos/{key}/{name}" for key in video_keys for name in _V3_VIDEO_COLUMNS]
    spans = []
    for path in files:
        schema = parquet_schema(path)
        for column in required:
            if column not in schema.names:
                raise DataError(path, "missing column", key=column)
        extra = [
            field.name
            for field in schema
            if not is_reserved_column(field.name)
            and (pa.types.is_integer(field.type) or pa.types.is_floating(field.type))
        ]
        columns = required + (["tasks"] if "tasks" in schema.names else []) + extra
        for row_number, row in enumerate(read_parquet(path, columns).to_pylist()):
            where = f"{path} row {row_number}"
            for column in required:
                if not isinstance(row[column], int | float) or isinstance(row[column], bool):
                    raise DataError(
                        path,
                        f"row {row_number}: expected a number, got {row[column]!r}",
                        key=column,
                    )
            length = int(row["length"])
            start, stop = int(row["dataset_from_index"]), int(row["dataset_to_index"])
            if stop - start != length or length <= 0 or start < 0:
                raise DataError(
                    path,
                    f"row {row_number}: length {length} does not match "
                    f"dataset_from_index {start} / dataset_to_index {stop}",
                    key="length",
                )
            data_file = format_path(
                root,
                info,
                "data_path",
                chunk_index=int(row["data/chunk_index"]),
                file_index=int(row["data/file_index"]),
            )
            videos = {
                key: (
                    format_path(
                        root,
                        info,
                        "video_path",
                        video_key=key,
                        chunk_index=int(row[f"videos/{key}/chunk_index"]),
                        file_index=int(row[f"videos/{key}/file_index"]),
                    ),
                    float(row[f"videos/{key}/from_timestamp"]),
                )
                for key in video_keys
            }
            tasks = row.get("tasks") or []
            spans.append(
                EpisodeSpan(
                    int(row["episode_index"]),
                    length,
                    data_file,
                    start,
                    videos,
                    tuple(str(t) for t in tasks),
                    _numeric_meta(row, extra),
                    where,
                )
            )
    return spans


def _tasks_v3(path: Path) -> dict[int, str]:
    """``tasks.parquet``: ``task_index`` plus the task strings, which pandas stores as the index
    (a ``task`` column, or ``__index_level_0__`` when the index was unnamed)."""
    schema = parquet_schema(path)
    pandas_meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}") or b"{}")
    candidates = [c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)]
    candidates += ["task", "__index_level_0__"]
    text = next((c for c in candidates if c in schema.names), None)
    if "task_index" not in schema.names:
        raise DataError(path, "missing column", key="task_index")
    if text is None:
        raise DataError(path, "missing the task strings (index column 'task')", key="task")
    table = read_parquet(path, ["task_index", text])
    tasks = {}
    for index, task in zip(table["task_index"].to_pylist(), table[text].to_pylist(), strict=True):
        if not isinstance(index, int) or not isinstance(task, str):
            raise DataError(path, f"bad task row ({index!r}, {task!r})", key="task_index")
        tasks[index] = task
    return tasks


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Objects of a JSON-lines file; DataError naming the file and line when one is bad."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise DataError(path, "missing file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable ({exc})") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not valid JSON ({exc.msg})", key=f"line {number}") from exc
        if not isinstance(row, dict):
            raise DataError(path, "expected a JSON object", key=f"line {number}")
        rows.append(row)
    return rows


def _episodes_v2(root: Path, info: dict[str, Any]) -> list[EpisodeSpan]:
    path = root / LEGACY_EPISODES_PATH
    video_keys = _video_keys(info)
    chunks_size = info["chunks_size"]
    spans = []
    for number, row in enumerate(read_jsonl(path), 1):
        for field in ("episode_index", "length"):
            if not isinstance(row.get(field), int) or isinstance(row[field], bool):
                raise DataError(path, f"line {number}: missing or not an integer", key=field)
        index, length = row["episode_index"], row["length"]
        if length <= 0:
            raise DataError(path, f"line {number}: length must be positive", key="length")
        chunk = index // chunks_size if chunks_size > 0 else 0
        data_file = format_path(root, info, "data_path", episode_chunk=chunk, episode_index=index)
        videos = {
            key: (
                format_path(
                    root,
                    info,
                    "video_path",
                    episode_chunk=chunk,
                    video_key=key,
                    episode_index=index,
                ),
                0.0,
            )
            for key in video_keys
        }
        tasks = row.get("tasks") or []
        if not isinstance(tasks, list):
            raise DataError(path, f"line {number}: expected a list of strings", key="tasks")
        extra = [name for name in row if not is_reserved_column(name)]
        spans.append(
            EpisodeSpan(
                index,
                length,
                data_file,
                None,
                videos,
                tuple(str(t) for t in tasks),
                _numeric_meta(row, extra),
                f"{path} line {number}",
            )
        )
    return spans


def _tasks_v2(path: Path) -> dict[int, str]:
    tasks = {}
    for number, row in enumerate(read_jsonl(path), 1):
        index, task = row.get("task_index"), row.get("task")
        if not isinstance(index, int) or not isinstance(task, str):
            raise DataError(
                path, f"line {number}: needs integer task_index and string task", key="task_index"
            )
        tasks[index] = task
    return tasks

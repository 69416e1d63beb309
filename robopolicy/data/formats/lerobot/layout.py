"""Where things live in a LeRobot dataset, what ``meta/info.json`` must hold, and key names.

On-disk layouts (paths relative to the dataset root)::

    v3.0  meta/info.json, meta/stats.json, meta/tasks.parquet,
          meta/episodes/chunk-XXX/file-XXX.parquet      one row per episode (offsets, stats)
          data/chunk-XXX/file-XXX.parquet               frames of many episodes
          videos/<video_key>/chunk-XXX/file-XXX.mp4     many episodes per camera, back to back
    v2.x  meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl,
          meta/episodes_stats.jsonl (v2.1) or meta/stats.json (v2.0)
          data/chunk-XXX/episode_XXXXXX.parquet         one file per episode
          videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4

The exact templates come from ``info.json`` (``data_path``, ``video_path``). Native and LeRobot
key names map one to one (:func:`to_native`, :func:`to_lerobot`). ``meta/robopolicy.json`` is
ours: it records what a round trip through LeRobot would otherwise lose (see :class:`Extras`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from robopolicy.data.formats.base import IMAGE_PREFIX
from robopolicy.data.paths import check_name, fill_template
from robopolicy.errors import DataError

V30 = "v3.0"
READABLE_VERSIONS = ("v2.0", "v2.1", V30)

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EXTRAS_PATH = "meta/robopolicy.json"

LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
LEGACY_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
LEGACY_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
LEGACY_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

DEFAULT_CHUNKS_SIZE = 1000
"""Files per ``chunk-XXX`` directory (v3.0) or episodes per chunk (v2.x)."""
DEFAULT_DATA_FILE_MB = 100
DEFAULT_VIDEO_FILE_MB = 200

TIMESTAMP = "timestamp"
BOOKKEEPING = ("frame_index", "episode_index", "index", "task_index")
"""Columns LeRobot adds to every frame; they are not frames of a native episode."""
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    TIMESTAMP: {"dtype": "float32", "shape": [1], "names": None},
    **{name: {"dtype": "int64", "shape": [1], "names": None} for name in BOOKKEEPING},
}
VIDEO_NAMES = ["height", "width", "channels"]
STAT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
"""Quantiles LeRobot keeps next to min/max/mean/std, named ``q01`` ... ``q99``."""

OBSERVATION_PREFIX = "observation."
_IMAGE, _IMAGES = "observation.image", "observation.images."
NOT_OBSERVATIONS = ("action", "reward", "done", "success", "intervention")
"""Native keys that are not observations and so keep their name in LeRobot (as do ``action.*``
and LeRobot's own ``next.*`` and ``observation.*`` names)."""
DEFAULT_TASK = "demonstrated task (no description recorded)"
"""The task written for episodes that have none: LeRobot gives every frame a task string, which
language-conditioned policies read as their instruction, so an empty one would say nothing.
Recorded in ``meta/robopolicy.json`` and read back as no task."""


def to_lerobot(key: str) -> str:
    """Native key -> LeRobot feature name: ``image.<camera>`` -> ``observation.images.<camera>``
    (``image.image`` -> ``observation.image``), ``state`` -> ``observation.state`` and every other
    observation likewise prefixed; ``action``, :data:`NOT_OBSERVATIONS`, ``next.*``, LeRobot's own
    columns and names already under ``observation.`` are kept."""
    if key == IMAGE_PREFIX + "image":
        return _IMAGE
    if key.startswith(IMAGE_PREFIX):
        return _IMAGES + key[len(IMAGE_PREFIX) :]
    kept = (TIMESTAMP, *BOOKKEEPING, *NOT_OBSERVATIONS)
    if key in kept or key.startswith(("action.", "next.", OBSERVATION_PREFIX)):
        return key
    return OBSERVATION_PREFIX + key


def camera_name(key: str, only_camera: bool) -> str:
    """LeRobot name of the camera under native ``key``: ``image.<camera>`` as :func:`to_lerobot`
    names it; a camera under another key (Push-T's ``img``) is ``observation.image`` when it is
    the dataset's only camera, ``observation.images.<key>`` otherwise."""
    if key.startswith(IMAGE_PREFIX):
        return to_lerobot(key)
    return _IMAGE if only_camera else _IMAGES + key


def to_native(name: str) -> str:
    """LeRobot feature name -> native key; the inverse of :func:`to_lerobot` (a name it cannot
    have made, such as ``observation.timestamp``, is kept as it is)."""
    if name == _IMAGE:
        return IMAGE_PREFIX + "image"
    if name.startswith(_IMAGES):
        return IMAGE_PREFIX + name[len(_IMAGES) :]
    key = name.removeprefix(OBSERVATION_PREFIX)
    return key if key != name and to_lerobot(key) == name else name


def read_json(path: Path) -> Any:
    """Parse a JSON file; DataError naming it when it is missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(path, "missing file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc


def write_json(path: Path, document: Any) -> None:
    """Write JSON the way LeRobot does (4-space indent, UTF-8 kept as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def load_info(root: Path) -> dict[str, Any]:
    """``meta/info.json`` checked for the fields a reader needs; DataError naming the field."""
    path = root / INFO_PATH
    info = read_json(path)
    if not isinstance(info, dict):
        raise DataError(path, "expected a JSON object")

    def need(key: str, kinds: type | tuple[type, ...]) -> Any:
        if key not in info:
            raise DataError(path, "missing field", key=key)
        value = info[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise DataError(path, f"unexpected value {value!r}", key=key)
        return value

    version = need("codebase_version", str)
    if version not in READABLE_VERSIONS:
        raise DataError(
            path,
            f"unsupported LeRobot version {version!r} (readable: {', '.join(READABLE_VERSIONS)})",
            key="codebase_version",
        )
    fps = need("fps", (int, float))
    if not (fps > 0 and math.isfinite(fps)):
        raise DataError(path, f"fps must be positive, got {fps!r}", key="fps")
    need("total_episodes", int)
    need("data_path", str)
    if version != V30:
        need("chunks_size", int)
    features = need("features", dict)
    for name, feature in features.items():
        key = f"features.{name}"
        if not isinstance(feature, dict) or not isinstance(feature.get("dtype"), str):
            raise DataError(path, "feature needs a 'dtype' string", key=key)
        shape = feature.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise DataError(path, f"feature needs a 'shape' list of sizes, got {shape!r}", key=key)
        if feature["dtype"] == "video":  # its name is a directory of the dataset
            check_name(name, where=path, field=key)
    if any(f["dtype"] == "video" for f in features.values()):
        need("video_path", str)
    return info


def format_path(root: Path, info: dict[str, Any], template_key: str, **fields: Any) -> Path:
    """Fill the ``info.json`` path template ``template_key`` (data_path, video_path); a
    DataError naming the field for a malformed template or a path leading outside ``root``."""
    where = root / INFO_PATH
    return fill_template(root, info[template_key], where=where, field=template_key, **fields)


@dataclasses.dataclass
class Extras:
    """What ``meta/robopolicy.json`` records so that native -> LeRobot -> native is lossless.

    LeRobot cannot say some things about native data: a (T, 1) array is written as a scalar
    column (LeRobot reads ``shape: [1]`` as a scalar), episodes without a ``timestamp`` still
    need one in LeRobot, recorded (sensed) timestamps off the ``i / fps`` grid cannot be the
    ``timestamp`` column that video frames are looked up by, a camera held as float 0-255
    values becomes a uint8 video, a native key may not be the default for its LeRobot name, an
    episode without a task gets :data:`DEFAULT_TASK`, and attributes or units have no place in
    ``info.json``. LeRobot ignores this file.
    """

    shapes: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    """native key -> per-frame shape, where it differs from what the column alone says."""
    dropped: list[str] = dataclasses.field(default_factory=list)
    """LeRobot columns we made up (absent from the native episodes)."""
    renamed: dict[str, str] = dataclasses.field(default_factory=dict)
    """LeRobot column -> native key, where the name mapping is not the default one."""
    features: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """native key -> feature metadata other than ``names`` (units, ...)."""
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Dataset attributes that have no ``info.json`` field."""
    dtypes: dict[str, str] = dataclasses.field(default_factory=dict)
    """native key -> dtype of a camera whose frames were not uint8 (its decoded video frames are
    cast back to it)."""
    default_task: str | None = None
    """The task written for episodes that had none (read back as no task), or None."""

    VERSION = 1

    @classmethod
    def load(cls, root: Path) -> Extras:
        path = root / EXTRAS_PATH
        if not path.is_file():
            return cls()
        doc = read_json(path)
        kinds = {
            "shapes": dict,
            "dropped": list,
            "renamed": dict,
            "features": dict,
            "attrs": dict,
            "dtypes": dict,
        }
        if not isinstance(doc, dict):
            raise DataError(path, "expected a JSON object")
        for key, kind in kinds.items():
            if not isinstance(doc.get(key, kind()), kind):
                raise DataError(path, f"expected a JSON {kind.__name__}", key=key)
        default_task = doc.get("default_task")
        if not isinstance(default_task, str | None):
            raise DataError(path, "expected a string or null", key="default_task")
        extras = cls(
            **{key: doc.get(key, kind()) for key, kind in kinds.items()}, default_task=default_task
        )
        checks = {
            "shapes": all(
                isinstance(s, list) and all(isinstance(d, int) and d >= 0 for d in s)
                for s in extras.shapes.values()
            ),
            "dropped": all(isinstance(name, str) for name in extras.dropped),
            "renamed": all(isinstance(name, str) for name in extras.renamed.values()),
            "features": all(isinstance(f, dict) for f in extras.features.values()),
            "dtypes": all(isinstance(dtype, str) for dtype in extras.dtypes.values()),
        }
        for key, valid in checks.items():
            if not valid:
                raise DataError(path, "malformed entry", key=key)
        return extras

    def save(self, root: Path) -> None:
        fields = dataclasses.asdict(self)
        try:
            write_json(root / EXTRAS_PATH, {"robopolicy_extras_version": self.VERSION, **fields})
        except TypeError as exc:
            raise DataError(
                root / EXTRAS_PATH, f"attributes are not JSON-serializable ({exc})", key="attrs"
            ) from exc

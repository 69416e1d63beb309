"""LeRobot datasets (v2.1 and v3.0 on disk): reading, and writing v3.0.

No lerobot install is needed: the files are read with pyarrow and PyAV. Modules:

- :mod:`.layout` — paths, ``info.json`` checks, native <-> LeRobot key names, ``robopolicy.json``
- :mod:`.arrow` — parquet columns as numpy arrays and back
- :mod:`.episodes` — per-episode metadata of both layout versions
- :mod:`.read` — the reader (numeric columns, PNG image columns, video frames)
- :mod:`.plan`, :mod:`.shards`, :mod:`.stats`, :mod:`.write` — the v3.0 writer
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robopolicy.data.formats.base import DatasetInfo, Episode, register_format
from robopolicy.data.formats.lerobot.layout import INFO_PATH

if TYPE_CHECKING:
    from robopolicy.data.formats.lerobot.read import LeRobotReader


@register_format("lerobot", writable=True)
class LeRobotFormat:
    """LeRobot datasets: ``meta/info.json`` with parquet frames and mp4 camera streams."""

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / INFO_PATH).is_file()

    @classmethod
    def open(cls, path: Path, **options: Any) -> LeRobotReader:
        """Open for reading. ``require_video=True`` refuses a dataset with video files absent."""
        from robopolicy.data.formats.lerobot.read import open_dataset

        return open_dataset(Path(path), require_video=bool(options.get("require_video", False)))

    @classmethod
    def write(
        cls, path: Path, info: DatasetInfo, episodes: Iterator[Episode], **options: Any
    ) -> int:
        """Write a LeRobot v3.0 dataset."""
        from robopolicy.data.formats.lerobot.write import write_dataset

        return write_dataset(Path(path), info, episodes)

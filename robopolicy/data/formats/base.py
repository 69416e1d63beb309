"""What every dataset format offers, and the registry that finds the right one for a path.

A format is a class registered with :func:`register_format`. It says whether a path holds its
kind of dataset (``detect``), opens a :class:`DatasetReader` over it, and — when it is a format we
can write — writes episodes to a new path (``write``). Converting between any two formats is then
one loop in :mod:`robopolicy.data.convert`.

Native key names follow ``docs/DESIGN.md``: ``state``, ``action``, ``timestamp``,
``image.<camera>`` for uint8 (H, W, 3) frames, and any other per-frame arrays by their own name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from robopolicy.errors import DataError

IMAGE_PREFIX = "image."


@dataclasses.dataclass
class Episode:
    """One episode in native key names."""

    frames: dict[str, np.ndarray]
    """key -> (T, *shape) per-frame arrays."""
    task: str | None = None
    """Natural-language task of the episode, if the format has one."""
    meta: dict[str, float | int] = dataclasses.field(default_factory=dict)
    """Per-episode numbers kept in the store's ``meta/<name>``."""
    source: str = ""
    """Where the episode came from (file and episode name), for error messages."""


@dataclasses.dataclass
class DatasetInfo:
    """What a reader knows about the whole dataset before reading any episode."""

    fps: float | None
    """Frames per second, or None when the source does not say."""
    n_episodes: int
    """Number of episodes the reader will yield."""
    features: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Native key -> {"names": [...], "units": "..."} where the source says."""
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Format-specific metadata kept in the store's attributes (robot type, env args, ...)."""


class DatasetReader(Protocol):
    """Reads one dataset, episode by episode, never modifying it."""

    info: DatasetInfo

    def read_episode(self, index: int) -> Episode:
        """Episode ``index`` in native key names; raises DataError naming file and key."""
        ...

    def close(self) -> None: ...


class DatasetFormat(Protocol):
    name: ClassVar[str]
    writable: ClassVar[bool]

    @classmethod
    def detect(cls, path: Path) -> bool: ...

    @classmethod
    def open(cls, path: Path, **options: Any) -> DatasetReader: ...

    @classmethod
    def write(
        cls, path: Path, info: DatasetInfo, episodes: Iterator[Episode], **options: Any
    ) -> int:
        """Write episodes into the empty directory ``path``; return how many were written.

        :func:`robopolicy.data.convert.convert` gives a staging directory and renames it into
        place when this returns, so a writer need not guard against partial output.
        """
        ...


FORMATS: dict[str, type[DatasetFormat]] = {}


def register_format(name: str, *, writable: bool = False) -> Callable[[type], type]:
    """Class decorator adding a dataset format to :data:`FORMATS` under ``name``."""

    def decorate(cls: type) -> type:
        if name in FORMATS:
            raise ValueError(f"dataset format {name!r} registered twice")
        cls.name = name
        cls.writable = writable
        FORMATS[name] = cls
        return cls

    return decorate


def load_formats() -> dict[str, type[DatasetFormat]]:
    """Import the built-in format modules (each registers itself) and return the registry."""
    from robopolicy.data.formats import lerobot, robomimic, zarr_store  # noqa: F401

    return FORMATS


def detect_format(path: str | Path) -> type[DatasetFormat]:
    """The registered format that recognises ``path``; DataError if none does."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or directory")
    for fmt in load_formats().values():
        if fmt.detect(path):
            return fmt
    raise DataError(path, f"not a dataset in any known format ({', '.join(sorted(FORMATS))})")


def get_format(name: str) -> type[DatasetFormat]:
    formats = load_formats()
    if name not in formats:
        raise DataError(name, f"unknown dataset format; known: {', '.join(sorted(formats))}")
    return formats[name]

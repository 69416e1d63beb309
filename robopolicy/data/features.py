"""What an episode store records of each key beside its frames: names, units, and the sources
that produce the values (its ``features`` attribute).

A key's values, flattened per frame, are produced by one or more :class:`Source` in order: the
arm-push task's ``state`` is ``[ee_pose x 2, object_pose "cube" x 4]``, a camera key is one
``camera`` source. The sources name a small closed vocabulary (:data:`OBSERVATION_SOURCES`,
:data:`ACTION_SOURCES`), so the control daemon can tell from a checkpoint what a robot must
provide. In the store an entry reads::

    "features": {"state": {"names": ["ee_x", ...], "units": "m ...",
                           "sources": [{"kind": "ee_pose", "size": 2},
                                       {"kind": "object_pose", "name": "cube", "size": 4}]},
                 "image.front": {"sources": [{"kind": "camera", "name": "front"}]}}

Writers (``robopolicy collect``, the teleop recorder) record them; :meth:`FeatureInfo.parse`
reads them back, refusing malformed sources (a DataError naming the store and the key) and
keeping names only where there is one per value (LeRobot's image names are per axis).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from robopolicy.config import ConfigError, did_you_mean, from_dict
from robopolicy.errors import DataError

OBSERVATION_SOURCES = {
    "joint_state": "the arm's joint positions (or velocities), as its driver reads them",
    "gripper": "the gripper's opening or command, as the driver reads it",
    "ee_pose": "the end effector's position (and orientation), by forward kinematics",
    "object_pose": "a named object's pose in the scene: a privileged sensor of simulation",
    "camera": "a named camera's frames, (H, W, 3) uint8",
    "task_state": "what only the task's simulator computes (velocities, a scene's own state)",
    "unknown": "not recorded (an older checkpoint, imported data)",
}
"""Kind -> what produces an observation's values."""
ACTION_SOURCES = {
    "joint_target": "joint position targets",
    "ee_target": "end-effector position targets",
    "gripper": "the gripper command",
    "task_action": "an action only the task's simulator takes (torques, a planar pusher)",
    "unknown": "not recorded (an older checkpoint, imported data)",
}
"""Kind -> what an action's values command."""
NAMED = ("camera", "object_pose")
"""Kinds that name their camera or object."""
MAX_SOURCES = 64
"""Most sources of one key."""
MAX_NAME = 64
"""Longest camera or object name."""


@dataclasses.dataclass(frozen=True)
class Source:
    """What produces a run of a key's values: a camera, the arm's joints, a scene object."""

    kind: str
    """One of :data:`OBSERVATION_SOURCES` or :data:`ACTION_SOURCES`."""
    name: str | None = None
    """The camera or object (``front``, ``cube``): given for ``camera`` and ``object_pose``,
    absent for the other kinds."""
    size: int | None = None
    """How many of the key's values (flattened per frame, in order) it produces; None: all of
    them (the key's only source)."""

    def __post_init__(self) -> None:
        kinds = OBSERVATION_SOURCES | ACTION_SOURCES
        if self.kind not in kinds:
            raise ValueError(f"kind: unknown source {self.kind!r}{did_you_mean(self.kind, kinds)}")
        if (self.name is not None) != (self.kind in NAMED):
            need = "needs a name" if self.kind in NAMED else "takes no name"
            raise ValueError(f"name: {self.kind} {need}, got {self.name!r}")
        if self.name is not None and not (
            0 < len(self.name) <= MAX_NAME
            and self.name.isprintable()
            and not any(c in self.name for c in "/\\")
        ):
            raise ValueError(f"name: {self.name[:MAX_NAME]!r} is not 1-{MAX_NAME} printable chars")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size: must be >= 1 or absent, got {self.size}")


def check_sources(sources: Sequence[Source], size: int, kinds: Mapping[str, str]) -> None:
    """ValueError unless ``sources`` are of ``kinds`` and produce exactly ``size`` values: one
    source of size None (all), or sizes adding up to ``size``."""
    if not sources or len(sources) > MAX_SOURCES:
        raise ValueError(f"sources: give 1 to {MAX_SOURCES}, got {len(sources)}")
    for source in sources:
        if source.kind not in kinds:
            raise ValueError(
                f"sources: {source.kind!r} is not one of {sorted(kinds)}"
                f"{did_you_mean(source.kind, kinds)}"
            )
    sizes = [s.size for s in sources]
    if None in sizes:
        if len(sizes) > 1:
            raise ValueError("sources: a source without a size must be the only one")
    elif sum(sizes) != size:
        raise ValueError(f"sources: sizes {sizes} add up to {sum(sizes)}, not the {size} values")


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """What a store records of one key (None where it records nothing)."""

    names: tuple[str, ...] | None
    """One name per value (flattened per frame)."""
    units: str | None
    """Units in words."""
    sources: tuple[Source, ...] | None
    """What produces the values, in order."""

    @classmethod
    def parse(cls, entry: Any, *, size: int, where: object, key: str) -> FeatureInfo:
        """The ``features`` entry of ``key`` (``size`` values per frame) as stored; a DataError
        naming ``where`` and ``features.<key>`` when it or its sources are malformed."""
        field = f"features.{key}"
        if entry is None:
            return cls(None, None, None)
        if not isinstance(entry, Mapping):
            raise DataError(where, f"expected an object, got {type(entry).__name__}", key=field)
        names, units, raw = entry.get("names"), entry.get("units"), entry.get("sources")
        named = isinstance(names, list) and len(names) == size
        names = tuple(names) if named and all(isinstance(n, str) for n in names) else None
        units = units if isinstance(units, str) else None
        if raw is None:
            return cls(names, units, None)
        if not isinstance(raw, list) or len(raw) > MAX_SOURCES:
            raise DataError(where, f"expected a list of at most {MAX_SOURCES} sources", key=field)
        try:
            sources = tuple(
                from_dict(Source, item, where=f"sources[{i}].") for i, item in enumerate(raw)
            )
            check_sources(sources, size, OBSERVATION_SOURCES | ACTION_SOURCES)
        except (ConfigError, ValueError) as exc:
            raise DataError(where, str(exc), key=field) from None
        return cls(names, units, sources)

    def sliced(self, part: slice, size: int) -> FeatureInfo:
        """The description of values ``part`` of these ``size`` values (a derived key)."""
        start, stop, _ = part.indices(size)
        sources = None
        if self.sources is not None:
            kept, offset = [], 0
            for source in self.sources:
                n = size if source.size is None else source.size
                lo, hi = max(offset, start), min(offset + n, stop)
                if lo < hi:
                    kept.append(dataclasses.replace(source, size=hi - lo))
                offset += n
            sources = tuple(kept)
        names = None if self.names is None else self.names[start:stop]
        return FeatureInfo(names, self.units, sources)


def as_json(sources: Sequence[Source]) -> list[dict[str, Any]]:
    """``sources`` as a store's ``features`` entry holds them (absent fields left out)."""
    return [{k: v for k, v in dataclasses.asdict(s).items() if v is not None} for s in sources]

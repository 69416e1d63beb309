"""What a recording is of — robot, cameras, frame rate — and the checks that guard a resume.

A recording's :class:`RecordingSetup` is stored in the episode store's ``recording`` attribute
when the store is created. Resuming into an existing store refuses (``docs/RELIABILITY.md``
R13) when the setup changed or when the episode numbering has a gap, naming what differs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hardware.cameras.camera import Camera
from hardware.driver import Driver, JointSpec
from robopolicy.atomic import staged_directory
from robopolicy.data.features import Source
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError, RobopolicyError

EPISODE_INDEX = "episode_number"
"""Per-episode value holding each episode's number; contiguous from 0."""
SETUP_ATTR = "recording"
"""Store attribute holding the :class:`RecordingSetup` as JSON."""


class RecordingError(RobopolicyError):
    """A recording that cannot start, resume or go on; the message says why."""


@dataclasses.dataclass(frozen=True)
class CameraInfo:
    """One recorded camera as the store sees it."""

    name: str
    """Camera name; its frames are stored under ``image.<name>``."""
    height: int
    """Frame height in pixels."""
    width: int
    """Frame width in pixels."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"camera name must be non-empty without '/', got {self.name!r}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"camera {self.name}: frames must be at least 8x8 pixels")

    @property
    def key(self) -> str:
        return f"image.{self.name}"


@dataclasses.dataclass(frozen=True)
class RecordingSetup:
    """The fixed facts of a recording: every episode in one store shares them."""

    robot: str
    """Robot (driver) name, e.g. ``sim`` or ``feetech``."""
    joints: tuple[str, ...]
    """The robot's joint names, in state and action order."""
    cameras: tuple[CameraInfo, ...]
    """Recorded cameras (may be empty)."""
    fps: float
    """Recording rate, frames per second."""
    features: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict, compare=False)
    """Key -> its names, units and sources (:meth:`EpisodeStore.set_feature`), written when the
    store is created; what the policies trained on it will say they observe and command. Not a
    part of what a resume checks."""

    def __post_init__(self) -> None:
        if not self.robot:
            raise ValueError("robot must be named")
        if not self.joints:
            raise ValueError("joints must be non-empty")
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        object.__setattr__(self, "joints", tuple(self.joints))
        object.__setattr__(self, "cameras", tuple(self.cameras))

    @classmethod
    def of(cls, driver: Driver, cameras: Sequence[Camera], fps: float) -> RecordingSetup:
        """The setup of recording ``driver`` (by its registered name) with ``cameras``."""
        infos = tuple(CameraInfo(c.name, c.config.height, c.config.width) for c in cameras)
        name = driver.name or type(driver).__name__
        return cls(name, driver.spec.names, infos, fps, features=_features(driver.spec, infos))

    def to_json(self) -> dict[str, Any]:
        return {
            "robot": self.robot,
            "joints": list(self.joints),
            "cameras": {c.name: [c.height, c.width] for c in self.cameras},
            "fps": float(self.fps),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordingSetup:
        cameras = tuple(CameraInfo(n, int(h), int(w)) for n, (h, w) in data["cameras"].items())
        return cls(str(data["robot"]), tuple(data["joints"]), cameras, float(data["fps"]))


def _features(spec: JointSpec, cameras: Sequence[CameraInfo]) -> dict[str, dict[str, Any]]:
    """The names, units and sources of what a session records: ``state`` (the joint positions,
    then the gripper), ``action`` (the joint targets, then the gripper command), ``velocity``
    and each camera."""
    joints = [Source("joint_state", size=spec.dof)]
    targets = [Source("joint_target", size=spec.dof)]
    names, units = list(spec.names), spec.units
    if spec.gripper is not None:
        joints.append(Source("gripper", size=1))
        targets.append(Source("gripper", size=1))
        names.append("gripper")
        units = f"{units}; gripper {spec.gripper_units}"
    features: dict[str, dict[str, Any]] = {
        "state": {"names": names, "units": f"joint positions in {units}", "sources": joints},
        "action": {"names": names, "units": f"joint targets in {units}", "sources": targets},
        "velocity": {
            "names": list(spec.names),
            "units": f"{spec.units}/s",
            "sources": [Source("joint_state")],
        },
    }
    for camera in cameras:
        features[camera.key] = {"units": "RGB 0..255", "sources": [Source("camera", camera.name)]}
    return features


def setup_changes(old: RecordingSetup, new: RecordingSetup) -> list[str]:
    """What differs between a store's setup and the one asked for, one phrase per change."""
    changes = []
    if old.robot != new.robot:
        changes.append(f"robot {old.robot!r} -> {new.robot!r}")
    if old.joints != new.joints:
        changes.append(f"robot joints {list(old.joints)} -> {list(new.joints)}")
    before = {c.name: (c.height, c.width) for c in old.cameras}
    after = {c.name: (c.height, c.width) for c in new.cameras}
    for name in sorted(before.keys() - after.keys()):
        changes.append(f"camera {name!r} removed")
    for name in sorted(after.keys() - before.keys()):
        changes.append(f"camera {name!r} added")
    for name in sorted(before.keys() & after.keys()):
        if before[name] != after[name]:
            changes.append(f"camera {name!r} size {before[name]} -> {after[name]}")
    if not math.isclose(old.fps, new.fps, rel_tol=1e-9):
        changes.append(f"fps {old.fps:g} -> {new.fps:g}")
    return changes


def check_resume(store: EpisodeStore, setup: RecordingSetup) -> None:
    """Refuse to append to ``store`` unless it was recorded with ``setup`` and its episodes are
    numbered 0, 1, 2, ... without a gap."""
    where = f"cannot resume recording into {store.path}"
    raw = store.attrs.get(SETUP_ATTR)
    if not isinstance(raw, dict):
        raise RecordingError(f"{where}: it was not made by the recorder (no setup recorded)")
    try:
        old = RecordingSetup.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(f"{where}: its recorded setup is unreadable ({exc})") from exc
    changes = setup_changes(old, setup)
    if changes:
        raise RecordingError(f"{where}: the setup changed: {'; '.join(changes)}")
    if store.n_episodes == 0:
        return
    if EPISODE_INDEX not in store.episode_meta_keys:
        raise RecordingError(f"{where}: its episodes carry no {EPISODE_INDEX}")
    numbers = store.episode_meta(EPISODE_INDEX).astype(np.int64)
    wrong = np.flatnonzero(numbers != np.arange(numbers.size))
    if wrong.size:
        i = int(wrong[0])
        expected = int(numbers[i - 1]) + 1 if i else 0
        raise RecordingError(
            f"{where}: episode index gap: stored episode {i} is numbered {int(numbers[i])}, "
            f"expected {expected}"
        )


def open_recording(path: Path, setup: RecordingSetup, *, task: str | None = None) -> EpisodeStore:
    """The store at ``path`` opened for appending: created (whole, or not at all) when absent,
    checked with :func:`check_resume` when present."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        with staged_directory(path, overwrite=path.exists()) as staging:
            attrs: dict[str, Any] = {SETUP_ATTR: setup.to_json(), "source": "robopolicy teleop"}
            if task is not None:
                attrs["tasks"] = [task]
            store = EpisodeStore.create(staging, fps=setup.fps, attrs=attrs)
            for key, feature in setup.features.items():
                store.set_feature(key, **feature)
    try:
        store = EpisodeStore.open(path, mode="a")
    except DataError as exc:
        raise RecordingError(f"cannot resume recording: {exc}") from exc
    check_resume(store, setup)
    return store

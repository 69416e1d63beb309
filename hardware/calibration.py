"""Servo-arm calibration: per joint, how encoder ticks map to radians; stored as JSON.

For joint ``j`` with servo ``id``::

    radians = direction * (ticks - offset) * 2π / resolution
    ticks   = offset + direction * radians * resolution / 2π     (rounded, then kept in range)

``offset`` is the tick reading at the joint's zero, ``direction`` is +1 or -1 (the servo turns
against the joint's positive sense), and ``[range_min, range_max]`` are the ticks the joint may
reach — they become the driver's position limits. The gripper maps linearly from ``open_ticks``
(command 0) to ``closed_ticks`` (command 1). The same fields LeRobot keeps per motor (id, drive
mode, homing offset, range), with the offset applied on the host, not written to the servo.

Files are written atomically and validated on load; a bad file is a
:class:`~robopolicy.errors.DataError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from robopolicy.atomic import atomic_write_json
from robopolicy.config import ConfigError, from_dict, to_dict
from robopolicy.errors import DataError

FORMAT = 1


@dataclasses.dataclass(frozen=True)
class JointCalibration:
    """One joint's servo and its tick <-> radian map."""

    id: int
    """Servo id on the bus (0..252)."""
    offset: int
    """Ticks read at the joint's zero position."""
    direction: int = 1
    """+1 if ticks grow with the joint angle, -1 if they shrink."""
    range_min: int = 0
    """Lowest tick the joint may be commanded to."""
    range_max: int = 4095
    """Highest tick the joint may be commanded to."""

    def __post_init__(self) -> None:
        _check_id(self.id)
        if self.direction not in (1, -1):
            raise ValueError(f"direction must be 1 or -1, got {self.direction}")
        if not self.range_min < self.range_max:
            raise ValueError(f"range_min {self.range_min} must be below range_max {self.range_max}")


@dataclasses.dataclass(frozen=True)
class GripperCalibration:
    """The gripper servo: command 0 (open) and 1 (closed) in ticks."""

    id: int
    open_ticks: int
    closed_ticks: int

    def __post_init__(self) -> None:
        _check_id(self.id)
        if self.open_ticks == self.closed_ticks:
            raise ValueError("open_ticks and closed_ticks must differ")


@dataclasses.dataclass(frozen=True)
class ArmCalibration:
    """Every joint of a servo arm (in action order) and its gripper."""

    joints: dict[str, JointCalibration]
    """Joint name -> calibration, in the order of the action vector."""
    gripper: GripperCalibration | None = None
    resolution: int = 4096
    """Encoder ticks per turn of the servos."""
    format: int = FORMAT
    """File format version."""

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise ValueError(f"unsupported calibration format {self.format} (expected {FORMAT})")
        if not self.joints:
            raise ValueError("a calibration needs at least one joint")
        if self.resolution < 2:
            raise ValueError(f"resolution must be at least 2 ticks, got {self.resolution}")
        ids = [j.id for j in self.joints.values()] + ([self.gripper.id] if self.gripper else [])
        if len(set(ids)) != len(ids):
            raise ValueError(f"servo ids must be unique, got {ids}")
        ticks = [(n, j.range_min, j.range_max) for n, j in self.joints.items()]
        if self.gripper:
            g = self.gripper
            ends = sorted((g.open_ticks, g.closed_ticks))
            ticks.append(("gripper", ends[0], ends[1]))
        for name, low, high in ticks:
            if low < 0 or high > self.resolution - 1:
                raise ValueError(f"{name}: ticks must lie in [0, {self.resolution - 1}]")

    @property
    def ids(self) -> list[int]:
        """Servo ids in action order: the joints, then the gripper."""
        return [j.id for j in self.joints.values()] + ([self.gripper.id] if self.gripper else [])

    def limits(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Joint position limits (rad) implied by the tick ranges."""
        ends = [
            self.to_radians([j.range_min, j.range_max], [name] * 2)
            for name, j in self.joints.items()
        ]
        return tuple(float(min(e)) for e in ends), tuple(float(max(e)) for e in ends)

    def to_radians(
        self, ticks: np.ndarray | list[int], names: list[str] | None = None
    ) -> np.ndarray:
        """Joint angles (rad) from ticks, one per joint (or per ``names``)."""
        joints = [self.joints[n] for n in (names or list(self.joints))]
        t = np.asarray(ticks, dtype=np.float64)
        offset = np.array([j.offset for j in joints], dtype=np.float64)
        direction = np.array([j.direction for j in joints], dtype=np.float64)
        return direction * (t - offset) * (2 * math.pi / self.resolution)

    def to_ticks(self, radians: np.ndarray) -> np.ndarray:
        """Ticks (int64) for joint angles (rad), rounded and kept in each joint's range."""
        joints = list(self.joints.values())
        offset = np.array([j.offset for j in joints], dtype=np.float64)
        direction = np.array([j.direction for j in joints], dtype=np.float64)
        scale = self.resolution / (2 * math.pi)
        raw = offset + direction * np.asarray(radians, np.float64) * scale
        low = np.array([j.range_min for j in joints])
        high = np.array([j.range_max for j in joints])
        return np.clip(np.rint(raw), low, high).astype(np.int64)

    def gripper_ticks(self, command: float) -> int:
        """Ticks for a gripper command in [0, 1] (0 open, 1 closed)."""
        g = self._gripper()
        c = min(max(float(command), 0.0), 1.0)
        return round(g.open_ticks + c * (g.closed_ticks - g.open_ticks))

    def gripper_command(self, ticks: int) -> float:
        """Gripper command (0 open .. 1 closed) for a tick reading, kept in [0, 1]."""
        g = self._gripper()
        c = (ticks - g.open_ticks) / (g.closed_ticks - g.open_ticks)
        return min(max(float(c), 0.0), 1.0)

    def _gripper(self) -> GripperCalibration:
        if self.gripper is None:
            raise ValueError("this calibration has no gripper")
        return self.gripper

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically (the old file or the new one, never half)."""
        atomic_write_json(path, to_dict(self))

    @classmethod
    def load(cls, path: str | Path) -> ArmCalibration:
        """Read and validate ``path``; a DataError names the file and the bad key."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DataError(path, "no calibration file here; calibrate the arm first") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(path, f"not a readable JSON calibration: {exc}") from exc
        try:
            return from_dict(cls, data)
        except ConfigError as exc:
            raise DataError(path, str(exc)) from exc


def _check_id(servo_id: int) -> None:
    if isinstance(servo_id, bool) or not 0 <= servo_id <= 252:
        raise ValueError(f"servo id must be in 0..252, got {servo_id}")

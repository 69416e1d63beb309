"""End-effector devices to joint targets: a pose target moved by deltas and solved by the arm's IK.

:class:`EndEffectorTarget` keeps the target pose (position (3,) m, rotation (3, 3)) in the arm's
base frame. Each :class:`~hardware.teleop.device.EndEffectorCommand` moves it (translation
added, rotation applied on the left, both in the base frame), then the arm's own IK (for the
built-in arm, :meth:`sim.arm.Arm.ik`, the same solver the scripted experts use) gives the joint
targets, warm-started from the last safe command. A target the IK cannot reach does not wind
up: when the solution's end effector lands farther than ``max_error`` from it, the target snaps
back to where the solution put the end effector, so reversing the device moves the arm at once.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from hardware.teleop.device import EndEffectorCommand


class Kinematics(Protocol):
    """Forward and inverse kinematics of an arm (``sim.arm.Arm`` is one)."""

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position (3,) m and rotation (3, 3) at joint positions ``q`` (rad)."""
        ...

    def ik(
        self,
        position: np.ndarray,
        rotation: np.ndarray | None,
        q0: np.ndarray,
        *,
        iterations: int | None = None,
    ) -> np.ndarray:
        """Joint positions (rad, within limits) reaching the pose, starting from ``q0``."""
        ...


@dataclasses.dataclass(frozen=True)
class EndEffectorConfig:
    """How end-effector commands become joint targets."""

    orientation: bool = True
    """Track the target's orientation too; False solves for the position alone."""
    max_error: float = 0.02
    """Distance (m) between the target and the solved end effector beyond which the target
    snaps back to the solution (no wind-up past the arm's reach or its joint limits)."""
    ik_iterations: int | None = None
    """IK iterations per step; None uses the arm's IK configuration."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.max_error) and self.max_error > 0):
            raise ValueError(f"max_error must be a positive distance, got {self.max_error}")
        if self.ik_iterations is not None and self.ik_iterations < 1:
            raise ValueError(f"ik_iterations must be >= 1, got {self.ik_iterations}")


class EndEffectorTarget:
    """The pose an end-effector device steers, and the joints that reach it."""

    def __init__(self, kinematics: Kinematics, config: EndEffectorConfig | None = None) -> None:
        self.kinematics = kinematics
        self.config = config or EndEffectorConfig()
        self.position = np.zeros(3)
        """Target position (3,), m, base frame."""
        self.rotation = np.eye(3)
        """Target rotation (3, 3), base frame."""

    def reset(self, q: np.ndarray) -> None:
        """Put the target where the end effector is at joint positions ``q``."""
        position, rotation = self.kinematics.fk(np.asarray(q, dtype=np.float64))
        self.position, self.rotation = np.array(position), np.array(rotation)

    def apply(self, command: EndEffectorCommand, q0: np.ndarray) -> np.ndarray:
        """Move the target by ``command``; joint positions (rad) reaching it, from ``q0``."""
        translation = np.asarray(command.translation, dtype=np.float64)
        rotation = np.asarray(command.rotation, dtype=np.float64)
        if not (np.isfinite(translation).all() and np.isfinite(rotation).all()):
            return np.array(q0, dtype=np.float64)  # a broken reading moves nothing
        self.position = self.position + translation
        self.rotation = rotation_matrix(rotation) @ self.rotation
        cfg = self.config
        q = self.kinematics.ik(
            self.position,
            self.rotation if cfg.orientation else None,
            np.asarray(q0, dtype=np.float64),
            iterations=cfg.ik_iterations,
        )
        reached, reached_rotation = self.kinematics.fk(q)
        if np.linalg.norm(reached - self.position) > cfg.max_error:
            self.position, self.rotation = np.array(reached), np.array(reached_rotation)
        return q


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """The rotation (3, 3) of a rotation vector (axis * angle, rad), by Rodrigues' formula."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = np.asarray(rotvec, dtype=np.float64) / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)

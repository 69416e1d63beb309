"""``arm-push``: push a cube onto a target disc, starting on the wrong side of it.

The ee starts near the target, between the robot and the cube, so to push the cube home the
arm must first go around it, by the left or by the right: both are equally good, and the
scripted expert picks one at random. Demonstrations are therefore multimodal, the way Push-T's
are (a Gaussian policy averages the two detours and drives into the cube).

- Action (``"ee"`` mode): the end-effector target (x, y) in metres, world frame, at a fixed
  pushing height, tool down, gripper closed.
- State: ee (x, y), cube (x, y) in metres, and the cube's yaw as sin/cos of 4·yaw (a cube looks
  the same every quarter turn).
- Success: the cube's centre within ``success_radius`` of the target. Score: 1 at success,
  falling linearly to 0 at ``score_scale`` beyond the success radius.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from robopolicy.data.features import Source
from sim.builtin.arm_env import ArmTaskConfig, ArmTaskEnv

CUBE_HALF = 0.025
WORKSPACE_LOW = np.array([0.15, -0.28])
WORKSPACE_HIGH = np.array([0.62, 0.28])


@dataclasses.dataclass(frozen=True)
class PushConfig(ArmTaskConfig):
    """Options of ``arm-push``."""

    target: tuple[float, float] = (0.30, 0.0)
    """Centre (x, y) of the target disc on the table (m)."""
    success_radius: float = 0.025
    """Success when the cube's centre is this close to the target (m)."""
    score_scale: float = 0.2
    """Distance (m) beyond the success radius at which the score reaches 0."""
    cube_x: tuple[float, float] = (0.42, 0.50)
    """Range of the cube's initial x (m)."""
    cube_y: tuple[float, float] = (-0.08, 0.08)
    """Range of the cube's initial y (m)."""
    ee_jitter: float = 0.02
    """Half-width (m) of the square around the target where the ee starts."""
    push_height: float = 0.028
    """Height (m) of the ee site while pushing (fingertips 8 mm above the table)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.success_radius > 0 and self.score_scale > 0 and self.ee_jitter >= 0):
            raise ValueError("success_radius and score_scale must be > 0, ee_jitter >= 0")
        for name in ("cube_x", "cube_y"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high")
        if not (np.all(self.target >= WORKSPACE_LOW) and np.all(self.target <= WORKSPACE_HIGH)):
            raise ValueError(f"target {self.target} is outside the workspace")


class ArmPushEnv(ArmTaskEnv):
    """Push the cube onto the target disc (see the module docstring)."""

    scene = "arm_push.xml"
    config_class = PushConfig
    config: PushConfig
    task_state_names = ("ee_x", "ee_y", "cube_x", "cube_y", "cube_sin4yaw", "cube_cos4yaw")
    task_state_units = "m (positions), sin/cos of 4*yaw"
    ee_action_names = ("ee_x", "ee_y")
    ee_action_units = "m (end-effector target, world frame)"
    task_state_sources = (Source("ee_pose", size=2), Source("object_pose", name="cube", size=4))
    ee_action_sources = (Source("ee_target"),)

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__(render_mode, **options)
        self._cube = self.model.joint("cube").qposadr[0]
        self._target = np.asarray(self.config.target, dtype=np.float64)
        site = self.model.site("target")
        self.model.site_pos[site.id, :2] = self._target

    def _ee_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return WORKSPACE_LOW, WORKSPACE_HIGH

    @property
    def target(self) -> np.ndarray:
        """The target's centre (x, y), m."""
        return self._target.copy()

    def cube_pose(self) -> tuple[np.ndarray, float]:
        """The cube's centre (x, y) in metres and its yaw in radians."""
        qpos = self.data.qpos[self._cube : self._cube + 7]
        w, x, y, z = qpos[3:]
        yaw = float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))
        return qpos[:2].copy(), yaw

    def _reset_task(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        cfg = self.config
        yaw = rng.uniform(-np.pi, np.pi)
        qpos = self.data.qpos[self._cube : self._cube + 7]
        qpos[:3] = rng.uniform(cfg.cube_x[0], cfg.cube_x[1]), rng.uniform(*cfg.cube_y), CUBE_HALF
        qpos[3:] = np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)
        start = self._target + rng.uniform(-cfg.ee_jitter, cfg.ee_jitter, size=2)
        return np.array([*start, cfg.push_height]), 1.0

    def _task_state(self) -> np.ndarray:
        cube, yaw = self.cube_pose()
        ee = self.arm.ee_position(self.data)
        return np.array([ee[0], ee[1], cube[0], cube[1], np.sin(4 * yaw), np.cos(4 * yaw)])

    def _evaluate(self) -> tuple[bool, float]:
        cube = self.data.qpos[self._cube : self._cube + 2]
        distance = float(np.hypot(*(cube - self._target)))
        cfg = self.config
        if distance <= cfg.success_radius:
            return True, 1.0
        return False, float(max(0.0, 1.0 - (distance - cfg.success_radius) / cfg.score_scale))

    def _ee_command(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        return np.array([action[0], action[1], self.config.push_height]), 1.0

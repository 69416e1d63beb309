"""``arm-pick-place``: pick up a cube and put it down on a plate.

- Action (``"ee"`` mode): the end-effector target (x, y, z) in metres, world frame, tool down,
  and the gripper command in [0, 1] (0 open, 1 closed).
- State: ee (x, y, z) and the gripper opening (m), the cube (x, y, z) and its yaw as sin/cos of
  4·yaw, the plate (x, y).
- Success: the cube rests on the plate (centre within ``success_radius`` of the plate's centre,
  at most 1 cm above its resting height) and the gripper has let go of it. Score: 1 at success,
  else 0.9 × (1 − distance to the resting spot / ``score_scale``), floored at 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from robopolicy.data.features import Source
from sim.builtin.arm_env import ArmTaskConfig, ArmTaskEnv

CUBE_HALF = 0.02
PLATE_TOP = 0.01
WORKSPACE_LOW = np.array([0.18, -0.28, 0.015, 0.0])
WORKSPACE_HIGH = np.array([0.62, 0.28, 0.30, 1.0])


@dataclasses.dataclass(frozen=True)
class PickPlaceConfig(ArmTaskConfig):
    """Options of ``arm-pick-place``."""

    cube_x: tuple[float, float] = (0.36, 0.52)
    """Range of the cube's (and the plate's) initial x (m)."""
    cube_y: tuple[float, float] = (-0.2, 0.2)
    """Range of the cube's (and the plate's) initial y (m)."""
    cube_yaw: float = np.pi / 4
    """The cube's initial yaw is uniform in [-cube_yaw, cube_yaw] (rad)."""
    min_separation: float = 0.15
    """Least distance (m) between the cube's and the plate's initial centres."""
    success_radius: float = 0.05
    """Success needs the cube's centre this close to the plate's centre (m)."""
    score_scale: float = 0.3
    """Distance (m) from the resting spot at which the score reaches 0."""
    ee_jitter: float = 0.02
    """Half-width (m) of the cube around the home position where the ee starts."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("cube_x", "cube_y"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} must be (low, high) with low <= high")
        span = np.hypot(self.cube_x[1] - self.cube_x[0], self.cube_y[1] - self.cube_y[0])
        if not 0 <= self.min_separation < 0.9 * span:
            raise ValueError(f"min_separation must be in [0, {0.9 * span:.3f}) for these ranges")
        if not (self.success_radius > 0 and self.score_scale > 0 and self.ee_jitter >= 0):
            raise ValueError("success_radius and score_scale must be > 0, ee_jitter >= 0")
        if not 0 <= self.cube_yaw <= np.pi:
            raise ValueError(f"cube_yaw must be in [0, pi], got {self.cube_yaw}")


class ArmPickPlaceEnv(ArmTaskEnv):
    """Pick the cube and place it on the plate (see the module docstring)."""

    scene = "arm_pick_place.xml"
    config_class = PickPlaceConfig
    config: PickPlaceConfig
    task_state_names = (
        *("ee_x", "ee_y", "ee_z", "gripper_opening"),
        *("cube_x", "cube_y", "cube_z", "cube_sin4yaw", "cube_cos4yaw"),
        *("plate_x", "plate_y"),
    )
    task_state_units = "m (positions, gripper opening), sin/cos of 4*yaw"
    ee_action_names = ("ee_x", "ee_y", "ee_z", "gripper")
    ee_action_units = "m (end-effector target, world frame), gripper 0..1 (0 open, 1 closed)"
    task_state_sources = (
        Source("ee_pose", size=3),
        Source("gripper", size=1),
        Source("object_pose", name="cube", size=5),
        Source("object_pose", name="plate", size=2),
    )
    ee_action_sources = (Source("ee_target", size=3), Source("gripper", size=1))

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        super().__init__(render_mode, **options)
        self._cube = self.model.joint("cube").qposadr[0]
        self._plate = self.model.body("plate").mocapid[0]

    def _ee_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return WORKSPACE_LOW, WORKSPACE_HIGH

    def cube_pose(self) -> tuple[np.ndarray, float]:
        """The cube's centre (x, y, z) in metres and its yaw in radians."""
        qpos = self.data.qpos[self._cube : self._cube + 7]
        w, x, y, z = qpos[3:]
        yaw = float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))
        return qpos[:3].copy(), yaw

    @property
    def plate(self) -> np.ndarray:
        """The plate's centre (x, y), m."""
        return self.data.mocap_pos[self._plate, :2].copy()

    def resting_spot(self) -> np.ndarray:
        """Where the cube's centre sits when it is placed on the plate's centre."""
        return np.array([*self.plate, PLATE_TOP + CUBE_HALF])

    def _reset_task(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        cfg = self.config
        cube = np.array([rng.uniform(*cfg.cube_x), rng.uniform(*cfg.cube_y)])
        plate = cube
        while np.hypot(*(plate - cube)) < cfg.min_separation:
            plate = np.array([rng.uniform(*cfg.cube_x), rng.uniform(*cfg.cube_y)])
        yaw = rng.uniform(-cfg.cube_yaw, cfg.cube_yaw)
        qpos = self.data.qpos[self._cube : self._cube + 7]
        qpos[:3] = cube[0], cube[1], CUBE_HALF
        qpos[3:] = np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)
        self.data.mocap_pos[self._plate] = plate[0], plate[1], 0.0
        home = np.array([0.32, 0.0, 0.2])
        home[:2] += rng.uniform(-cfg.ee_jitter, cfg.ee_jitter, size=2)
        return home, 0.0

    def _task_state(self) -> np.ndarray:
        cube, yaw = self.cube_pose()
        ee = self.arm.ee_position(self.data)
        opening = self.arm.gripper_opening(self.data)
        plate = self.data.mocap_pos[self._plate]
        return np.array([*ee, opening, *cube, np.sin(4 * yaw), np.cos(4 * yaw), plate[0], plate[1]])

    def _evaluate(self) -> tuple[bool, float]:
        cube = self.data.qpos[self._cube : self._cube + 3]
        spot = self.resting_spot()
        on_plate = (
            np.hypot(*(cube[:2] - spot[:2])) <= self.config.success_radius
            and cube[2] <= spot[2] + 0.01
        )
        released = self.arm.gripper_opening(self.data) >= 2 * CUBE_HALF + 0.01
        if on_plate and released:
            return True, 1.0
        distance = float(np.linalg.norm(cube - spot))
        return False, 0.9 * max(0.0, 1.0 - distance / self.config.score_scale)

    def _ee_command(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        return action[:3].copy(), float(action[3])

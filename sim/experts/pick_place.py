"""The scripted expert of ``arm-pick-place``: above the cube, down, grip, up, over, down, let go.

A small state machine over phases, re-checked every step from the true state: a grasp that
did not take (the cube stays on the table when the arm lifts) or a cube dropped on the way sends
it back to the start. Quality: Gaussian noise and sloppy moves on the position commands, and a
careless finish (let go too high and off the plate's centre) with probability ``careless_prob``.
"""

from __future__ import annotations

import numpy as np

from sim.builtin.pick_place import CUBE_HALF, PLATE_TOP, ArmPickPlaceEnv
from sim.experts import ExpertConfig, Sloppiness, careless_draw, expert_rng, register_expert

HOVER = 0.07
"""Height (m) above the cube's centre to line up before going down."""
CARRY_Z = 0.14
"""Height (m) of the ee while carrying."""
STEP = 0.04
"""Nominal ee travel per step (m)."""
GRIP_STEPS = 3
"""Steps to close or open the gripper."""


class PickPlaceExpert:
    """Closed-loop pick-and-place controller (see the module docstring)."""

    def __init__(self, env: ArmPickPlaceEnv, config: ExpertConfig) -> None:
        self.env = env
        self.config = config
        self.sloppy = Sloppiness(config, dims=3)
        self.phase = "approach"
        self.wait = 0
        self.careless = False
        self.drop_offset = np.zeros(2)
        self._retreated = False

    @property
    def done(self) -> bool:
        """Done once it has let go and moved back up (whether or not the cube landed)."""
        return self.phase == "retreat" and self._retreated

    def reset(self, seed: int | None = None) -> None:
        rng = expert_rng(seed)
        self.phase = "approach"
        self.wait = 0
        self._retreated = False
        self.careless = careless_draw(seed, rng) < self.config.careless_prob
        angle = rng.uniform(-np.pi, np.pi)
        self.drop_offset = rng.uniform(0.055, 0.085) * np.array([np.cos(angle), np.sin(angle)])
        self.sloppy.reset(rng)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        env = self.env
        cube, _ = env.cube_pose()
        ee = env.arm.ee_position(env.data)
        plate = env.plate
        grasp_z = max(cube[2], CUBE_HALF + 0.002)
        held = np.linalg.norm(ee - cube) < 0.03 and env.arm.gripper_opening(env.data) < 0.05
        phase = self.phase
        if phase in ("lift", "carry", "lower") and not held:
            phase = "approach"  # missed or dropped it: start again
        target, grip = ee.copy(), 1.0
        if phase == "approach":
            target, grip = np.array([*cube[:2], grasp_z + HOVER]), 0.0
            if np.hypot(*(ee[:2] - cube[:2])) < 0.008 and self._opened():
                phase = "descend"
        if phase == "descend":
            target, grip = np.array([*cube[:2], grasp_z]), 0.0
            if np.hypot(*(ee[:2] - cube[:2])) > 0.02:
                phase = "approach"
            elif ee[2] - grasp_z < 0.006:
                phase, self.wait = "close", GRIP_STEPS
        if phase == "close":
            target, grip = np.array([*cube[:2], grasp_z]), 1.0
            self.wait -= 1
            if self.wait < 0:
                phase = "lift"
        if phase == "lift":
            target = np.array([*ee[:2], CARRY_Z])
            if ee[2] > CARRY_Z - 0.03:
                phase = "carry"
        if phase == "carry":
            spot = plate + (self.drop_offset if self.careless else 0.0)
            target = np.array([*spot, CARRY_Z])
            if np.hypot(*(ee[:2] - spot)) < 0.01:
                phase = "lower"
        if phase == "lower":
            spot = plate + (self.drop_offset if self.careless else 0.0)
            place_z = PLATE_TOP + CUBE_HALF + (0.06 if self.careless else 0.004)
            target = np.array([*spot, place_z])
            if ee[2] - place_z < 0.006:
                phase, self.wait = "release", GRIP_STEPS
        if phase == "release":
            target, grip = ee.copy(), 0.0
            self.wait -= 1
            if self.wait < 0:
                phase = "retreat"
        if phase == "retreat":
            target, grip = np.array([*ee[:2], CARRY_Z]), 0.0
            self._retreated = ee[2] > CARRY_Z - 0.03
        self.phase = phase
        target = self._limit(ee, target)
        return np.append(self.sloppy.perturb(target), grip).astype(np.float32)

    def _opened(self) -> bool:
        return self.env.arm.gripper_opening(self.env.data) > 2 * CUBE_HALF + 0.02

    def _limit(self, ee: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Move at most ``STEP × speed`` towards ``target``."""
        step = STEP * self.config.speed
        delta = target - ee
        distance = float(np.linalg.norm(delta))
        return target if distance <= step else ee + delta * (step / distance)


PRESETS = {
    "clean": ExpertConfig(),
    "imperfect": ExpertConfig(noise=0.004, sloppy_prob=0.05, careless_prob=0.35),
}


@register_expert("arm-pick-place", "scripted", presets=PRESETS)
def scripted_pick_place(env: ArmPickPlaceEnv, config: ExpertConfig) -> PickPlaceExpert:
    return PickPlaceExpert(env, config)

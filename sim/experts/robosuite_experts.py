"""Scripted experts of ``robosuite-lift`` and ``robosuite-can``, driving the OSC_POSE delta action.

Each step the expert reads the object and eef poses from ``obs["state"]`` (by the task's
``state_names``; the can's target bin comes from the env), picks a waypoint for the eef and
commands the controller towards it: a position delta ``waypoint - eef`` of at most
:data:`MAX_MOVE` per step, and the rotation that keeps the gripper pointing straight down, its
fingers across two faces of the cube (Lift) or at their initial heading (Can).

- Lift: above the cube -> down -> close -> lift 15 cm (success once the cube is 4 cm up).
- Can: above the can -> down -> close -> up over the bins' walls -> over the can's target
  quadrant -> lower -> open -> back up (success once the can lies in its quadrant and the
  gripper is 4.2 cm clear of it).

Closed loop: when the object is not coming along (an empty or slipped grasp) it starts again.
Quality (:class:`sim.experts.ExpertConfig`): Gaussian noise and sloppy moves on the waypoint;
``speed`` scales :data:`MAX_MOVE`; with probability ``careless_prob`` an episode is careless:
Lift closes 2-4 cm above the cube's centre (and up to 2 cm to the side) and gives up when that
grasp fails; Can lets go of the can from the carry height, 6-12 cm off its drop point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.experts import ExpertConfig, Sloppiness, expert_rng, register_expert

POS_SCALE = 0.05
"""Metres of eef motion per unit of the position action (robomimic's OSC output_max)."""
ROT_SCALE = 0.5
"""Radians of eef rotation per unit of the rotation action."""
MAX_MOVE = 0.02
"""Largest commanded eef move of one step (m) at speed 1 (0.4 m/s at 20 Hz)."""
GRIP_STEPS = 10
"""Steps spent closing or opening the gripper."""
HELD_OPENING = 0.01
"""Finger opening (m, the two finger joints together) above which a closed gripper holds
something: closed on nothing, it is about 0."""

LIFT_PRESETS = {
    "clean": ExpertConfig(),
    "imperfect": ExpertConfig(noise=0.004, sloppy_prob=0.05, careless_prob=0.45),
}
CAN_PRESETS = {
    "clean": ExpertConfig(),
    "imperfect": ExpertConfig(noise=0.004, sloppy_prob=0.05, careless_prob=0.5),
}


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion in robosuite's ``(x, y, z, w)`` order."""
    x, y, z, w = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame, rad) of the rotation taking ``current`` to ``target``."""
    error = target @ current.T
    angle = float(np.arccos(np.clip((np.trace(error) - 1.0) / 2.0, -1.0, 1.0)))
    axis = np.array(
        [error[2, 1] - error[1, 2], error[0, 2] - error[2, 0], error[1, 0] - error[0, 1]]
    )
    norm = float(np.linalg.norm(axis))
    return np.zeros(3) if norm < 1e-9 else axis / norm * angle


def gripper_down(heading: float) -> np.ndarray:
    """eef orientation pointing straight down, its finger axis (eef y) at ``heading`` (rad)."""
    y = np.array([np.cos(heading), np.sin(heading), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.column_stack([np.cross(y, z), y, z])


def finger_heading(eef_rot: np.ndarray) -> float:
    """Heading (rad, world) of the finger axis (eef y) of the eef orientation ``eef_rot``."""
    return float(np.arctan2(eef_rot[1, 1], eef_rot[0, 1]))


def near(a: np.ndarray, b: np.ndarray, xy: float, z: float) -> bool:
    """Whether ``a`` is within ``xy`` metres of ``b`` horizontally and ``z`` vertically."""
    return float(np.hypot(*(a[:2] - b[:2]))) < xy and abs(float(a[2] - b[2])) < z


def random_offset(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A horizontal offset (x, y, 0) of random direction and length in ``[low, high]`` m."""
    angle = rng.uniform(-np.pi, np.pi)
    return rng.uniform(low, high) * np.array([np.cos(angle), np.sin(angle), 0.0])


class OscExpert:
    """The phase machine and controller both experts share; subclasses plan the waypoints."""

    object_key = ""
    """Prefix of the object's observables in ``state_names`` (``cube``, ``Can``)."""

    def __init__(self, env: Any, config: ExpertConfig) -> None:
        self.env = env
        self.config = config
        self.sloppy = Sloppiness(config, dims=3)
        names = env.task_meta.state_names
        self._index = {
            "obj": names.index(f"{self.object_key}_pos.x"),
            "obj_quat": names.index(f"{self.object_key}_quat.qx"),
            "eef": names.index("robot0_eef_pos.x"),
            "eef_quat": names.index("robot0_eef_quat.qx"),
            "grip": names.index("robot0_gripper_qpos.0"),
        }
        self.phase = 0
        self.careless = False
        self.finished = False
        self._count = 0
        self._heading: float | None = None
        self.reset()

    @property
    def done(self) -> bool:
        """True once the task is done or a careless attempt has failed."""
        return self.finished

    def reset(self, seed: int | None = None) -> None:
        rng = expert_rng(seed)
        self.careless = bool(rng.random() < self.config.careless_prob)
        self.sloppy.reset(rng)
        self.restart()
        self.finished = False
        self.draw(rng)

    def draw(self, rng: np.random.Generator) -> None:
        """Per-episode random choices (after ``careless`` is drawn)."""

    def restart(self) -> None:
        """Back to the first phase (after a missed or lost grasp)."""
        self.phase = 0
        self._count = 0
        self._heading = None

    def advance(self, reached: bool) -> None:
        """Go on to the next phase once ``reached`` holds."""
        if reached:
            self.phase += 1
            self._count = 0

    def waited(self, steps: int) -> bool:
        """Count one step of a timed phase; True once ``steps`` have passed."""
        self._count += 1
        return self._count >= steps

    def _read(self, state: np.ndarray, key: str, size: int = 3) -> np.ndarray:
        start = self._index[key]
        return np.asarray(state[start : start + size], dtype=np.float64)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = obs["state"]
        obj, eef = self._read(state, "obj"), self._read(state, "eef")
        eef_rot = quat_to_matrix(self._read(state, "eef_quat", 4))
        grip = self._read(state, "grip", 2)
        held = float(grip[0] - grip[1]) > HELD_OPENING
        waypoint, close = self.plan(obj, eef, held)
        move = self.sloppy.perturb(waypoint) - eef
        limit = MAX_MOVE * self.config.speed
        move *= min(1.0, limit / max(float(np.linalg.norm(move)), 1e-9))
        if self._heading is None:
            self._heading = self.heading(eef_rot, self._read(state, "obj_quat", 4))
        turn = rotation_error(gripper_down(self._heading), eef_rot)
        action = np.concatenate([move / POS_SCALE, turn / ROT_SCALE, [1.0 if close else -1.0]])
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def heading(self, eef_rot: np.ndarray, obj_quat: np.ndarray) -> float:
        """Finger-axis heading (rad, world) for this attempt: the current one."""
        return finger_heading(eef_rot)

    def plan(self, obj: np.ndarray, eef: np.ndarray, held: bool) -> tuple[np.ndarray, bool]:
        """This step's eef waypoint and whether the gripper should be closed."""
        raise NotImplementedError


class LiftExpert(OscExpert):
    """Above the cube, down, close, lift; fingers across two opposite faces of the cube."""

    object_key = "cube"
    HOVER = 0.08
    """Height (m) above the cube's centre to line up at."""
    EARLY = (0.02, 0.04)
    """Range (m) of the height above the cube's centre at which a careless episode closes."""
    LIFT = 0.15
    """Height (m) above the grasp to lift the cube to (success needs about 2 cm)."""

    def draw(self, rng: np.random.Generator) -> None:
        self._offset = np.zeros(3)
        if self.careless:  # closes early, a little off the centre
            height = np.array([0.0, 0.0, rng.uniform(*self.EARLY)])
            self._offset = random_offset(rng, 0.0, 0.02) + height
        self._grasp_z = 0.0

    def heading(self, eef_rot: np.ndarray, obj_quat: np.ndarray) -> float:
        current = finger_heading(eef_rot)
        x, y, z, w = obj_quat
        cube_yaw = float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
        # the cube looks the same every quarter turn: turn to the face normal nearest the fingers
        return current + float((cube_yaw - current + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def plan(self, obj: np.ndarray, eef: np.ndarray, held: bool) -> tuple[np.ndarray, bool]:
        grasp = obj + self._offset
        above = grasp + np.array([0.0, 0.0, self.HOVER])
        if self.phase == 0:  # line up above the cube, gripper open
            self.advance(near(eef, above, 0.01, 0.02))
            return above, False
        if self.phase == 1:  # down to the grasp
            self.advance(near(eef, grasp, 0.008, 0.008))
            return grasp, False
        if self.phase == 2:  # close
            self._grasp_z = float(obj[2])
            self.advance(self.waited(GRIP_STEPS))
            return grasp, True
        lifted = np.array([eef[0], eef[1], self._grasp_z + self.LIFT])
        if not held or eef[2] - obj[2] > 0.04:  # the cube is not coming along
            self.finished = self.careless
            self.restart()
            return above, False
        self.finished = near(eef, lifted, 0.05, 0.02)
        return lifted, True


class CanExpert(OscExpert):
    """Above the can, down, close, up, over the can's bin quadrant, lower, open, back up."""

    object_key = "Can"
    HOVER = 0.1
    """Height (m) above the can's centre to line up at."""
    GRASP = 0.015
    """Height (m) of the grasp above the can's centre: the hand (3 cm above the eef site) stays
    clear of the can's top and of the bin walls (tops at 0.9 m) next to it."""
    CARRY_Z = 1.0
    """Height (m, world) of the eef while carrying: the can's bottom clears the bins' walls.
    The arm sags up to 4 cm below it over the far bin."""
    BIN_OFFSET = np.array([-0.035, -0.04, 0.0])
    """Drop point relative to the centre of the can's target quadrant (m): towards the robot,
    which reaches the quadrant's far side badly, and still 5 cm inside the quadrant's walls."""
    RELEASE = 0.1
    """Height (m) of the eef above the bin's base when it lets go of the can."""

    def draw(self, rng: np.random.Generator) -> None:
        robosuite_env = self.env.robosuite_env
        drop = np.array(robosuite_env.target_bin_placements[robosuite_env.object_id])
        self._drop = drop + self.BIN_OFFSET
        self._drop[2] = self.CARRY_Z
        self._release_z = drop[2] + self.RELEASE
        if self.careless:
            self._drop += random_offset(rng, 0.06, 0.12)
            self._release_z = self.CARRY_Z

    def plan(self, obj: np.ndarray, eef: np.ndarray, held: bool) -> tuple[np.ndarray, bool]:
        above = obj + np.array([0.0, 0.0, self.HOVER])
        grasp = obj + np.array([0.0, 0.0, self.GRASP])
        drop = self._drop
        release = np.array([drop[0], drop[1], self._release_z])
        if self.phase == 0:  # line up above the can, gripper open
            self.advance(near(eef, above, 0.01, 0.02))
            return above, False
        if self.phase == 1:  # down to the grasp
            self.advance(near(eef, grasp, 0.008, 0.008))
            return grasp, False
        if self.phase == 2:  # close
            self.advance(self.waited(GRIP_STEPS))
            return grasp, True
        if self.phase in (3, 4) and (not held or eef[2] - obj[2] > self.GRASP + 0.04):
            self.restart()  # the can is not coming along: start again
            return above, False
        if self.phase == 3:  # up over the walls
            up = np.array([eef[0], eef[1], self.CARRY_Z])
            self.advance(near(eef, up, 0.05, 0.02))
            return up, True
        if self.phase == 4:  # over the drop point
            self.advance(near(eef, drop, 0.01, 0.06))
            return drop, True
        if self.phase == 5:  # lower into the bin
            self.advance(near(eef, release, 0.01, 0.06 if self.careless else 0.01))
            return release, True
        if self.phase == 6:  # let go
            self.advance(self.waited(GRIP_STEPS))
            return release, False
        # back up, clear of the can, and give it time to settle
        self.finished = self.waited(GRIP_STEPS) and near(eef, drop, 0.05, 0.06)
        return drop, False


@register_expert("robosuite-lift", presets=LIFT_PRESETS)
def make_lift_expert(env: Any, config: ExpertConfig) -> LiftExpert:
    """The Lift expert driving ``env`` (an unwrapped ``robosuite-lift`` env)."""
    return LiftExpert(env, config)


@register_expert("robosuite-can", presets=CAN_PRESETS)
def make_can_expert(env: Any, config: ExpertConfig) -> CanExpert:
    """The PickPlaceCan expert driving ``env`` (an unwrapped ``robosuite-can`` env)."""
    return CanExpert(env, config)

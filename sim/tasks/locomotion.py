"""Locomotion: gymnasium's MuJoCo ``Hopper-v5``, ``Walker2d-v5`` and ``HalfCheetah-v5`` under the
project's task contract (``family="locomotion"``).

- ``obs["state"]`` ``(Ds,)`` float32: gymnasium's observation as it is (joint positions without
  the root's x, then joint velocities; Hopper 11, Walker2d 17, HalfCheetah 17 numbers);
  ``obs["timestamp"]`` seconds of simulated time since reset (steps × ``dt``).
- action ``(Da,)`` in [-1, 1]: normalized joint torques (MuJoCo multiplies by each actuator's
  gear). Actions are clipped to [-1, 1] before the step; a non-finite action is a ValueError.
- reward, termination (Hopper and Walker2d fall over; HalfCheetah never terminates) and the
  reset noise are gymnasium's v5 defaults. Episodes are truncated at 1000 steps (as in gymnasium
  and D4RL).
- ``info["score"]``: the D4RL normalized score of the return so far,
  ``100 * (return - REF_MIN) / (REF_MAX - REF_MIN)``, with D4RL's reference returns
  (``d4rl/infos.py``: random policy and expert SAC, for the v2 environments; v5 shares their
  dynamics and reward), so 0 is a random policy and 100 an expert; the episode's last score is
  the figure offline-RL papers report (×100). ``info["is_success"]`` is always False:
  locomotion has no success notion. gymnasium's own info (``x_position``, ``x_velocity``,
  reward terms) is kept.

gymnasium's MuJoCo environments need only ``mujoco`` and ``imageio`` (imported by
``gymnasium.envs.mujoco`` for rendering), both base dependencies (``gymnasium[mujoco]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from sim.gl import require_rendering
from sim.registry import TaskMeta, register_task

EPISODE_STEPS = 1000
"""gymnasium's (and D4RL's) time limit for these tasks."""


@dataclasses.dataclass(frozen=True)
class Locomotion:
    """One locomotion task: which gymnasium class and its D4RL reference returns."""

    module: str
    """``gymnasium.envs.mujoco`` module holding the env class."""
    cls: str
    """The v5 env class."""
    ref_min: float
    """D4RL ``REF_MIN_SCORE`` (random policy's return)."""
    ref_max: float
    """D4RL ``REF_MAX_SCORE`` (expert's return)."""


LOCOMOTION = {
    "hopper": Locomotion("hopper_v5", "HopperEnv", -20.272305, 3234.3),
    "walker2d": Locomotion("walker2d_v5", "Walker2dEnv", 1.629008, 4592.3),
    "halfcheetah": Locomotion("half_cheetah_v5", "HalfCheetahEnv", -280.178953, 12135.0),
}


def normalized_score(task: str, episode_return: float | np.ndarray) -> float | np.ndarray:
    """D4RL's normalized score ×100 of an (undiscounted) episode return of ``task``."""
    ref = LOCOMOTION[task]
    return 100.0 * (episode_return - ref.ref_min) / (ref.ref_max - ref.ref_min)


class LocomotionTask(gym.Env):
    """A gymnasium v5 locomotion env with the project's observation and info contract."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str, *, render_mode: str | None = None, **env_kwargs: Any) -> None:
        import importlib

        module = importlib.import_module(f"gymnasium.envs.mujoco.{LOCOMOTION[task].module}")
        self.task = task
        self._env = getattr(module, LOCOMOTION[task].cls)(render_mode=render_mode, **env_kwargs)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": self._env.metadata["render_fps"]}
        self.dt = float(self._env.dt)
        model = self._env.model
        joints = [model.joint(j).name for j in range(model.njnt)]
        skip = 1 if self._env._exclude_current_positions_from_observation else 0
        state_names = [f"pos_{name}" for name in joints[skip:]] + [f"vel_{name}" for name in joints]
        actions = [model.joint(int(model.actuator_trnid[a, 0])).name for a in range(model.nu)]
        self.task_meta = TaskMeta(
            state_names=tuple(state_names),
            action_names=tuple(f"torque_{name}" for name in actions),
            action_units="normalized torque in [-1, 1] (times each actuator's gear, N m)",
            fps=1.0 / self.dt,
        )
        self.state_units = "m and rad (positions), m/s and rad/s (velocities)"
        inner = self._env.observation_space
        if inner.shape != (len(state_names),):
            raise RuntimeError(f"{task}: observation {inner.shape} != {len(state_names)} names")
        self.observation_space = gym.spaces.Dict(
            {
                "state": gym.spaces.Box(-np.inf, np.inf, inner.shape, np.float32),
                "timestamp": gym.spaces.Box(0.0, np.inf, (), np.float64),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (model.nu,), np.float32)
        self._steps, self._return = 0, 0.0

    def _observe(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "state": np.asarray(raw, dtype=np.float32),
            "timestamp": np.array(self._steps * self.dt, dtype=np.float64),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        raw, info = self._env.reset(seed=seed, options=options)
        self._steps, self._return = 0, 0.0
        return self._observe(raw), {**info, "is_success": False, "score": self._score()}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        if not np.isfinite(action).all():
            raise ValueError(f"{self.task}: non-finite action {action}")
        action = np.clip(action, -1.0, 1.0)
        raw, reward, terminated, truncated, info = self._env.step(action)
        self._steps += 1
        self._return += float(reward)
        info = {**info, "is_success": False, "score": self._score()}
        return self._observe(raw), float(reward), bool(terminated), bool(truncated), info

    def _score(self) -> float:
        return float(normalized_score(self.task, self._return))

    def render(self) -> Any:
        if self.render_mode is not None:
            require_rendering()  # gymnasium's renderer reads the backend from MUJOCO_GL
        return self._env.render()

    def close(self) -> None:
        self._env.close()


def _register(name: str, title: str) -> None:
    ref = LOCOMOTION[name]
    register_task(
        name,
        description=f"gymnasium {title}-v5 (MuJoCo); state = gymnasium's obs; action = "
        f"normalized torques in [-1, 1]; score = D4RL normalized return "
        f"(random {ref.ref_min:g}, expert {ref.ref_max:g})",
        family="locomotion",
        max_episode_steps=EPISODE_STEPS,
        task=name,
    )(LocomotionTask)


for _name, _title in (
    ("hopper", "Hopper"),
    ("walker2d", "Walker2d"),
    ("halfcheetah", "HalfCheetah"),
):
    _register(_name, _title)

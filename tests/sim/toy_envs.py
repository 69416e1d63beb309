"""Small contract-following envs for the vector-env and chunking tests (picklable factories).

``ToyEnv`` is deterministic: its state is ``[seed, t, sum of the last action]``, an episode
terminates after ``3 + seed % 3`` steps, the reward is ``sum(action) + t`` and ``is_success`` is
``sum(action) > 1``. ``make_pendulum`` wraps gymnasium's ``Pendulum-v1`` to the same contract.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.registry import TaskMeta


class ToyEnv(gym.Env):
    """Deterministic Dict-observation env; raises on step ``fail_step`` of seed ``fail_seed`` and
    sleeps ``step_sleep_s`` in every step."""

    def __init__(
        self,
        fail_seed: int | None = None,
        fail_step: int = 2,
        image: bool = False,
        step_sleep_s: float = 0.0,
    ) -> None:
        state = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        obs = {"state": state, "timestamp": spaces.Box(0.0, np.inf, (), np.float64)}
        if image:
            obs["image.front"] = spaces.Box(0, 255, (4, 5, 3), np.uint8)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.task_meta = TaskMeta(("seed", "t", "a"), ("a0", "a1"), "unitless", fps=10.0)
        self.fail_seed, self.fail_step, self.image = fail_seed, fail_step, image
        self.step_sleep_s = step_sleep_s
        self._seed, self._t, self._length = 0, 0, 3

    def _obs(self, a: float) -> dict[str, np.ndarray]:
        obs = {
            "state": np.array([self._seed, self._t, a], np.float32),
            "timestamp": np.float64(self._t / self.task_meta.fps),
        }
        if self.image:
            obs["image.front"] = np.full((4, 5, 3), (self._seed + self._t) % 256, np.uint8)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._seed = seed if seed is not None else int(self.np_random.integers(1000))
        self._t, self._length = 0, 3 + self._seed % 3
        return self._obs(0.0), {"reset_seed": self._seed}

    def step(self, action):
        self._t += 1
        time.sleep(self.step_sleep_s)
        if self._seed == self.fail_seed and self._t == self.fail_step:
            raise RuntimeError(f"toy failure at seed {self._seed}")
        a = float(np.sum(action))
        info = {"is_success": a > 1.0, "score": self._t / self._length}
        return self._obs(a), a + self._t, self._t >= self._length, False, info


def make_toy(max_episode_steps: int = 100, **kwargs) -> gym.Env:
    """``ToyEnv(**kwargs)`` in a TimeLimit (truncation at ``max_episode_steps``)."""
    return gym.wrappers.TimeLimit(ToyEnv(**kwargs), max_episode_steps=max_episode_steps)


class ContractWrapper(gym.Wrapper):
    """A Box-observation gymnasium env under the task contract: ``state``, ``timestamp``, and
    ``is_success`` (never) and ``score`` (the reward) in every step's info."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        self.observation_space = spaces.Dict(
            state=spaces.Box(-np.inf, np.inf, shape, np.float32),
            timestamp=spaces.Box(0.0, np.inf, (), np.float64),
        )
        dt = env.unwrapped.dt
        self.task_meta = TaskMeta(
            tuple(f"s{i}" for i in range(shape[0])), ("torque",), "N m", fps=1.0 / dt
        )
        self._t = 0

    def _obs(self, obs) -> dict[str, np.ndarray]:
        return {
            "state": obs.astype(np.float32),
            "timestamp": np.float64(self._t / self.task_meta.fps),
        }

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._t = 0
        return self._obs(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        info = {**info, "is_success": False, "score": float(reward)}
        return self._obs(obs), reward, terminated, truncated, info


def make_pendulum(max_episode_steps: int = 200) -> gym.Env:
    """``Pendulum-v1`` under the task contract."""
    return ContractWrapper(gym.make("Pendulum-v1", max_episode_steps=max_episode_steps))

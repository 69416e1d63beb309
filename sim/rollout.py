"""RL rollouts on the simulated tasks: :mod:`robopolicy.rl.rollout`'s interface over
:mod:`sim.vector` and :mod:`sim.chunking`.

    rollouts = SimRollouts("hopper")
    collector = rollouts.collector(num_envs=8, n_obs_steps=1, n_action_steps=1, seed=0)
    batch = collector.collect(act_fn, n_decisions=256)        # a RolloutBatch
    evaluate = rollouts.evaluator(episodes=10, n_obs_steps=1, n_action_steps=1, seed=10**6,
                                  num_envs=5)
    figures = evaluate(act_fn)                                 # {"return": ..., ...}

The collector keeps its envs running between :meth:`SimCollector.collect` calls (episodes span
batches; nothing is reset at a batch boundary). Each decision converts the To-step histories to
torch (CPU), calls ``act_fn`` once for all N envs, and runs the chunk with
:meth:`ActionChunkEnv.step_chunk`. The evaluator plays episode seeds ``seed … seed + E − 1``,
``num_envs`` at a time, each env's first episode only, and returns the same figures every call
for the same ``act_fn``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from robopolicy.rl.rollout import Act, ActFn, RolloutBatch, RolloutSpec
from sim.chunking import ActionChunkEnv, ChunkConfig
from sim.vector import TaskFactory, VectorEnv, VectorEnvConfig

EPISODE_KEYS = ("return", "length", "success", "max_score", "seed")


def to_torch(obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Observation arrays as tensors (``state`` float32, images uint8, ``timestamp`` float64)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in obs.items()}


def _spec(env: VectorEnv) -> RolloutSpec:
    space, box = env.single_observation_space, env.single_action_space
    low, high = np.asarray(box.low, np.float64), np.asarray(box.high, np.float64)
    bounded = bool(np.isfinite(low).all() and np.isfinite(high).all())
    return RolloutSpec(
        obs_shapes={k: tuple(s.shape) for k, s in space.spaces.items()},
        action_shape=tuple(box.shape),
        action_low=tuple(low.tolist()) if bounded else None,
        action_high=tuple(high.tolist()) if bounded else None,
        fps=float(env.task_meta.fps),
    )


class SimCollector:
    """A :class:`~robopolicy.rl.rollout.RolloutCollector` over N simulated envs."""

    def __init__(
        self, env_fn: Callable[[], Any], config: VectorEnvConfig, chunk: ChunkConfig
    ) -> None:
        self.env = ActionChunkEnv(VectorEnv(env_fn, config), chunk)
        self.num_envs = config.num_envs
        self.spec = _spec(self.env.env)
        self._obs: dict[str, np.ndarray] | None = None

    def reset(self, seed: int) -> None:
        self._obs, _ = self.env.reset(seed=seed)

    def collect(self, act_fn: ActFn, n_decisions: int) -> RolloutBatch:
        if n_decisions < 1:
            raise ValueError(f"n_decisions must be >= 1, got {n_decisions}")
        if self._obs is None:
            self.reset(0)
        ta = self.env.config.n_action_steps
        shape = (n_decisions, self.num_envs, ta)
        rewards, dones, executed = (
            np.zeros(shape, np.float32),
            np.zeros(shape, bool),
            np.zeros(shape, bool),
        )
        terminated = np.zeros(shape[:2], bool)
        truncated = np.zeros(shape[:2], bool)
        obs_steps, actions, extras = [], [], []
        final: list[dict[str, np.ndarray]] = []
        episodes: dict[str, list[np.ndarray]] = {k: [] for k in EPISODE_KEYS}
        for t in range(n_decisions):
            obs = to_torch(self._obs)
            act = act_fn(obs)
            chunk = act.actions.detach().cpu()
            out = self.env.step_chunk(chunk.numpy())
            obs_steps.append(obs)
            actions.append(chunk)
            extras.append({k: v.detach().cpu() for k, v in act.extras.items()})
            n = out.executed.shape[1]
            rewards[t, :, :n], dones[t, :, :n], executed[t, :, :n] = (
                out.rewards,
                out.dones,
                out.executed,
            )
            terminated[t] = out.terminated
            truncated[t] = out.truncated & ~out.terminated  # termination wins when both are set
            final.extend(
                {k: v[i] for k, v in out.final_obs.items()} for i in np.flatnonzero(truncated[t])
            )
            for key in EPISODE_KEYS:
                episodes[key].append(out.episode[key][out.done])
            self._obs = out.obs
        n = int(executed.sum(-1).max())
        next_obs = to_torch(self._obs)
        ended = {k: torch.from_numpy(np.concatenate(v)) for k, v in episodes.items()}
        ended["score"] = ended.pop("max_score")
        return RolloutBatch(
            obs={k: torch.stack([o[k] for o in obs_steps]) for k in next_obs},
            actions=torch.stack(actions),
            extras={k: torch.stack([e[k] for e in extras]) for k in extras[0]},
            rewards=torch.from_numpy(rewards[..., :n]),
            dones=torch.from_numpy(dones[..., :n]),
            executed=torch.from_numpy(executed[..., :n]),
            terminated=torch.from_numpy(terminated),
            truncated=torch.from_numpy(truncated),
            next_obs=next_obs,
            final_obs={
                k: torch.from_numpy(np.stack([f[k] for f in final]))
                if final
                else torch.zeros((0, *v.shape[1:]), dtype=v.dtype)
                for k, v in next_obs.items()
            },
            episodes=ended,
        )

    def close(self) -> None:
        self.env.close()


class SimEvaluator:
    """An :class:`~robopolicy.rl.rollout.Evaluator`: fixed seeds, each env's first episode."""

    def __init__(
        self,
        env_fn: Callable[[], Any],
        *,
        episodes: int,
        seed: int,
        num_envs: int,
        chunk: ChunkConfig,
        in_process: bool | None = None,
    ) -> None:
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.episodes, self.seed = episodes, seed
        n = min(num_envs, episodes)
        config = VectorEnvConfig(num_envs=n, seed=seed, in_process=in_process)
        self.env = ActionChunkEnv(VectorEnv(env_fn, config), chunk)

    def __call__(self, act_fn: ActFn) -> dict[str, float]:
        n = self.env.num_envs
        found: dict[str, list[np.ndarray]] = {k: [] for k in EPISODE_KEYS}
        for start in range(0, self.episodes, n):
            obs, _ = self.env.reset(seed=self.seed + start)  # env i plays seed + start + i
            pending = np.ones(n, bool)
            pending[self.episodes - start :] = False
            first: dict[str, np.ndarray] = {k: np.zeros(n) for k in EPISODE_KEYS}
            while pending.any():
                with torch.no_grad():
                    chunk = act_fn(to_torch(obs)).actions.cpu().numpy()
                out = self.env.step_chunk(chunk)
                for i in np.flatnonzero(out.done & pending):
                    for key in EPISODE_KEYS:
                        first[key][i] = out.episode[key][i]
                pending &= ~out.done
                obs = out.obs
            wanted = min(n, self.episodes - start)
            for key in EPISODE_KEYS:
                found[key].append(first[key][:wanted])
        ep = {k: np.concatenate(v) for k, v in found.items()}
        return {
            "return": float(ep["return"].mean()),
            "return_std": float(ep["return"].std()),
            "success_rate": float(ep["success"].mean()),
            "score": float(ep["max_score"].mean()),
            "length": float(ep["length"].mean()),
            "episodes": float(len(ep["return"])),
        }

    def close(self) -> None:
        self.env.close()


class SimRollouts:
    """The :class:`~robopolicy.rl.rollout.RolloutFactory` of one registered task (or of any
    picklable ``env_fn`` following the task contract)."""

    def __init__(
        self,
        task: str,
        *,
        task_kwargs: Mapping[str, Any] | None = None,
        env_fn: Callable[[], Any] | None = None,
        in_process: bool | None = None,
        num_workers: int | None = None,
    ) -> None:
        self.task = task
        self.env_fn = env_fn or TaskFactory(task, dict(task_kwargs or {}))
        self.in_process, self.num_workers = in_process, num_workers

    def collector(
        self, *, num_envs: int, n_obs_steps: int, n_action_steps: int, seed: int
    ) -> SimCollector:
        config = VectorEnvConfig(
            num_envs=num_envs, seed=seed, in_process=self.in_process, num_workers=self.num_workers
        )
        collector = SimCollector(self.env_fn, config, ChunkConfig(n_obs_steps, n_action_steps))
        collector.reset(seed)
        return collector

    def evaluator(
        self, *, episodes: int, n_obs_steps: int, n_action_steps: int, seed: int, num_envs: int
    ) -> SimEvaluator:
        return SimEvaluator(
            self.env_fn,
            episodes=episodes,
            seed=seed,
            num_envs=num_envs,
            chunk=ChunkConfig(n_obs_steps, n_action_steps),
            in_process=self.in_process,
        )


def env_steps_per_second(task: str, num_envs: int, seconds: float = 3.0, **kwargs: Any) -> float:
    """Environment steps per second of ``task`` through a :class:`SimCollector` (uniform random
    actions, To = Ta = 1, ``num_envs`` envs; ``kwargs`` go to :class:`SimRollouts`)."""
    collector = SimRollouts(task, **kwargs).collector(
        num_envs=num_envs, n_obs_steps=1, n_action_steps=1, seed=0
    )
    spec = collector.spec
    low = np.asarray(spec.action_low if spec.action_low else -np.ones(spec.action_shape))
    high = np.asarray(spec.action_high if spec.action_high else np.ones(spec.action_shape))
    rng = np.random.default_rng(0)

    def act(obs: dict[str, torch.Tensor]) -> Act:
        actions = rng.uniform(low, high, (num_envs, 1, *low.shape)).astype(np.float32)
        return Act(torch.from_numpy(actions), {})

    try:
        collector.collect(act, 10)
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            steps += collector.collect(act, 50).env_steps
        return steps / (time.perf_counter() - started)
    finally:
        collector.close()

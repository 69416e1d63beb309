"""D4RL-style "medium" datasets for the locomotion tasks: ``robopolicy medium``.

D4RL made ``hopper-medium`` and its siblings by training a policy online, stopping it at about a
third of expert performance, and recording its *stochastic* rollouts. D4RL cannot be downloaded
here, so this does the same with our own pieces:

1. train a Gaussian PPO policy from scratch (:mod:`robopolicy.rl.ppo`, cleanrl's settings) and
   stop it after a fixed budget of environment steps — ``DEFAULT_BUDGETS`` per task, read off a
   1M-step run's curve where its stochastic return is near a third of D4RL's expert return (the
   learning rate anneals as in that run, so the stopped run is its exact beginning) — into
   ``<out>.expert/`` (resumable; its ``checkpoints/latest`` is an ordinary policy checkpoint);
2. roll that policy out with its sampling noise into the episode store ``<out>``: episode ``i``
   is reset with seed ``seed + i`` and draws its noise from a generator seeded the same way, so
   a store is a pure function of (task, budget, seed) and resuming appends exactly the episodes
   an uninterrupted run would have.

Frames: ``state`` (float32), ``action`` (the executed action, clipped to [-1, 1], float32),
``reward`` (float32, the reward of the step taken from this frame), ``terminal`` (True on the
last frame of an episode that terminated: the hopper fell) and ``timeout`` (True on the last frame
of one truncated at 1000 steps) — D4RL's ``terminals``/``timeouts`` — and ``timestamp``.
Per episode: ``seed``, ``return``, ``length``, ``score`` (D4RL normalized ×100) and
``terminated``. The store's ``medium`` attribute records the budget, the expert's evaluation and
the return statistics.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from robopolicy.config import apply_overrides, to_dict
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from robopolicy.policies.base import Policy
from robopolicy.policies.checkpoint import load_policy

log = logging.getLogger(__name__)

ANNEAL_STEPS = 1_000_000
"""The learning rate anneals as over a 1M-step run (cleanrl's budget), which the budget stops
early: the expert is exactly the policy a 1M-step run has at ``budget_steps``."""
DEFAULT_BUDGETS = {"hopper": 250_000, "walker2d": 400_000, "halfcheetah": 1_000_000}
"""Environment steps of PPO training per task (see the module docstring and BENCHMARKS.md)."""


@dataclasses.dataclass(frozen=True)
class MediumConfig:
    """One ``robopolicy medium`` run."""

    task: str
    """A locomotion task: hopper, walker2d or halfcheetah."""
    out: Path
    """The episode store to create or resume."""
    budget_steps: int | None = None
    """PPO training budget in environment steps (None: ``DEFAULT_BUDGETS[task]``)."""
    episodes: int = 200
    """Episodes the store holds at the end (D4RL's medium sets hold ~1M steps)."""
    seed: int = 0
    """Seeds the training run and the recorded episodes (``seed + i``)."""
    num_envs: int = 8
    """Environments collecting in parallel during training."""
    train_dir: Path | None = None
    """Where the expert trains (None: ``<out>.expert`` beside the store)."""
    overrides: tuple[str, ...] = ()
    """``key=value`` overrides of :class:`robopolicy.rl.ppo_config.PPOConfig`."""

    def __post_init__(self) -> None:
        from sim.tasks.locomotion import LOCOMOTION

        object.__setattr__(self, "out", Path(self.out))
        if self.train_dir is not None:
            object.__setattr__(self, "train_dir", Path(self.train_dir))
        if self.task not in LOCOMOTION:
            raise ValueError(f"medium datasets are for {sorted(LOCOMOTION)}, not {self.task!r}")
        if self.budget_steps is None:
            object.__setattr__(self, "budget_steps", DEFAULT_BUDGETS[self.task])
        if self.budget_steps < 1 or self.episodes < 1 or self.seed < 0 or self.num_envs < 1:
            raise ValueError("budget_steps, episodes and num_envs must be >= 1, seed >= 0")

    @property
    def expert_dir(self) -> Path:
        return self.train_dir or self.out.with_name(self.out.name + ".expert")


def medium(config: MediumConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the expert, then fill (or resume) the store; returns the report."""
    from robopolicy.rl.ppo import train
    from robopolicy.rl.ppo_config import PPOConfig
    from sim.registry import make_task
    from sim.rollout import SimRollouts
    from sim.tasks.locomotion import normalized_score

    started = time.perf_counter()
    ppo = PPOConfig(
        total_env_steps=config.budget_steps,
        anneal_steps=ANNEAL_STEPS,
        num_envs=config.num_envs,
        seed=config.seed,
    )
    ppo = apply_overrides(ppo, list(config.overrides))
    identity = {
        "task": config.task,
        "budget_steps": config.budget_steps,
        "seed": config.seed,
        "ppo": to_dict(ppo),
    }
    env = make_task(config.task)
    try:
        store = _open_store(config.out, env, identity)  # a mismatch fails before any training
        card = {"task": config.task, "command": "robopolicy medium", "budget": config.budget_steps}
        rollouts = SimRollouts(config.task)
        result = train(ppo, rollouts, config.expert_dir, card=card, progress=progress)
        policy = load_policy(result.checkpoint).eval()
        bar = tqdm(
            total=config.episodes,
            initial=store.n_episodes,
            desc=f"medium {config.task}",
            unit="ep",
            disable=not progress,
        )
        while store.n_episodes < config.episodes:
            seed = config.seed + store.n_episodes
            frames = rollout(env, policy, seed)
            episode_return = float(frames["reward"].sum(dtype=np.float64))
            store.append_episode(
                frames,
                episode_meta={
                    "seed": np.int64(seed),
                    "return": np.float64(episode_return),
                    "length": np.int64(len(frames["reward"])),
                    "score": np.float64(normalized_score(config.task, episode_return)),
                    "terminated": np.bool_(frames["terminal"][-1]),
                },
            )
            bar.update(1)
            bar.set_postfix(ret=f"{episode_return:.0f}")
        bar.close()
    finally:
        env.close()
    returns = store.episode_meta("return")[: config.episodes]
    scores = store.episode_meta("score")[: config.episodes]
    summary = {
        "task": config.task,
        "budget_steps": config.budget_steps,
        "seed": config.seed,
        "expert_checkpoint": str(result.checkpoint),
        "expert_env_steps": result.env_steps,
        "expert_eval_return": result.eval_after.get("return"),
        "expert_eval_score": result.eval_after.get("score"),
        "episodes": len(returns),
        "frames": int(store.episode_lengths[: config.episodes].sum()),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "score_mean": float(scores.mean()),
        "terminated_episodes": int(store.episode_meta("terminated")[: config.episodes].sum()),
    }
    store.set_attrs(medium=summary)
    return {**summary, "out": str(config.out), "seconds": round(time.perf_counter() - started, 1)}


def rollout(env: Any, policy: Policy, seed: int) -> dict[str, np.ndarray]:
    """One episode of ``policy`` sampling with noise from a generator seeded ``seed``, from
    ``env.reset(seed=seed)``; its frames (module docstring)."""
    c = policy.config
    generator = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    history = {k: np.repeat(obs[k][None], c.n_obs_steps, axis=0) for k in c.obs_keys}
    frames: dict[str, list[Any]] = {k: [] for k in ("state", "action", "reward", "timestamp")}
    queue: list[np.ndarray] = []
    low, high = env.action_space.low, env.action_space.high
    while True:
        if not queue:
            batch = {k: torch.from_numpy(v[None]) for k, v in history.items()}
            noise = torch.randn((1, c.horizon, c.action_dim), generator=generator)
            with torch.no_grad():
                chunk = policy.sample(batch, noise=noise)[0].numpy()
            start = c.n_obs_steps - 1
            queue = list(chunk[start : start + c.n_action_steps])
        action = np.clip(queue.pop(0), low, high).astype(np.float32)
        frames["state"].append(obs["state"])
        frames["timestamp"].append(obs["timestamp"])
        frames["action"].append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        frames["reward"].append(np.float32(reward))
        for k in c.obs_keys:
            history[k] = np.concatenate([history[k][1:], obs[k][None]])
        if terminated or truncated:
            break
    out = {k: np.stack(v) for k, v in frames.items()}
    length = len(out["reward"])
    out["terminal"] = np.zeros(length, bool)
    out["timeout"] = np.zeros(length, bool)
    out["terminal" if terminated else "timeout"][-1] = True
    return out


def _open_store(path: Path, env: Any, identity: dict[str, Any]) -> EpisodeStore:
    """A new store for this run, or the existing one after checking it was made the same way."""
    from sim.collect import write_features

    meta = env.unwrapped.task_meta
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        store = EpisodeStore.create(path, fps=meta.fps, attrs={"tasks": [identity["task"]]})
        store.set_attrs(
            medium_identity=identity, source="robopolicy medium (Gaussian PPO, stochastic)"
        )
        write_features(store, env)
        store.set_feature("reward", units="gymnasium v5 reward of the step from this frame")
        store.set_feature("timestamp", units="s (simulated time since reset)")
        return store
    store = EpisodeStore.open(path, mode="a")
    have = store.attrs.get("medium_identity")
    if not isinstance(have, dict):
        raise DataError(path, "exists and was not made by `robopolicy medium`; choose a new --out")
    differ = [
        f"{k}: store has {have.get(k)!r}, asked {v!r}"
        for k, v in identity.items()
        if have.get(k) != v
    ]
    if differ:
        raise DataError(path, "cannot resume a different dataset (" + "; ".join(differ) + ")")
    if store.n_episodes and not np.array_equal(
        store.episode_meta("seed"), identity["seed"] + np.arange(store.n_episodes)
    ):
        raise DataError(path, "episode seeds are not contiguous; cannot resume", key="seed")
    log.info("resuming %s: %d episodes committed", path, store.n_episodes)
    return store

"""Scripted demonstrations into the episode store (what ``robopolicy collect`` runs).

Episode ``i`` of a store is the rollout of seed ``seed + i`` (with ``only_success``, the seeds of
failed attempts are skipped and each episode records the seed it came from). Each frame is the
observation and the action taken at it: ``state``, ``action``, ``timestamp`` and
``image.<camera>`` per camera asked for. Per episode: ``seed``, ``success``, the final ``score``
and ``task_index`` (into the ``tasks`` attribute).

Collection resumes: run the same command again and it continues after the committed episodes
(a killed run loses at most the episode in flight). It refuses a store made with another task,
expert, quality, seed, cameras or fps, or whose seeds have a gap.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robopolicy.data.features import Source
from robopolicy.data.formats.base import IMAGE_PREFIX
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError, RobopolicyError

log = logging.getLogger(__name__)
MAX_ATTEMPTS_PER_EPISODE = 50
"""With ``only_success``: give up after this many attempts per episode still wanted."""


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """One ``robopolicy collect`` run."""

    task: str
    """Registered task name, e.g. ``arm-push``."""
    out: Path
    """The episode store to create or to resume."""
    episodes: int
    """Episodes the store should hold when the run ends (resuming counts committed ones)."""
    seed: int = 0
    """Episode ``i`` is reset with seed ``seed + i``."""
    expert: str = "scripted"
    """Expert name in the task's expert registry."""
    quality: str = "imperfect"
    """Expert quality preset: ``clean`` or ``imperfect``."""
    cameras: tuple[str, ...] = ()
    """Cameras recorded as ``image.<camera>``."""
    only_success: bool = False
    """Keep only successful episodes (default: keep all; imperfect data is the point)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def identity(self, fps: float) -> dict[str, Any]:
        """What a resumed run must share with the store (saved as the ``collect`` attribute)."""
        return {
            "task": self.task,
            "expert": self.expert,
            "quality": self.quality,
            "seed": self.seed,
            "cameras": list(self.cameras),
            "only_success": self.only_success,
            "fps": float(fps),
        }


@dataclasses.dataclass
class CollectReport:
    """What a run did (``--json`` prints :meth:`as_dict`)."""

    config: CollectConfig
    episodes: int = 0
    """Episodes in the store at the end."""
    frames: int = 0
    """Frames in the store at the end."""
    new_episodes: int = 0
    """Episodes committed by this run."""
    attempts: int = 0
    """Episodes rolled out by this run (more than ``new_episodes`` with ``only_success``)."""
    successes: int = 0
    """Successful rollouts of this run."""
    store_successes: int = 0
    """Successful episodes in the whole store."""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "task": cfg.task,
            "expert": cfg.expert,
            "quality": cfg.quality,
            "out": str(cfg.out),
            "episodes": self.episodes,
            "frames": self.frames,
            "new_episodes": self.new_episodes,
            "attempts": self.attempts,
            "successes": self.successes,
            "success_rate": self.successes / self.attempts if self.attempts else None,
            "store_success_rate": self.store_successes / self.episodes if self.episodes else None,
            "seconds": round(self.seconds, 3),
        }


def collect_demos(config: CollectConfig, *, progress: bool = True) -> CollectReport:
    """Roll out the expert until the store holds ``config.episodes`` episodes."""
    from sim.experts import make_expert
    from sim.registry import make_task

    started = time.perf_counter()
    env = make_task(config.task, cameras=config.cameras)
    expert = make_expert(config.task, env, quality=config.quality, name=config.expert)
    meta = env.unwrapped.task_meta
    store = _open_store(config, env, meta.fps)
    report = CollectReport(config)
    seeds = store.episode_meta("seed") if store.n_episodes else np.zeros(0, np.int64)
    next_seed = int(seeds[-1]) + 1 if seeds.size else config.seed
    wanted = config.episodes - store.n_episodes
    max_attempts = wanted * MAX_ATTEMPTS_PER_EPISODE if config.only_success else wanted
    bar = tqdm(
        total=config.episodes,
        initial=store.n_episodes,
        desc=f"collect {config.task}",
        unit="ep",
        disable=not progress,
    )
    try:
        while store.n_episodes < config.episodes:
            if report.attempts >= max_attempts:
                raise RobopolicyError(
                    f"{config.task}: only {report.successes} of {report.attempts} attempts "
                    f"succeeded; the expert cannot fill {config.episodes} successful episodes"
                )
            frames, success, score = rollout(env, expert, next_seed)
            report.attempts += 1
            report.successes += int(success)
            if success or not config.only_success:
                store.append_episode(
                    frames,
                    episode_meta={
                        "seed": np.int64(next_seed),
                        "success": np.bool_(success),
                        "score": np.float64(score),
                        "task_index": np.int64(0),
                    },
                )
                report.new_episodes += 1
                bar.update(1)
            next_seed += 1
            bar.set_postfix(success=f"{report.successes}/{report.attempts}")
    except KeyboardInterrupt:
        log.warning(
            "interrupted with %d episodes committed; run the same command again to resume",
            store.n_episodes,
        )
        raise
    finally:
        bar.close()
        env.close()
    report.episodes = store.n_episodes
    report.frames = store.n_frames
    report.store_successes = int(store.episode_meta("success").sum()) if store.n_episodes else 0
    report.seconds = time.perf_counter() - started
    return report


def rollout(env: Any, expert: Any, seed: int) -> tuple[dict[str, np.ndarray], bool, float]:
    """One episode of ``expert`` from ``env.reset(seed=seed)``: frames, success, final score."""
    obs, info = env.reset(seed=seed)
    expert.reset(seed=seed)
    steps: dict[str, list[np.ndarray]] = {key: [] for key in (*obs, "action")}
    while True:
        action = np.asarray(expert.act(obs), dtype=np.float32)
        for key, value in obs.items():
            steps[key].append(value)
        steps["action"].append(action)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated or getattr(expert, "done", False):
            break
    frames = {key: np.stack(values) for key, values in steps.items()}
    return frames, bool(info["is_success"]), float(info["score"])


def write_features(store: EpisodeStore, env: Any) -> None:
    """Record what ``env``'s task says of its keys in ``store``: the names, units and sources of
    ``state`` and ``action``, and each camera key's camera."""
    meta = env.unwrapped.task_meta
    state_units = env.unwrapped.state_units
    store.set_feature(
        "state", names=list(meta.state_names), units=state_units, sources=meta.state_sources
    )
    store.set_feature(
        "action",
        names=list(meta.action_names),
        units=meta.action_units,
        sources=meta.action_sources,
    )
    for key in env.observation_space.spaces:
        if key.startswith(IMAGE_PREFIX):
            camera = Source("camera", name=key.removeprefix(IMAGE_PREFIX))
            store.set_feature(key, units="RGB 0..255", sources=[camera])


def _open_store(config: CollectConfig, env: Any, fps: float) -> EpisodeStore:
    """A new store set up for this run, or the existing one after checking it matches."""
    identity = config.identity(fps)
    keys = sorted({"action", *env.observation_space.spaces})
    out = config.out
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        store = EpisodeStore.create(out, fps=fps, attrs={"tasks": [config.task]})
        store.set_attrs(collect=identity, source=f"robopolicy collect ({config.expert} expert)")
        write_features(store, env)
        store.set_feature("timestamp", units="s (simulated time since reset)")
        return store
    store = EpisodeStore.open(out, mode="a")
    have = store.attrs.get("collect")
    if not isinstance(have, dict):
        raise DataError(out, "exists and was not made by `robopolicy collect`; choose a new --out")
    differ = [
        f"{key}: store has {have.get(key)!r}, asked {value!r}"
        for key, value in identity.items()
        if have.get(key) != value
    ]
    if store.keys and sorted(store.keys) != keys:
        differ.append(f"keys: store has {sorted(store.keys)}, asked {keys}")
    if differ:
        raise DataError(out, "cannot resume a different collection (" + "; ".join(differ) + ")")
    if store.n_episodes:
        seeds = store.episode_meta("seed")
        expected = config.seed + np.arange(store.n_episodes)
        gap = np.any(np.diff(seeds) < 1) if config.only_success else np.any(seeds != expected)
        if gap or seeds[0] < config.seed:
            raise DataError(out, "episode seeds are not contiguous; cannot resume", key="seed")
    log.info("resuming %s: %d episodes committed", out, store.n_episodes)
    return store

"""Evaluate a policy by rollouts: ``evaluate_policy(policy, "arm-push", episodes=50, seed=0)``.

Receding-horizon execution in N parallel environments (:mod:`sim.vector`, :mod:`sim.chunking`):
the policy samples a chunk of Tp actions for every env at once from the To-step observation
histories (raw units, as torch tensors), each env executes actions ``[To - 1, To - 1 + Ta)`` —
action To - 1 is due "now" — or fewer if its episode ends, and the policy is queried again.
After a chunk in which episodes ended, ``policy.reset(done)`` (``done`` (N,) bool) lets the policy
forget what it carried for those envs (warm start: :mod:`robopolicy.inference.warm_start`).

**Seeds.** The episodes are exactly those reset with seeds ``seed .. seed + episodes - 1``,
whatever N: env i runs seeds ``seed + i, seed + i + N, ...`` (the vector env's schedule), and
figures are taken from the episodes with a seed in range; the few episodes an env starts past
the range while the others finish are discarded. So the same seed gives the same episodes for
any N (and the same figures, up to the policy's own sampling noise).

**Figures** (LeRobot's eval reports ``pc_success`` and ``avg_max_reward`` the same way):
``success_rate`` (an episode succeeds if any step reported success) with its 95% Wilson
interval, ``mean_score`` (the score at each episode's last step), ``mean_max_score`` (the mean of
each episode's maximum score — for Push-T also reported as ``mean_max_coverage``, Diffusion
Policy's ``test/mean_score``), ``mean_return``, ``mean_length``, and per-episode records.

**Videos** of the first ``videos`` episodes (seeds ``seed ..``) are rendered and encoded by the
env workers (:mod:`sim.eval_video`); without an offscreen GL backend they are skipped, the
reason logged once and reported as ``videos_skipped`` (None when nothing was skipped).

**During behaviour cloning** the trainer calls ``training_evaluator(task, config)``, the
evaluation its config's cadence asks for, which returns the scalar figures
(:func:`scalar_figures`) it logs and picks ``best`` by::

    Trainer(config, evaluate=training_evaluator("arm-push", config)).fit("runs/push")
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from robopolicy.config import did_you_mean
from robopolicy.errors import RobopolicyError
from robopolicy.policies.base import IMAGE_PREFIX, Policy
from sim.chunking import ActionChunkEnv, ChunkConfig
from sim.eval_video import RecordingTaskFactory
from sim.registry import make_task, task_spec
from sim.vector import TaskFactory, VectorEnv, VectorEnvConfig

if TYPE_CHECKING:
    from robopolicy.train.config import TrainConfig

log = logging.getLogger(__name__)
Z95 = 1.959963984540054
"""The standard normal quantile of 0.975."""
DEFAULT_NUM_ENVS = 8
_WARNED: set[str] = set()
"""Reasons for skipping videos already logged by this process (each is logged once)."""
EVAL_FIGURES = (
    "success_rate",
    "mean_score",
    "mean_max_score",
    "mean_max_coverage",
    "mean_return",
    "success_ci95_low",
)
"""The figures of :func:`training_evaluator` a ``best_metric`` may name (higher is better;
``mean_max_coverage`` on Push-T only)."""


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for the default ``z``)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def obs_sources(policy: Policy, task: str) -> dict[str, str]:
    """Policy observation key -> env observation key. Low-dim keys and ``image.<camera>`` keys
    are the env's own; another image key (Push-T data's ``img``) is the task's only camera."""
    sources = {key: key for key in policy.config.obs_keys}
    odd = [key for key in policy.config.image_keys if not key.startswith(IMAGE_PREFIX)]
    sources |= {key: key for key in policy.config.image_keys if key not in odd}
    if odd:
        env = make_task(task)
        cameras = tuple(getattr(env.unwrapped.task_meta, "cameras", ()))
        env.close()
        if len(cameras) != 1:
            raise RobopolicyError(
                f"policy image keys {odd} name no camera of {task!r} (cameras {cameras}); "
                "train on image.<camera> keys"
            )
        sources |= {key: IMAGE_PREFIX + cameras[0] for key in odd}
    return sources


class _EpisodeLog:
    """Wraps the vector env and records each finished episode from its per-step results."""

    def __init__(self, env: VectorEnv, wanted: range) -> None:
        self.env, self.wanted, self.num_envs = env, wanted, env.num_envs
        self.episodes: dict[int, dict[str, Any]] = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: Any, *, active: Any = None) -> Any:
        return self._record(self.env.step(actions, active=active))

    def step_sequence(self, actions: Any) -> list[Any]:
        return [self._record(result) for result in self.env.step_sequence(actions)]

    def _record(self, result: Any) -> Any:
        _, _, term, trunc, info = result
        ep = info["episode"]
        for i in np.flatnonzero(term | trunc):
            seed = int(ep["seed"][i])
            if seed in self.wanted and seed not in self.episodes:
                self.episodes[seed] = {
                    "seed": seed,
                    "success": bool(ep["success"][i]),
                    "score": float(info["score"][i]),
                    "max_score": float(ep["max_score"][i]),
                    "return": float(ep["return"][i]),
                    "length": int(ep["length"][i]),
                }
        return result

    def close(self) -> None:
        self.env.close()


def evaluate_policy(
    policy: Policy,
    task: str,
    *,
    episodes: int,
    seed: int = 0,
    num_envs: int | None = None,
    videos: int = 0,
    video_dir: str | Path | None = None,
    steps: int | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Roll ``policy`` out for ``episodes`` episodes of ``task`` (module docstring).

    Args:
        num_envs: parallel envs (default ``min(episodes, 8)``), stepped by worker processes.
        videos: mp4s of the first this many episodes, into ``video_dir``.
        steps: denoising steps per sample (the policy's default when None).
        task_kwargs: overrides for :func:`sim.registry.make_task` (cameras are added as the
            policy's image keys need).
    """
    if episodes < 1 or seed < 0 or videos < 0:
        raise RobopolicyError("need episodes >= 1, seed >= 0 and videos >= 0")
    started = time.perf_counter()
    cfg = policy.config
    sources = obs_sources(policy, task)
    kwargs = dict(task_kwargs or {})
    cameras = sorted(
        {s[len(IMAGE_PREFIX) :] for s in sources.values() if s.startswith(IMAGE_PREFIX)}
    )
    if cameras:
        kwargs["cameras"] = tuple(cameras)
        make_task(task, **kwargs).close()  # a camera that cannot render fails here, in one line
    n = min(num_envs or DEFAULT_NUM_ENVS, episodes)
    videos = min(videos, episodes)
    if videos and video_dir is None:
        raise RobopolicyError("videos need a video_dir")
    if videos:
        factory: Any = RecordingTaskFactory(
            task, kwargs, tuple(range(seed, seed + videos)), str(video_dir)
        )
    else:
        factory = TaskFactory(task, kwargs)
    vector = VectorEnv(
        factory, VectorEnvConfig(num_envs=n, seed=seed, in_process=n == 1 and not videos)
    )
    book = _EpisodeLog(vector, range(seed, seed + episodes))
    env = ActionChunkEnv(book, ChunkConfig(cfg.n_obs_steps, cfg.n_action_steps))
    first = cfg.n_obs_steps - 1
    bar = tqdm(total=episodes, desc=f"eval {task}", unit="ep", disable=not progress, leave=False)
    env_steps = 0
    report: tuple[list[str], str | None] = ([], None)
    policy.reset()
    was_training = policy.training
    policy.eval()  # e.g. centre crops instead of random ones
    try:
        obs, _ = env.reset(seed=seed)
        while len(book.episodes) < episodes:
            batch = {
                key: torch.from_numpy(np.ascontiguousarray(obs[src]))
                for key, src in sources.items()
            }
            with torch.no_grad():
                chunk = policy.sample(batch, steps=steps).cpu().numpy()
            result = env.step_chunk(chunk[:, first : first + cfg.n_action_steps])
            if result.done.any():
                policy.reset(result.done)  # those envs begin new episodes
            env_steps += int(result.n_steps.sum())
            obs = result.obs
            if len(book.episodes) > bar.n:
                done = list(book.episodes.values())
                bar.set_postfix(
                    success=f"{sum(e['success'] for e in done)}/{len(done)}", refresh=False
                )
                bar.update(len(done) - bar.n)
        if videos:
            reports = vector.call("video_report")
            written = sorted(p for paths, _ in reports for p in paths)
            errors = [e for _, e in reports if e]
            report = (written, errors[0] if errors else None)
    finally:
        policy.train(was_training)
        bar.close()
        env.close()
    if videos and report[1] and report[1] not in _WARNED:
        _WARNED.add(report[1])
        log.warning("videos skipped: %s", report[1])
    return _figures(task, [book.episodes[s] for s in range(seed, seed + episodes)], {
        "seed": seed,
        "num_envs": n,
        "env_steps": env_steps,
        "videos": report[0],
        "videos_skipped": report[1],
        "eval_s": round(time.perf_counter() - started, 3),
    })  # fmt: skip


def _figures(task: str, episodes: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    n = len(episodes)
    successes = sum(e["success"] for e in episodes)
    low, high = wilson_interval(successes, n)
    mean = lambda key: float(np.mean([e[key] for e in episodes]))  # noqa: E731
    figures: dict[str, Any] = {
        "task": task,
        "episodes": n,
        "successes": successes,
        "success_rate": successes / n,
        "success_rate_ci95": [low, high],
        "mean_score": mean("score"),
        "mean_max_score": mean("max_score"),
        "mean_return": mean("return"),
        "mean_length": mean("length"),
    }
    if task_spec(task).family == "pusht":
        figures["mean_max_coverage"] = figures["mean_max_score"]
    return {**figures, **extra, "per_episode": episodes}


def scalar_figures(figures: dict[str, Any]) -> dict[str, float]:
    """The numbers of an evaluation report (the interval as two entries)."""
    out = {k: float(v) for k, v in figures.items() if _number(v) and k not in ("seed", "num_envs")}
    low, high = figures["success_rate_ci95"]
    return out | {"success_ci95_low": low, "success_ci95_high": high}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def training_evaluator(
    task: str, config: TrainConfig, *, num_envs: int | None = None, **kwargs: Any
) -> Callable[[Policy], dict[str, float]]:
    """The trainer's ``evaluate(policy) -> figures`` on ``task``: ``eval_episodes`` rollouts from
    seed ``eval_seed`` in ``num_envs`` envs (None: ``eval_envs``), as ``config.cadence`` says;
    extra keyword arguments go to :func:`evaluate_policy`. A RobopolicyError when
    ``config.best_metric`` is none of :data:`EVAL_FIGURES`."""
    if config.best_metric not in EVAL_FIGURES:
        raise RobopolicyError(
            f"best_metric: evaluations report no {config.best_metric!r}"
            f"{did_you_mean(config.best_metric, EVAL_FIGURES)}"
        )
    cadence = config.cadence

    def evaluate(policy: Policy) -> dict[str, float]:
        figures = evaluate_policy(
            policy,
            task,
            episodes=cadence.eval_episodes,
            seed=cadence.eval_seed,
            num_envs=num_envs or cadence.eval_envs,
            **kwargs,
        )
        return scalar_figures(figures)

    return evaluate

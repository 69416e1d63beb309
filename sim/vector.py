"""N environments stepped as one batch, in worker processes or in this process.

Shapes (``docs/DESIGN.md`` terms, N environments, one step, no history axis — the chunk
wrapper in :mod:`sim.chunking` adds it):

- ``obs``: ``{key: (N, ...)}``, e.g. ``"state"`` ``(N, Ds)``, ``"timestamp"`` ``(N,)``;
- ``actions``: ``(N, Da)``; ``reward``, ``terminated``, ``truncated``: ``(N,)``;
- ``info["is_success"]`` ``(N,)`` bool and ``info["score"]`` ``(N,)`` float64, from this step.

**Autoreset (gymnasium's SAME_STEP).** When env i terminates or truncates on a step, it is
reset inside that same step: ``obs[i]`` is the first observation of its next episode, while
``reward[i]``, the flags, ``is_success[i]``, ``score[i]`` and ``info["env_infos"][i]`` belong to
the step that ended the old one. ``info["final_obs"]`` holds, for every env, the observation that
step reached before any reset (for envs that did not end it is ``obs`` itself — the same arrays),
which is what bootstrapping a truncated episode needs. The reset's own info is dropped.
``info["episode"]`` gives, per env, the running ``seed``, ``return``, ``length``, ``success`` (any
step) and ``max_score`` of the episode the step belonged to: for envs that ended, the totals of
the finished episode.

**Seeds.** Episode k of env i is reset with seed ``base + i + k * N``: with N envs, the first
N·K episodes use seeds base … base + N·K − 1 whatever N is, and an episode is replayed alone by
``make_task(name).reset(seed=s)``. ``reset(seed=b)`` restarts the schedule at k = 0 from base b;
``reset()`` without a seed moves every env on to its next scheduled episode.

**Partial steps.** ``step(actions, active=mask)`` steps only the envs where ``mask`` is true;
the others keep their observation and report reward 0, no flags and their previous
``is_success``/``score``. :mod:`sim.chunking` uses this to stop an env inside an action chunk.
``step_sequence(actions (N, T, ...))`` runs such a chunk — each env until its episode ends — in
one exchange with the workers and returns the T′ ≤ T per-step results that the loop of masked
``step`` calls would have returned (one wake-up per chunk instead of per step).

**Processes** (:mod:`sim.vector_workers`). Envs are split into contiguous groups, one per worker
process (``forkserver`` or ``spawn``). The env factory is pickled to the workers, so pass a
:class:`TaskFactory` (a task name and keyword arguments) or another module-level callable, and
guard a script's entry point with ``if __name__ == "__main__":``. ``step_async``/``step_wait``
let the caller compute while the workers step. A worker's exception is raised here as
:class:`VectorEnvError` with the env index and the worker's traceback, after which the vector env
is closed. Workers exit on ``close()``, at the end of a ``with`` block, when the object is
collected, at interpreter exit, and when this process dies, even by SIGKILL (each watches a pipe
whose only writer is this process). ``in_process=True`` runs the same code without workers.

gymnasium's ``AsyncVectorEnv`` is not used: it has no partial steps (needed to stop an env inside
a chunk), resets finished episodes without a seed schedule, raises a worker's error without its
traceback or index, runs exactly one env per process, and its workers outlive a killed parent.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sim.registry import make_task, task_spec
from sim.vector_workers import VectorEnvError, Workers

__all__ = ["TaskFactory", "VectorEnv", "VectorEnvConfig", "VectorEnvError", "make_vector_task"]

Obs = dict[str, np.ndarray]
StepResult = tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]
"""``(obs, reward, terminated, truncated, info)``, batched over the N envs."""


@dataclasses.dataclass(frozen=True)
class TaskFactory:
    """A picklable env factory: ``make_task(name, **kwargs)``, run inside the worker."""

    name: str
    """Registered task name (checked here, with a "did you mean", before any worker starts)."""
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Overrides passed to :func:`sim.registry.make_task`."""

    def __post_init__(self) -> None:
        task_spec(self.name)

    def __call__(self) -> Any:
        return make_task(self.name, **self.kwargs)


@dataclasses.dataclass
class VectorEnvConfig:
    """How many envs, how they are seeded and where they run."""

    num_envs: int = 1
    """N, the number of environments."""
    seed: int | None = 0
    """Base seed of the episode schedule (module docstring); None draws one at random."""
    in_process: bool | None = None
    """Step every env in this process, without workers; None: only when ``num_envs == 1``."""
    num_workers: int | None = None
    """Worker processes, each stepping a contiguous group of envs in turn; None:
    ``min(num_envs, os.cpu_count())``. More workers than cores only adds switching."""
    start_method: str = "forkserver"
    """``forkserver`` or ``spawn``. ``fork`` is refused: a forked worker inherits the parent's
    threads' locks and the other workers' pipe ends, which hides the parent's death."""
    timeout_s: float | None = None
    """Seconds to wait for a worker's reply before raising ``TimeoutError``; None: no limit."""

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed must be >= 0 or None, got {self.seed}")
        if self.num_workers is not None and not 1 <= self.num_workers <= self.num_envs:
            raise ValueError(f"num_workers must be in 1..num_envs, got {self.num_workers}")
        if self.start_method not in ("forkserver", "spawn"):
            raise ValueError(f"start_method must be forkserver or spawn, got {self.start_method!r}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive or None, got {self.timeout_s}")


class VectorEnv:
    """N envs with batched observations, SAME_STEP autoreset and a per-episode seed schedule."""

    def __init__(self, env_fn: Callable[[], Any], config: VectorEnvConfig | None = None) -> None:
        self.config = cfg = config or VectorEnvConfig()
        self.num_envs = n = cfg.num_envs
        in_process = cfg.in_process if cfg.in_process is not None else n == 1
        workers = 1 if in_process else cfg.num_workers or min(n, os.cpu_count() or 1)
        self._starts = [int(a[0]) for a in np.array_split(np.arange(n), workers)] + [n]
        self._workers = Workers(self._starts, in_process, cfg.start_method, cfg.timeout_s)
        self._pending: list[int] | None = None
        for w in range(workers):
            self._send(w, "open", (env_fn,))
        hello = self._workers.recv_all(range(workers))[0]
        self.single_observation_space = hello["observation_space"]
        self.single_action_space = hello["action_space"]
        self.task_meta = hello["task_meta"]
        seed = cfg.seed if cfg.seed is not None else np.random.default_rng().integers(2**31)
        self._base, self._episode = int(seed), np.zeros(n, dtype=np.int64)
        self._obs: Obs = {}
        self._active = np.ones(n, bool)
        self._last_success, self._last_score = np.zeros(n, bool), np.zeros(n)
        self._return, self._length = np.zeros(n), np.zeros(n, np.int64)
        self._success, self._max_score = np.zeros(n, bool), np.zeros(n)

    # -- the batched API ---------------------------------------------------------------------

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers (empty in process)."""
        return self._workers.pids

    @property
    def episode_seeds(self) -> np.ndarray:
        """``(N,)`` seed of the episode each env is in now."""
        return self._seed(self._episode)

    def _seed(self, episode: np.ndarray) -> np.ndarray:
        return self._base + np.arange(self.num_envs) + episode * self.num_envs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        """Start an episode in every env (see "Seeds"); returns ``(obs, info)``."""
        self._check_idle()
        if seed is not None:
            if seed < 0:
                raise ValueError(f"seed must be >= 0, got {seed}")
            self._base, self._episode[:] = int(seed), 0
        elif self._obs:
            self._episode += 1
        seeds = self.episode_seeds
        workers = range(len(self._starts) - 1)
        for w in workers:
            self._send(w, "reset", (seeds[self._starts[w] : self._starts[w + 1]], options))
        parts = self._recv_all(workers)
        self._obs = {k: np.concatenate([p["obs"][k] for p in parts]) for k in parts[0]["obs"]}
        self._new_stats(slice(None))
        self._last_success[:], self._last_score[:] = False, 0.0
        infos = tuple(info for p in parts for info in p["infos"])
        return _copy(self._obs), {"seed": seeds, "env_infos": infos}

    def step(self, actions: Any, *, active: Any = None) -> StepResult:
        """One step of every env (of the ``active`` ones when given); see the module docstring."""
        self.step_async(actions, active=active)
        return self.step_wait()

    def step_async(self, actions: Any, *, active: Any = None) -> None:
        """Send ``actions`` ``(N, ...)`` (and the ``(N,)`` bool mask ``active``); return at once."""
        active = np.ones(self.num_envs, bool) if active is None else np.asarray(active, bool)
        self._dispatch("step", np.asarray(actions), active)

    def step_wait(self) -> StepResult:
        """Collect the step sent by :meth:`step_async`: ``(obs, reward, terminated, truncated,
        info)``."""
        if self._pending is None:
            raise RuntimeError("step_wait() without step_async()")
        pending, self._pending = self._pending, None
        parts = list(zip(pending, self._recv_all(pending), strict=True))
        return self._assemble(parts, self._active)

    def step_sequence(self, actions: Any) -> list[StepResult]:
        """Step env i through ``actions[i, j]``, j = 0, 1, …, until its episode ends, in one
        exchange with each worker. Returns what these calls would have, with one result per step
        until every env has stopped::

            running = all True
            for j in range(T): step(actions[:, j], active=running); running &= ~(term | trunc)
        """
        actions = np.asarray(actions)
        if actions.ndim < 2 or actions.shape[1] < 1:
            raise ValueError(f"actions must be (N, T>=1, ...), got {actions.shape}")
        self._dispatch("run", actions, np.ones(self.num_envs, bool))
        pending, self._pending = self._pending, None
        replies = self._recv_all(pending)
        results = []
        for j in range(max(len(steps) for steps in replies)):
            parts = [
                (w, steps[j]) for w, steps in zip(pending, replies, strict=True) if len(steps) > j
            ]
            active = np.zeros(self.num_envs, bool)
            for w, part in parts:
                active[part["rows"] + self._starts[w]] = True
            results.append(self._assemble(parts, active))
        return results

    def _dispatch(self, command: str, actions: np.ndarray, active: np.ndarray) -> None:
        self._check_idle()
        if not self._obs:
            raise RuntimeError("call reset() before stepping")
        n = self.num_envs
        if actions.shape[:1] != (n,) or active.shape != (n,):
            raise ValueError(
                f"actions must be (N={n}, ...) and active (N,), got {actions.shape}, {active.shape}"
            )
        next_seeds = self._seed(self._episode + 1)
        self._pending, self._active = [], active
        for w, (a, b) in enumerate(itertools.pairwise(self._starts)):
            if active[a:b].any():
                self._send(w, command, (actions[a:b], active[a:b], next_seeds[a:b]))
                self._pending.append(w)

    def _assemble(self, parts: list[tuple[int, dict]], act: np.ndarray) -> StepResult:
        """Batch the workers' replies to one step (of the envs ``act``); update episode stats."""
        n = self.num_envs
        obs = _copy(self._obs)
        reward, term, trunc = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        infos: list[dict] = [{} for _ in range(n)]
        final: dict[int, Obs] = {}
        for w, part in parts:
            start = self._starts[w]
            rows = part["rows"] + start
            for k in obs:
                obs[k][rows] = part["obs"][k]
            reward[rows], term[rows] = part["reward"], part["terminated"]
            trunc[rows] = part["truncated"]
            self._last_success[rows], self._last_score[rows] = part["is_success"], part["score"]
            for row, info in zip(rows, part["infos"], strict=True):
                infos[row] = info
            final.update({row + start: o for row, o in part["final"].items()})
        final_obs = obs
        if final:
            final_obs = _copy(obs)
            for i, o in final.items():
                for k in final_obs:
                    final_obs[k][i] = o[k]
        self._return[act] += reward[act]
        self._length[act] += 1
        self._success[act] |= self._last_success[act]
        self._max_score[act] = np.maximum(self._max_score[act], self._last_score[act])
        episode = {"seed": self.episode_seeds, "return": self._return.copy()}
        episode |= {"length": self._length.copy(), "success": self._success.copy()}
        episode["max_score"] = self._max_score.copy()
        done = term | trunc
        self._episode[done] += 1
        self._new_stats(done)
        self._obs = _copy(obs)  # kept for the rows of inactive envs, safe from the caller
        info = {"is_success": self._last_success.copy(), "score": self._last_score.copy()}
        info |= {"final_obs": final_obs, "episode": episode, "env_infos": tuple(infos)}
        return obs, reward, term, trunc, info

    def call(self, name: str, *args: Any, indices: Sequence[int] | None = None, **kwargs: Any):
        """``[env.name(*args, **kwargs) for each env in indices]`` (or the attribute's value)."""
        self._check_idle()
        wanted = list(range(self.num_envs)) if indices is None else [int(i) for i in indices]
        owner = np.searchsorted(self._starts, wanted, side="right") - 1
        workers = sorted({int(w) for w in owner})
        for w in workers:
            rows = [i - self._starts[w] for i, o in zip(wanted, owner, strict=True) if o == w]
            self._send(w, "call", (name, args, kwargs, rows))
        results = {i: r for part in self._recv_all(workers) for i, r in part.items()}
        return [results[i] for i in wanted]

    def close(self) -> None:
        """Stop every worker (idempotent); a step in flight is abandoned."""
        self._workers.close()

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _new_stats(self, mask: Any) -> None:
        self._return[mask], self._length[mask] = 0.0, 0
        self._success[mask], self._max_score[mask] = False, -np.inf

    def _check_idle(self) -> None:
        if self._workers.closed:
            raise RuntimeError("the vector env is closed")
        if self._pending is not None:
            raise RuntimeError("a step is in flight: call step_wait() first")

    def _send(self, w: int, command: str, args: Any) -> None:
        self._workers.send(w, command, args)

    def _recv_all(self, workers: Sequence[int]) -> list[Any]:
        return self._workers.recv_all(workers)


def _copy(obs: Obs) -> Obs:
    return {k: v.copy() for k, v in obs.items()}


def make_vector_task(
    name: str, num_envs: int = 1, seed: int | None = 0, **config: Any
) -> VectorEnv:
    """``VectorEnv`` of task ``name``; ``config`` fills :class:`VectorEnvConfig` (a
    ``task_kwargs`` dict, if given, goes to :func:`sim.registry.make_task`)."""
    factory = TaskFactory(name, config.pop("task_kwargs", {}))
    return VectorEnv(factory, VectorEnvConfig(num_envs=num_envs, seed=seed, **config))

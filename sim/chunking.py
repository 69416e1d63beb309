"""Action chunks over a batched env: execute Ta actions of a Tp chunk, keep To observations.

Symbols (``docs/DESIGN.md``): N envs, To = ``n_obs_steps``, Ta = ``n_action_steps``, and
n = min(T, Ta) for a chunk of T actions (T = Tp when it comes straight from a policy).

    reset()                      -> obs {key: (N, To, ...)}, info
    step_chunk(actions (N, T, Da)) -> ChunkStep:
        obs        {key: (N, To, ...)}  "state" (N, To, Ds), "timestamp" (N, To),
                                        "image.<camera>" (N, To, H, W, 3)
        final_obs  {key: (N, To, ...)}  history before any reset (== obs where no episode ended)
        reward     (N,)    sum of the rewards of the executed steps (undiscounted)
        terminated, truncated, done (N,)  the env's episode ended inside this chunk
        is_success (N,)    any executed step reported success;  score (N,): their maximum score
        rewards    (N, n)  per-step rewards, 0 where not executed
        dones      (N, n)  True at the step that ended the episode, else False
        executed   (N, n)  which steps ran;  n_steps (N,) = executed.sum(1) ≥ 1
        episode    {"seed", "return", "length", "success", "max_score": (N,)} after each env's
                   last executed step: for envs that ended, the finished episode's totals

How execution, autoreset and history interact:

1. ``reset()`` resets every env and fills its history with its first observation repeated To
   times (Diffusion Policy's padding), timestamps included.
2. Step j = 0 … n−1 of a chunk is one batched step of the underlying env with ``actions[:, j]``,
   for the envs still running in this chunk (``step(..., active=running)``): each of those
   histories drops its oldest entry and appends the new observation.
3. An env whose episode ends on step j (terminated or truncated) stops for the rest of the chunk:
   actions j+1 … n−1 are never executed (``executed[i, j+1:]`` False, their rewards 0). The
   underlying env has already reset it (SAME_STEP autoreset, :mod:`sim.vector`), so its history
   becomes the new episode's first observation repeated To times and its next chunk starts that
   episode; ``final_obs[i]`` keeps the ended history (the final observation appended), which is
   what bootstrapping the value of a truncated episode needs.
4. The chunk ends after n steps, or as soon as every env has stopped.

For GAE over environment steps, ``rewards``/``dones``/``executed`` give the per-step view; for
RL over chunks (one decision per chunk), ``reward`` and ``done`` the per-chunk one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

Obs = dict[str, np.ndarray]


class BatchedEnv(Protocol):
    """What :class:`ActionChunkEnv` needs: :class:`sim.vector.VectorEnv`'s API (``step`` takes an
    ``active`` mask; its info has ``is_success``, ``score``, ``final_obs`` and ``episode``). A
    ``step_sequence`` method, when present, is used instead of one ``step`` per chunk step."""

    num_envs: int

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        """Reset every env."""

    def step(self, actions: Any, *, active: Any = None) -> tuple[Obs, Any, Any, Any, dict]:
        """Step the active envs, with SAME_STEP autoreset."""

    def close(self) -> None:
        """Release the envs."""


@dataclasses.dataclass
class ChunkConfig:
    """Observation history and chunk execution lengths."""

    n_obs_steps: int = 2
    """To: observations per env given to the policy, oldest first."""
    n_action_steps: int = 8
    """Ta: actions executed from each chunk (the rest of a Tp-long chunk is dropped)."""

    def __post_init__(self) -> None:
        if self.n_obs_steps < 1:
            raise ValueError(f"n_obs_steps (To) must be >= 1, got {self.n_obs_steps}")
        if self.n_action_steps < 1:
            raise ValueError(f"n_action_steps (Ta) must be >= 1, got {self.n_action_steps}")


@dataclasses.dataclass
class ChunkStep:
    """The outcome of one chunk (shapes in the module docstring)."""

    obs: Obs
    final_obs: Obs
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    is_success: np.ndarray
    score: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    executed: np.ndarray
    episode: dict[str, np.ndarray]

    @property
    def done(self) -> np.ndarray:
        """``(N,)`` the episode ended inside this chunk."""
        return self.terminated | self.truncated

    @property
    def n_steps(self) -> np.ndarray:
        """``(N,)`` environment steps executed per env."""
        return self.executed.sum(axis=1)


class ActionChunkEnv:
    """Wraps a batched env: To-step observation histories in, action chunks out."""

    def __init__(self, env: BatchedEnv, config: ChunkConfig | None = None) -> None:
        self.env = env
        self.config = config or ChunkConfig()
        self.num_envs = env.num_envs
        self._hist: Obs = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Obs, dict]:
        """Reset every env; each history is its first observation repeated To times."""
        obs, info = self.env.reset(seed=seed, options=options)
        to = self.config.n_obs_steps
        self._hist = {k: np.repeat(v[:, None], to, axis=1) for k, v in obs.items()}
        return self._copy(self._hist), info

    def step_chunk(self, actions: Any) -> ChunkStep:
        """Execute the first min(T, Ta) of ``actions`` ``(N, T, ...)`` (module docstring)."""
        if not self._hist:
            raise RuntimeError("call reset() before step_chunk()")
        actions = np.asarray(actions)
        n_envs = self.num_envs
        if actions.ndim < 2 or actions.shape[0] != n_envs or actions.shape[1] < 1:
            raise ValueError(f"actions must be (N={n_envs}, T>=1, ...), got {actions.shape}")
        n = min(actions.shape[1], self.config.n_action_steps)
        running = np.ones(n_envs, dtype=bool)
        rewards, dones = np.zeros((n_envs, n)), np.zeros((n_envs, n), dtype=bool)
        executed = np.zeros((n_envs, n), dtype=bool)
        terminated, truncated = np.zeros(n_envs, dtype=bool), np.zeros(n_envs, dtype=bool)
        success, score = np.zeros(n_envs, dtype=bool), np.full(n_envs, -np.inf)
        episode: dict[str, np.ndarray] = {}
        final: dict[int, Obs] = {}
        sequence = getattr(self.env, "step_sequence", None)
        steps = iter(sequence(actions[:, :n])) if sequence is not None else None
        for j in range(n):
            act = running.copy()
            if steps is not None:  # the same results, computed in one exchange with the workers
                obs, reward, term, trunc, info = next(steps)
            else:
                obs, reward, term, trunc, info = self.env.step(actions[:, j], active=act)
            executed[act, j] = True
            rewards[act, j] = reward[act]
            success[act] |= info["is_success"][act]
            score[act] = np.maximum(score[act], info["score"][act])
            for key, value in info.get("episode", {}).items():
                episode.setdefault(key, np.array(value, copy=True))[act] = value[act]
            ended = act & (term | trunc)
            dones[ended, j] = True
            terminated[ended], truncated[ended] = term[ended], trunc[ended]
            self._push(info["final_obs"], act)
            for i in np.flatnonzero(ended):
                final[int(i)] = {k: h[i].copy() for k, h in self._hist.items()}
                for k, h in self._hist.items():
                    h[i] = obs[k][i]  # the new episode's first observation, To times
            running &= ~ended
            if not running.any():
                break
        out = self._copy(self._hist)
        final_obs = out
        if final:
            final_obs = self._copy(out)
            for i, hist in final.items():
                for k, h in hist.items():
                    final_obs[k][i] = h
        return ChunkStep(
            obs=out,
            final_obs=final_obs,
            reward=rewards.sum(axis=1),
            terminated=terminated,
            truncated=truncated,
            is_success=success,
            score=score,
            rewards=rewards,
            dones=dones,
            executed=executed,
            episode=episode,
        )

    def _push(self, obs: Obs, rows: np.ndarray) -> None:
        """Shift the histories of ``rows`` by one step, appending ``obs``."""
        for k, h in self._hist.items():
            h[rows, :-1] = h[rows, 1:]
            h[rows, -1] = obs[k][rows]

    @staticmethod
    def _copy(obs: Obs) -> Obs:
        return {k: v.copy() for k, v in obs.items()}

    def close(self) -> None:
        """Close the underlying env."""
        self.env.close()

    def __enter__(self) -> ActionChunkEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

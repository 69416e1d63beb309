"""The rollout interface between RL algorithms and whatever steps the environments.

An algorithm sees environments only through a :class:`RolloutCollector` (and, for evaluation, an
:class:`Evaluator`) that a :class:`RolloutFactory` makes. ``robopolicy`` never imports
``sim``: the MuJoCo-backed implementation is :mod:`sim.rollout`; collecting on several machines
later means another factory whose collectors return the same :class:`RolloutBatch` (batches of
different workers join along the env axis with :func:`concat_envs`), and no algorithm changes.

Symbols (``docs/DESIGN.md``): N envs, T decisions per env in one batch, To observation
steps, Ta executed steps per decision, n <= Ta env steps recorded per decision, Da action size.
A *decision* is one call of the policy for every env: it returns a chunk, of which the first
min(len, Ta) actions run, one environment step each, unless the episode ends first.

The act function (``ActFn``) is the algorithm's policy at collection time::

    act_fn(obs {key: (N, To, ...)} raw) -> Act(actions (N, Ta, Da) raw, extras {name: (N, ...)})

``extras`` are whatever the algorithm needs again at update time, kept per decision: a Gaussian
policy's log-probability, DPPO's denoising chain, DSRL's latent noise. The collector stacks them
along a new leading T axis without looking at them.

Autoreset: an env whose episode ends inside decision t is reset at once; ``obs[t + 1]`` is then
the new episode's first observation (repeated To times) and the ended history is kept in
``final_obs`` when the end was a truncation (a time limit), for bootstrapping its value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

Obs = dict[str, Tensor]


class Act(NamedTuple):
    """What an act function returns for one decision of N envs."""

    actions: Tensor
    """(N, Ta, Da) actions to execute, raw units (a longer chunk runs only its first Ta)."""
    extras: dict[str, Tensor]
    """{name: (N, ...)} per-decision data the algorithm keeps (log-probs, chains, noise)."""


ActFn = Callable[[Obs], Act]
"""The policy at collection or evaluation time; see the module docstring."""


@dataclasses.dataclass(frozen=True)
class RolloutSpec:
    """What the environments look like, known before any step."""

    obs_shapes: dict[str, tuple[int, ...]]
    """Per-frame shape of each observation key (no N or To axis), e.g. ``{"state": (11,)}``."""
    action_shape: tuple[int, ...]
    """Shape of one action, ``(Da,)``."""
    action_low: tuple[float, ...] | None
    """Lower bound of each action dimension (raw units), None when unbounded."""
    action_high: tuple[float, ...] | None
    """Upper bound of each action dimension (raw units), None when unbounded."""
    fps: float
    """Environment steps per second of simulated time."""


@dataclasses.dataclass
class RolloutBatch:
    """T decisions of N envs, with every environment step they executed.

    Per decision (leading axes ``(T, N)``):

    - ``obs``: ``{key: (T, N, To, ...)}`` the observation the policy acted on, raw units
      (``state`` float32, ``timestamp`` float64, ``image.<camera>`` uint8);
    - ``actions``: ``(T, N, Ta, Da)`` what the act function returned, raw units;
    - ``extras``: ``{name: (T, N, ...)}`` the act function's extras, stacked;
    - ``terminated`` / ``truncated``: ``(T, N)`` bool, the episode ended inside this decision by
      termination (no bootstrap: the value beyond is 0) or by truncation (bootstrap from
      ``final_obs``); at most one of them is set.

    Per environment step inside each decision (``(T, N, n)``, n = the longest chunk executed):

    - ``rewards``: float32, 0 where not executed;
    - ``dones``: bool, True at the step that ended the episode;
    - ``executed``: bool, which steps ran: a prefix of each decision, at least one step.

    For bootstrapping:

    - ``next_obs``: ``{key: (N, To, ...)}`` the observation after decision T - 1 (where the next
      batch starts);
    - ``final_obs``: ``{key: (M, To, ...)}`` the history at the end of each truncated episode,
      M = ``truncated.sum()``, in the row-major order of ``truncated.nonzero()`` (so
      ``values[truncated] = V(final_obs)`` puts each in its place).

    ``episodes``: ``{"return", "length", "success", "score", "seed": (E,)}`` for the E episodes
    that ended in this batch (return undiscounted, raw rewards; score = the episode's maximum).
    """

    obs: Obs
    actions: Tensor
    extras: dict[str, Tensor]
    rewards: Tensor
    dones: Tensor
    executed: Tensor
    terminated: Tensor
    truncated: Tensor
    next_obs: Obs
    final_obs: Obs
    episodes: dict[str, Tensor]

    @property
    def num_decisions(self) -> int:
        """T."""
        return int(self.actions.shape[0])

    @property
    def num_envs(self) -> int:
        """N."""
        return int(self.actions.shape[1])

    @property
    def env_steps(self) -> int:
        """Environment steps executed in this batch (``executed.sum()``)."""
        return int(self.executed.sum())

    def to(self, device: torch.device | str) -> RolloutBatch:
        """The same batch with every tensor on ``device``."""

        def move(value: Tensor | Mapping[str, Tensor]) -> Tensor | dict[str, Tensor]:
            if isinstance(value, Tensor):
                return value.to(device)
            return {k: v.to(device) for k, v in value.items()}

        fields = {f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return RolloutBatch(**fields)


def concat_envs(batches: Sequence[RolloutBatch]) -> RolloutBatch:
    """Join batches of the same T collected on different env groups along the N axis."""
    if not batches:
        raise ValueError("concat_envs needs at least one batch")
    if len({b.num_decisions for b in batches}) != 1:
        raise ValueError(f"batches differ in T: {[b.num_decisions for b in batches]}")
    steps = max(b.rewards.shape[2] for b in batches)

    def pad(x: Tensor) -> Tensor:  # (T, N, n) -> (T, N, steps), zeros/False past n
        return torch.nn.functional.pad(x, (0, steps - x.shape[2]))

    def join(dicts: Sequence[Mapping[str, Tensor]], dim: int) -> dict[str, Tensor]:
        return {k: torch.cat([d[k] for d in dicts], dim=dim) for k in dicts[0]}

    # final_obs follows truncated.nonzero() order: rows by t, then by env, across the groups
    order = torch.cat([b.truncated.nonzero() for b in batches])
    offsets = torch.tensor([0, *[b.num_envs for b in batches]]).cumsum(0)
    group = torch.cat([torch.full((int(b.truncated.sum()),), i) for i, b in enumerate(batches)])
    global_env = order[:, 1] + offsets[group]
    rank = (order[:, 0] * int(offsets[-1]) + global_env).argsort()
    final = join([b.final_obs for b in batches], 0)
    return RolloutBatch(
        obs=join([b.obs for b in batches], 1),
        actions=torch.cat([b.actions for b in batches], 1),
        extras=join([b.extras for b in batches], 1),
        rewards=torch.cat([pad(b.rewards) for b in batches], 1),
        dones=torch.cat([pad(b.dones) for b in batches], 1),
        executed=torch.cat([pad(b.executed) for b in batches], 1),
        terminated=torch.cat([b.terminated for b in batches], 1),
        truncated=torch.cat([b.truncated for b in batches], 1),
        next_obs=join([b.next_obs for b in batches], 0),
        final_obs={k: v[rank] for k, v in final.items()},
        episodes=join([b.episodes for b in batches], 0),
    )


def executed_slice(policy: Any) -> slice:
    """The actions of a policy's chunk (Tp) that run: ``[To - 1, To - 1 + Ta)``."""
    c = policy.config
    return slice(c.n_obs_steps - 1, c.n_obs_steps - 1 + c.n_action_steps)


class RolloutCollector(Protocol):
    """N environments stepped in action chunks, continuing across :meth:`collect` calls."""

    num_envs: int
    spec: RolloutSpec

    def reset(self, seed: int) -> None:
        """Start a fresh episode in every env; env i's episodes use seeds from ``seed + i``."""

    def collect(self, act_fn: ActFn, n_decisions: int) -> RolloutBatch:
        """Run ``n_decisions`` decisions in every env, from where the last call stopped (the
        first call resets with seed 0 unless :meth:`reset` came first)."""

    def close(self) -> None:
        """Release the environments (idempotent)."""


class Evaluator(Protocol):
    """Runs the same fixed-seed episodes on every call (held-out seeds, not the training ones)."""

    def __call__(self, act_fn: ActFn) -> dict[str, float]:
        """Figures of one evaluation: ``return`` (mean undiscounted episode return),
        ``return_std``, ``success_rate``, ``score`` (mean of each episode's maximum score),
        ``length`` (mean episode length) and ``episodes``."""

    def close(self) -> None:
        """Release the environments (idempotent)."""


class RolloutFactory(Protocol):
    """Makes collectors and evaluators for one task; an algorithm receives one of these."""

    task: str

    def collector(
        self, *, num_envs: int, n_obs_steps: int, n_action_steps: int, seed: int
    ) -> RolloutCollector:
        """A collector of ``num_envs`` envs with To = ``n_obs_steps``, Ta = ``n_action_steps``."""

    def evaluator(
        self, *, episodes: int, n_obs_steps: int, n_action_steps: int, seed: int, num_envs: int
    ) -> Evaluator:
        """An evaluator over the episodes of seeds ``seed .. seed + episodes - 1``."""

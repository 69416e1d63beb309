"""The math every on-policy algorithm shares: GAE over environment steps, reward scaling, stats.

Shapes: T decisions, N envs, n env steps recorded per decision (:class:`RolloutBatch`).

**Discounting with action chunks.** A decision t runs n_t <= Ta environment steps with rewards
r_{t,0} … r_{t,n_t-1}; values exist only at decision boundaries, V_t = V(obs_t). γ and λ apply
per *environment step*, as if every step were a decision whose intermediate values are unknown:

    R_t = Σ_j γ^j r_{t,j}                          discounted reward of the chunk
    δ_t = R_t + γ^{n_t} V'_t − V_t                 V'_t: value after the chunk (below)
    A_t = δ_t + (γλ)^{n_t} · c_t · A_{t+1}         c_t = 0 if the episode ended in decision t

which is the λ-return G_t = R_t + γ^{n_t} [(1 − λ^{n_t}) V'_t + λ^{n_t} G_{t+1}]: per-step GAE with
the weight of each k-step return that would end inside a chunk moved to the chunk's end. With
Ta = 1 it is exactly the usual GAE (cleanrl). V'_t is V_{t+1} while the episode goes on,
V(final_obs) after a truncation (time limit), 0 after a termination, and V(next_obs) after the
last decision of the batch. (DPPO instead discounts once per decision, γ^1 on the summed chunk
reward, :func:`per_decision`; its γ = 0.99 with Ta = 4 is our γ ≈ 0.9975 per step.)

**Reward scaling** (cleanrl's ``NormalizeReward``, DPPO's ``RunningRewardScaler``): rewards are
divided by the running standard deviation of the discounted return Σ γ^k r, per env, reset at
episode ends, then clipped. The mean is not subtracted (that would change the optimal policy
with episodes of varying length).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from robopolicy.data.normalize import Normalizer
from robopolicy.rl.rollout import Obs, RolloutBatch


def discounted_chunk_rewards(rewards: Tensor, executed: Tensor, gamma: float) -> Tensor:
    """(T, N) Σ_j γ^j r_{t,j} over the executed steps of each decision; rewards (T, N, n)."""
    powers = gamma ** torch.arange(rewards.shape[-1], dtype=rewards.dtype, device=rewards.device)
    return (rewards * executed * powers).sum(-1)


def bootstrap_values(
    values: Tensor,
    last_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    final_values: Tensor,
) -> Tensor:
    """(T, N) V'_t, the value after each decision (module docstring).

    Args:
        values: (T, N) V(obs_t).
        last_values: (N,) V(next_obs), after the batch's last decision.
        terminated, truncated: (T, N) bool, how an episode ended inside decision t.
        final_values: (M,) V(final_obs) of the truncated decisions, in ``truncated.nonzero()``
            order.
    """
    after = torch.cat([values[1:], last_values[None]], 0)
    after = torch.where(terminated, torch.zeros_like(after), after)
    after = after.clone()
    after[truncated] = final_values.to(after.dtype)
    return after


def gae(
    rewards: Tensor,
    executed: Tensor,
    values: Tensor,
    next_values: Tensor,
    ended: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Advantages and λ-returns per decision, over environment steps (module docstring).

    Args:
        rewards: (T, N, n) per-step rewards, 0 where not executed.
        executed: (T, N, n) bool, which steps ran (a prefix of each decision).
        values: (T, N) V(obs_t).
        next_values: (T, N) V'_t from :func:`bootstrap_values`.
        ended: (T, N) bool, the episode ended inside decision t (terminated or truncated).
        gamma, lam: discount and GAE λ, per environment step.

    Returns:
        ``(advantages, returns)``, each (T, N); ``returns = advantages + values``.
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got {gamma}, {lam}")
    steps = executed.sum(-1).to(values.dtype)
    chunk = discounted_chunk_rewards(rewards, executed, gamma).to(values.dtype)
    delta = chunk + gamma**steps * next_values - values
    carry = (gamma * lam) ** steps * (~ended).to(values.dtype)
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(values[0])
    for t in reversed(range(values.shape[0])):
        last = delta[t] + carry[t] * last
        advantages[t] = last
    return advantages, advantages + values


def batch_advantages(
    batch: RolloutBatch,
    values_of: Callable[[Obs], Tensor],
    *,
    gamma: float,
    lam: float,
    scaler: RewardScaler | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(T·N,) advantages, λ-returns and values of a batch, flattened decision-major.

    Args:
        batch: the rollouts.
        values_of: V over a leading axis of observations, ``{key: (B, To, ...)} -> (B,)``.
        gamma, lam: per environment step.
        scaler: divides the rewards by its running std of the discounted return (and updates
            it) when given.
    """
    rewards = batch.rewards
    if scaler is not None:
        scaled = scaler(rewards.cpu(), batch.executed.cpu(), batch.dones.cpu())
        rewards = scaled.to(rewards.device)
    t, n = batch.num_decisions, batch.num_envs
    values = values_of({k: v.flatten(0, 1) for k, v in batch.obs.items()}).view(t, n)
    last = values_of(batch.next_obs)
    final = values_of(batch.final_obs) if batch.truncated.any() else last[:0]
    after = bootstrap_values(values, last, batch.terminated, batch.truncated, final)
    ended = batch.terminated | batch.truncated
    advantages, returns = gae(rewards, batch.executed, values, after, ended, gamma, lam)
    return advantages.flatten(), returns.flatten(), values.flatten()


def per_decision(batch: RolloutBatch) -> RolloutBatch:
    """``batch`` with each chunk one step: its rewards summed undiscounted (DPPO's MDP)."""
    return dataclasses.replace(
        batch,
        rewards=(batch.rewards * batch.executed).sum(-1, keepdim=True),
        executed=torch.ones_like(batch.executed[..., :1]),
        dones=batch.dones.any(-1, keepdim=True),
    )


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / (std + eps)`` over all elements (advantage normalization)."""
    if x.numel() < 2:
        return x - x.mean()
    return (x - x.mean()) / (x.std() + eps)


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """1 − Var[target − predicted] / Var[target]; NaN when the target is constant."""
    var = target.var(unbiased=False)
    if var == 0:
        return float("nan")
    return float(1 - (target - predicted).var(unbiased=False) / var)


class RunningMeanStd:
    """Mean, variance, min and max of a stream of (B, *shape) batches (parallel-variance
    merging; the prior is mean 0, variance 1 with weight ``count``)."""

    def __init__(self, shape: tuple[int, ...] = (), *, count: float = 1e-4) -> None:
        self.mean = torch.zeros(shape, dtype=torch.float64)
        self.var = torch.ones(shape, dtype=torch.float64)
        self.min = torch.full(shape, torch.inf, dtype=torch.float64)
        self.max = torch.full(shape, -torch.inf, dtype=torch.float64)
        self.count = float(count)

    def update(self, x: Tensor) -> None:
        """Fold in a (B, *shape) batch."""
        x = x.detach().to(torch.float64).reshape(-1, *self.mean.shape)
        if x.shape[0] == 0:
            return
        mean, var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        self.min, self.max = (
            torch.minimum(self.min, x.min(0).values),
            torch.maximum(self.max, x.max(0).values),
        )
        delta, total = mean - self.mean, self.count + n
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> Tensor:
        return self.var.sqrt()

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "mean": self.mean,
            "var": self.var,
            "min": self.min,
            "max": self.max,
            "count": torch.tensor(self.count, dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.mean, self.var = state["mean"].clone(), state["var"].clone()
        self.min, self.max = state["min"].clone(), state["max"].clone()
        self.count = float(state["count"])


class RewardScaler:
    """Divides rewards by the running std of the per-env discounted return (module docstring)."""

    def __init__(self, num_envs: int, gamma: float, *, clip: float = 10.0, eps: float = 1e-8):
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.returns = torch.zeros(num_envs, dtype=torch.float64)
        self.stats = RunningMeanStd()

    def __call__(self, rewards: Tensor, executed: Tensor, dones: Tensor) -> Tensor:
        """Scaled (T, N, n) rewards; updates the statistics with this batch's returns first.

        Args:
            rewards, executed, dones: (T, N, n), as in :class:`RolloutBatch`.
        """
        t, n_envs, n = rewards.shape
        flat = lambda x: x.transpose(0, 1).reshape(n_envs, t * n)  # noqa: E731  (env, step)
        r, ran, done = flat(rewards).double(), flat(executed), flat(dones)
        seen = torch.zeros_like(r)
        ret = self.returns
        for k in range(t * n):
            stepped = ran[:, k]
            ret = torch.where(stepped, r[:, k] + self.gamma * ret, ret)
            seen[:, k] = ret
            ret = torch.where(stepped & done[:, k], torch.zeros_like(ret), ret)
        self.returns = ret
        self.stats.update(seen[ran])
        return self.scale(rewards)

    def scale(self, rewards: Tensor) -> Tensor:
        """``rewards / sqrt(var + eps)``, clipped to ±clip (no statistics update)."""
        scale = float((self.stats.var + self.eps).sqrt())
        return (rewards / scale).clamp(-self.clip, self.clip).to(rewards.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "returns": self.returns,
            **{f"stats.{k}": v for k, v in self.stats.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.returns = state["returns"].clone().double()
        self.stats.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("stats.")})


def with_running_stats(normalizer: Normalizer, stats: Mapping[str, RunningMeanStd]) -> Normalizer:
    """A copy of ``normalizer`` whose keys in ``stats`` take the running statistics (the other
    keys, e.g. ``action``, keep theirs)."""
    modes = normalizer.modes
    new = {k: normalizer.stats(k) for k, mode in modes.items() if mode != "identity"}
    for key, s in stats.items():
        new[key] = {"mean": s.mean, "std": s.std, "min": s.min, "max": s.max}
    cpu = {k: {name: v.float().cpu() for name, v in d.items()} for k, d in new.items()}
    return Normalizer(modes, cpu, eps=normalizer.eps)

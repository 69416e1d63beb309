"""The critic every on-policy algorithm shares: an MLP on the policy's normalized To-step obs.

    value(obs {key: (B, To, ...)} raw units, normalizer) -> (B,)

Each low-dimensional key of ``obs_keys`` is normalized with the *policy's* normalizer (so the
critic sees what the actor sees, and follows it when the normalizer's statistics are updated),
flattened over To and concatenated. Image observations are not supported here.

:class:`Critic` is that network with the run's reward statistics, as PPO, DPPO and FPO use it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from robopolicy.data.normalize import Normalizer
from robopolicy.models.mlp import ACTIVATIONS, make_mlp
from robopolicy.rl.advantages import RewardScaler, batch_advantages
from robopolicy.rl.rollout import Obs, RolloutBatch


@dataclasses.dataclass
class ValueConfig:
    """The critic network."""

    hidden_dims: tuple[int, ...] = (64, 64)
    """Widths of the hidden layers (cleanrl: 64, 64; DPPO's Hopper: 256, 256, 256)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu, mish, gelu or silu."""
    layer_norm: bool = False
    """LayerNorm after each hidden linear layer."""

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(d) for d in self.hidden_dims)
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")


def obs_features(obs: Obs, normalizer: Normalizer, keys: tuple[str, ...]) -> Tensor:
    """(B, To * Σ Ds) the normalized low-dim keys of ``obs``, flattened over To."""
    parts = [normalizer.normalize(obs[k].float(), k).flatten(1) for k in keys]
    return torch.cat(parts, -1)


class ValueNetwork(nn.Module):
    """V(obs): (B,) from ``obs`` ``{key: (B, To, Ds)}`` in raw units (module docstring)."""

    def __init__(
        self, config: ValueConfig, *, obs_keys: tuple[str, ...], n_obs_steps: int, state_dim: int
    ) -> None:
        super().__init__()
        self.config, self.obs_keys = config, tuple(obs_keys)
        self.net = make_mlp(
            n_obs_steps * state_dim,
            config.hidden_dims,
            1,
            activation=config.activation,
            layer_norm=config.layer_norm,
        )
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):  # orthogonal, gain sqrt(2) hidden and 1 last (cleanrl)
            nn.init.orthogonal_(layer.weight, 1.0 if i == len(linears) - 1 else math.sqrt(2))
            nn.init.zeros_(layer.bias)

    def forward(self, obs: Obs, normalizer: Normalizer) -> Tensor:
        return self.net(obs_features(obs, normalizer, self.obs_keys)).squeeze(-1)

    @torch.no_grad()
    def batched(self, obs: Obs, normalizer: Normalizer, *, batch_size: int = 16384) -> Tensor:
        """V over a large leading axis, ``batch_size`` rows at a time, without gradients."""
        n = next(iter(obs.values())).shape[0]
        out = [
            self(
                {k: v[i : i + batch_size] for k, v in obs.items() if k in self.obs_keys},
                normalizer,
            )
            for i in range(0, n, batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0)


def value_loss(
    new: Tensor, returns: Tensor, *, old: Tensor | None = None, clip: float | None = None
) -> Tensor:
    """``0.5 · mean((V − R)²)``; with ``clip``, PPO's pessimistic clipped form around the
    collected values ``old`` (the larger of the plain and the clipped error, per element)."""
    loss = (new - returns).pow(2)
    if clip is not None:
        clipped = old + (new - old).clamp(-clip, clip)
        loss = torch.max(loss, (clipped - returns).pow(2))
    return 0.5 * loss.mean()


class Critic:
    """An on-policy run's value network and the running scale of its rewards: the advantages,
    λ-returns and values of a batch, and the state a checkpoint keeps of both.

    ``config`` is the algorithm's: its ``value`` network, ``num_envs``, ``gamma``,
    ``gae_lambda``, ``reward_scaling`` and ``reward_clip``; ``policy_config`` gives the
    observation keys and shapes."""

    def __init__(self, config: Any, policy_config: Any, device: torch.device) -> None:
        c = policy_config
        self.net = ValueNetwork(
            config.value, obs_keys=c.obs_keys, n_obs_steps=c.n_obs_steps, state_dim=c.state_dim
        ).to(device)
        self.scaler = RewardScaler(config.num_envs, config.gamma, clip=config.reward_clip)
        self.gamma, self.lam, self.scaling = config.gamma, config.gae_lambda, config.reward_scaling

    def advantages(
        self, batch: RolloutBatch, normalizer: Normalizer
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(T·N,) advantages, λ-returns and values of ``batch`` (its rewards scaled first, when
        ``reward_scaling``): :func:`~robopolicy.rl.advantages.batch_advantages`."""
        return batch_advantages(
            batch,
            lambda obs: self.net.batched(obs, normalizer),
            gamma=self.gamma,
            lam=self.lam,
            scaler=self.scaler if self.scaling else None,
        )

    @property
    def reward_scale(self) -> float:
        """What rewards are divided by (1 without ``reward_scaling``)."""
        return float(self.scaler.stats.std) if self.scaling else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.net.state_dict(), "reward_stats": self.scaler.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The network and the reward statistics (the per-env returns restart at 0)."""
        self.net.load_state_dict(state["value"])
        self.scaler.stats.load_state_dict(state["reward_stats"])

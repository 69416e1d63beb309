"""A Gaussian MLP policy: the mean from an MLP on the observations, a state-independent std.

Shapes (``docs/DESIGN.md``): B batch, To observation steps, Tp predicted steps, Ta executed
steps, Da action size. In normalized action units (the policy's
:class:`~robopolicy.data.normalize.Normalizer`)::

    x    = normalize(obs[key]) for each low-dim key, flattened over To    (B, To * Ds)
    mean = MLP(x)                                                         (B, Tp, Da)
    std  = clamp(exp(log_std), min_std, max_std)                          (Da,), shared by all
    a    = mean + std * noise,   noise ~ N(0, I)                          (B, Tp, Da)

and :meth:`GaussianPolicy.sample` returns ``unnormalize(a)`` in raw units; ``noise = 0`` gives the
mean (the deterministic policy used for evaluation). For RL, :meth:`log_prob` and
:meth:`entropy` cover only the executed actions ``[To - 1, To - 1 + Ta)`` of the chunk (the others
never reach the environment), in normalized units (the normalization's constant Jacobian cancels
in every probability ratio).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robopolicy.data.normalize import Normalizer
from robopolicy.models.mlp import make_mlp
from robopolicy.policies.base import Obs, Policy, register_policy
from robopolicy.policies.gaussian.config import GaussianPolicyConfig

LOG_2PI = math.log(2 * math.pi)


@register_policy("gaussian", GaussianPolicyConfig)
class GaussianPolicy(Policy):
    """See the module docstring."""

    config: GaussianPolicyConfig

    def __init__(self, config: GaussianPolicyConfig, normalizer: Normalizer) -> None:
        super().__init__(config, normalizer)
        c = config
        self.mean_net = make_mlp(
            c.n_obs_steps * c.state_dim,
            c.hidden_dims,
            c.horizon * c.action_dim,
            activation=c.activation,
            layer_norm=c.layer_norm,
        )
        linears = [m for m in self.mean_net if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):  # cleanrl's init: orthogonal, a small last layer
            nn.init.orthogonal_(layer.weight, 0.01 if i == len(linears) - 1 else math.sqrt(2))
            nn.init.zeros_(layer.bias)
        self.log_std = nn.Parameter(torch.full((c.action_dim,), math.log(c.init_std)))

    @classmethod
    def untrained(
        cls,
        config: GaussianPolicyConfig,
        obs_shapes: Mapping[str, tuple[int, ...]],
        action_shape: tuple[int, ...],
        action_low: tuple[float, ...] | None,
        action_high: tuple[float, ...] | None,
    ) -> GaussianPolicy:
        """A fresh policy for an environment, without data (RL from scratch).

        Observations are ``mean_std`` normalized from mean 0, std 1 (statistics to be replaced
        by running ones); actions ``min_max`` over the bounds, ``identity`` when unbounded.
        """
        shapes = {k: tuple(obs_shapes[k]) for k in config.obs_keys} | {"action": action_shape}
        bounded = action_low is not None and action_high is not None
        modes = {k: "mean_std" for k in config.obs_keys}
        modes["action"] = "min_max" if bounded else "identity"
        config = dataclasses.replace(config, shapes=shapes, normalization=modes)
        stats = {}
        for key in config.obs_keys:
            zero, one = torch.zeros(shapes[key]), torch.ones(shapes[key])
            stats[key] = {"min": zero, "max": zero, "mean": zero, "std": one}
        if bounded:
            low, high = torch.tensor(action_low), torch.tensor(action_high)
            stats["action"] = {
                "min": low,
                "max": high,
                "mean": (low + high) / 2,
                "std": (high - low) / 2,
            }
        return cls(config, Normalizer(modes, stats))

    # -- the distribution ----------------------------------------------------------------------

    @property
    def executed(self) -> slice:
        """The chunk indices that run in the environment: ``[To - 1, To - 1 + Ta)``."""
        start = self.config.n_obs_steps - 1
        return slice(start, start + self.config.n_action_steps)

    def std(self) -> Tensor:
        """(Da,) standard deviation in normalized action units."""
        return self.log_std.exp().clamp(self.config.min_std, self.config.max_std)

    def mean(self, obs: Obs) -> Tensor:
        """(B, Tp, Da) mean chunk in normalized action units."""
        c = self.config
        x = torch.cat(
            [self.normalizer.normalize(obs[k].float(), k).flatten(1) for k in c.obs_keys], -1
        )
        return self.mean_net(x).view(-1, c.horizon, c.action_dim)

    def sample_chunk(self, obs: Obs, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(actions raw, actions normalized)``, each (B, Tp, Da); deterministic given noise."""
        batch = self.check_obs(obs)
        mean = self.mean(obs)
        if noise is None:
            noise = torch.randn_like(mean)
        else:
            self.check_noise(noise, batch)
        normalized = mean + self.std() * noise.to(mean)
        return self.normalizer.unnormalize(normalized, "action"), normalized

    @torch.no_grad()
    def sample(self, obs: Obs, *, noise: Tensor | None = None, steps: int | None = None) -> Tensor:
        """(B, Tp, Da) raw actions: ``mean + std * noise``; ``steps`` is ignored (no denoising)."""
        return self.sample_chunk(obs, noise)[0]

    def log_prob(self, obs: Obs, actions: Tensor) -> Tensor:
        """(B,) log-density of the executed normalized actions ``(B, Ta, Da)``."""
        mean = self.mean(obs)[:, self.executed]
        std = self.std()
        z = (actions - mean) / std
        per_dim = -0.5 * z.pow(2) - std.log() - 0.5 * LOG_2PI
        return per_dim.flatten(1).sum(-1)

    def entropy(self) -> Tensor:
        """() entropy of the executed part of the chunk (the same for every observation)."""
        per_dim = 0.5 + 0.5 * LOG_2PI + self.std().log()
        return per_dim.sum() * self.config.n_action_steps

    # -- behaviour cloning ---------------------------------------------------------------------

    def loss(self, batch: Mapping[str, Any]) -> Tensor:
        """MSE of the mean (``bc_loss="mse"``) or the Gaussian NLL (``"nll"``), normalized units,
        over the whole predicted chunk."""
        self.check_batch(batch)
        target = self.normalizer.normalize(batch["action"].float(), "action")
        mean = self.mean(batch["obs"])
        if self.config.bc_loss == "mse":
            return (mean - target).pow(2).mean()
        std = self.std()
        nll = 0.5 * ((target - mean) / std).pow(2) + std.log() + 0.5 * LOG_2PI
        return nll.mean()

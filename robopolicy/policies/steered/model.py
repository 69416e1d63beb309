"""SteeredPolicy: a frozen base policy driven through its initial noise by a latent actor (DSRL).

Shapes (``docs/DESIGN.md``): B batch, To observation steps, Tp predicted steps, Da action
size, Ds the low-dim observation size of one step, L = Tp * Da the flattened latent.

    x          = normalize(obs[key]) per low-dim key, flattened over To      (B, To * Ds)
    mean, std  = LatentActor(x)                                              (B, L) each
    w          = b * tanh(mean + std * eps)        eps (B, Tp, Da), 0 by default
    actions    = base.sample(obs, noise=w.view(B, Tp, Da), steps=config.steps)  (B, Tp, Da) raw

``sample(obs)`` uses ``eps = 0``: the actor's deterministic latent ``b * tanh(mean)``, the policy
DSRL evaluates. ``sample(obs, noise=eps)`` reads ``noise`` as the actor's own standard-normal
draw, so the steered policy stays deterministic given its noise (the DESIGN contract) and
``noise ~ N(0, I)`` samples the stochastic steered policy that DSRL explores with. The base only
ever sees ``sample(obs, noise=w)``; its weights are never trained (``requires_grad`` off, always
in eval mode). Weights: the base's under ``base.*`` and the actor's under ``actor.*`` in one
``model.safetensors``; the normalizer is the base's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robopolicy.data.normalize import Normalizer
from robopolicy.models.mlp import make_mlp
from robopolicy.policies.base import (
    POLICIES,
    Obs,
    Policy,
    PolicyConfig,
    load_policy_types,
    register_policy,
)
from robopolicy.policies.steered.config import LatentActorConfig, SteeredConfig

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
"""Bounds of the actor's log standard deviation (cleanrl's SAC actor)."""


class LatentActor(nn.Module):
    """A tanh-squashed Gaussian over the flattened latent: (B, To * Ds) -> (B, L)."""

    def __init__(self, config: LatentActorConfig, obs_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.bound = config.noise_bound
        self.trunk = make_mlp(
            obs_dim,
            config.hidden_dims,
            None,
            activation=config.activation,
            layer_norm=config.layer_norm,
        )
        self.head = nn.Linear(config.hidden_dims[-1], 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)`` (B, L) each, before squashing; log_std within the bounds."""
        mean, log_std = self.head(self.trunk(x)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def deterministic(self, x: Tensor) -> Tensor:
        """(B, L) the latent ``b * tanh(mean)``."""
        return self.bound * torch.tanh(self(x)[0])

    def sample(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """``(w, log_prob)``: (B, L) latents ``b * tanh(mean + std * eps)`` for standard-normal
        ``eps`` (B, L), and (B,) the log-density of ``tanh(.)`` in (-1, 1)^L (SAC's entropy
        is measured before the scale b, as Stable-Baselines3's SAC does)."""
        mean, log_std = self(x)
        u = mean + log_std.exp() * eps
        gaussian = (-0.5 * eps.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)
        log_det = 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))  # log(1 - tanh(u)^2), stable
        return self.bound * torch.tanh(u), gaussian - log_det.sum(-1)


_LOG_2 = 0.6931471805599453
_LOG_2PI = 1.8378770664093453


@register_policy("steered", SteeredConfig)
class SteeredPolicy(Policy):
    """See the module docstring."""

    config: SteeredConfig

    def __init__(self, config: SteeredConfig, normalizer: Normalizer) -> None:
        super().__init__(config, normalizer)
        if config.base is None:
            raise ValueError("a steered policy needs its base policy's config (base)")
        self.base = _policy_class(config.base)(config.base, normalizer)
        self.base.requires_grad_(False)
        self.base.eval()
        in_dim = config.n_obs_steps * config.state_dim
        self.actor = LatentActor(config.actor, in_dim, config.latent_dim)

    @classmethod
    def around(
        cls, base: Policy, actor: LatentActorConfig | None = None, steps: int | None = None
    ) -> SteeredPolicy:
        """A fresh actor steering a copy of ``base`` (its weights copied bit for bit, its
        interface kept) with ``steps`` of the base per sample, on the base's device. The actor is
        initialized from torch's global generator."""
        policy = cls(SteeredConfig.around(base.config, actor, steps), base.normalizer)
        policy.base.load_state_dict(base.state_dict())
        policy.interface = base.interface
        return policy.to(base.device)

    def train(self, mode: bool = True) -> SteeredPolicy:
        """Train or eval mode for the actor; the base always stays in eval mode."""
        super().train(mode)
        self.base.eval()
        return self

    def features(self, obs: Obs) -> Tensor:
        """(B, To * Ds) the actor's input: low-dim keys normalized by the base's normalizer,
        concatenated per step and flattened (after checking ``obs``)."""
        self.check_obs(obs)
        device = self.actor.head.weight.device
        parts = [
            self.normalizer.normalize(obs[key].to(device), key).flatten(2).float()
            for key in self.config.obs_keys
        ]
        return torch.cat(parts, dim=-1).flatten(1)

    def latent(self, obs: Obs, noise: Tensor | None = None) -> Tensor:
        """(B, Tp, Da) the latent for ``obs``: deterministic without ``noise``, else the actor's
        sample for its standard-normal draw ``noise`` (B, Tp, Da)."""
        x = self.features(obs)
        size, c = x.shape[0], self.config
        if noise is None:
            w = self.actor.deterministic(x)
        else:
            self.check_noise(noise, size)
            w, _ = self.actor.sample(x, noise.to(x).reshape(size, -1))
        return w.view(size, c.horizon, c.action_dim)

    @torch.no_grad()
    def sample(self, obs: Obs, *, noise: Tensor | None = None, steps: int | None = None) -> Tensor:
        """(B, Tp, Da) raw actions: the base's deterministic sample from the actor's latent
        (module docstring); ``steps`` overrides the config's."""
        w = self.latent(obs, noise)
        return self.base.sample(obs, noise=w, steps=steps or self.config.steps)

    def loss(self, batch: Mapping[str, Any]) -> Tensor:
        raise NotImplementedError(
            "a steered policy learns by RL (robopolicy finetune --algo dsrl), not by cloning"
        )

    def reset(self, done: Any = None) -> None:
        self.base.reset(done)


def _policy_class(config: PolicyConfig) -> type[Policy]:
    load_policy_types()
    for name, cls in PolicyConfig.variants.items():
        if type(config) is cls:
            return POLICIES[name]
    raise ValueError(f"{type(config).__name__} is not a registered policy config")

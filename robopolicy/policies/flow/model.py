"""FlowPolicy: conditional flow matching on linear paths over action chunks, and FPO's hook.

Shapes (``docs/DESIGN.md``): B batch, To observation steps, Tp predicted steps, Da action
size, Dc conditioning size, N (noise, time) pairs per action for FPO.

Convention (openpi's pi0, the FPO reference code): in normalized action units, a data chunk
``a`` and noise ``eps ~ N(0, I)`` give ``x_t = t * eps + (1 - t) * a`` for ``t`` in [0, 1]
(``t = 1`` noise, ``t = 0`` data); the network ``v(x_t, t, cond)`` regresses the velocity
``u = eps - a`` (mean squared error over Tp and Da). Sampling integrates ``dx/dt = v`` from
noise at ``t = 1`` to ``t = 0`` with k uniform steps of the configured flow sampler of
:mod:`robopolicy.sampling.samplers` (``euler``, ``midpoint``) on the policy's
:class:`~robopolicy.sampling.processes.FlowProcess` (``process``); given the noise it is
deterministic. The denoiser sees ``t * time_scale`` as its timestep.

FPO (McAllister et al., 2025) replaces PPO's likelihood ratio with ``exp(L_old - L_new)`` of
conditional-flow-matching losses at the same ``(eps, t)`` pairs: :meth:`FlowPolicy.cfm_loss`
gives those per-pair losses (B, N), independent of the integrator used to act.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from robopolicy.data.normalize import Normalizer
from robopolicy.policies.base import BatchError, Obs, Policy, register_policy
from robopolicy.policies.build import build_networks, encode_observation
from robopolicy.policies.flow.config import FlowConfig
from robopolicy.sampling.processes import FlowProcess
from robopolicy.sampling.samplers import get_sampler


@register_policy("flow", FlowConfig)
class FlowPolicy(Policy):
    """Velocity field over normalized action chunks, integrated from noise to actions."""

    config: FlowConfig

    def __init__(self, config: FlowConfig, normalizer: Normalizer) -> None:
        super().__init__(config, normalizer)
        self.encoder, self.model = build_networks(config, config.denoiser, config.encoder)
        self.process = FlowProcess.of(config)

    # ------------------------------------------------------------------ building blocks

    def encode(self, obs: Obs) -> Tensor:
        """(B, Dc) conditioning of raw-unit ``obs``, after checking it against the config."""
        self.check_obs(obs)
        return encode_observation(self.encoder, self.normalizer, self.config, obs)

    def velocity(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """v (B, Tp, Da) at ``x`` (B, Tp, Da), times ``t`` (B,) in [0, 1], ``cond`` (B, Dc)."""
        return self.model(x, t.to(x.dtype) * self.config.time_scale, cond)

    def denoise(
        self, cond: Tensor, x: Tensor, *, sampler: str | None = None, steps: int | None = None
    ) -> Tensor:
        """The integrated chunk (B, Tp, Da, normalized, unclipped) from ``x`` (B, Tp, Da) at
        ``t = 1``: ``steps`` uniform steps of the registered flow ``sampler`` (the config's when
        None)."""
        spec = get_sampler(sampler or self.config.sampler, "flow")
        k = steps or self.config.steps
        return spec.denoise(self.process, self.model, x, cond, k)

    def sample_time(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
        """Training times of ``shape`` from the configured distribution (see the config)."""
        c = self.config
        if c.time_sampling == "beta":
            dist = torch.distributions.Beta(
                torch.tensor(c.beta_alpha, device=device), torch.tensor(c.beta_beta, device=device)
            )
            s = dist.sample(shape)
        else:
            s = torch.rand(shape, device=device)
        return c.min_time + (1.0 - c.min_time) * s

    def set_sampler(self, sampler: str | None = None, *, steps: int | None = None) -> None:
        """Choose how :meth:`sample` integrates (e.g. right after ``load_policy``); validated."""
        c = self.config
        self.config = dataclasses.replace(
            c,
            sampler=sampler or c.sampler,
            steps=c.steps if steps is None else steps,
        )

    # ------------------------------------------------------------------ the policy interface

    @torch.no_grad()
    def sample(self, obs: Obs, *, noise: Tensor | None = None, steps: int | None = None) -> Tensor:
        """(B, Tp, Da) raw-unit actions integrated from ``noise`` (B, Tp, Da) at ``t = 1``
        (drawn when None); ``steps`` overrides the number of integration steps."""
        cond = self.encode(obs)
        size = cond.shape[0]
        if noise is None:
            x = torch.randn(size, self.config.horizon, self.config.action_dim, device=cond.device)
        else:
            self.check_noise(noise, size)
            x = noise.to(cond.device, torch.float32)
        return self.to_actions(self.denoise(cond, x, steps=steps))

    def to_actions(self, x: Tensor) -> Tensor:
        """Raw-unit actions from an integrated chunk, clipped first when ``clip_sample``."""
        c = self.config
        if c.clip_sample:
            x = x.clamp(-c.clip_sample_range, c.clip_sample_range)
        return super().to_actions(x)

    def loss(
        self, batch: Mapping[str, Any], *, noise: Tensor | None = None, t: Tensor | None = None
    ) -> Tensor:
        """Conditional-flow-matching loss on normalized actions, one ``(eps, t)`` per window;
        ``noise`` (B, Tp, Da) and ``t`` (B,) are drawn when not given."""
        size = self.check_batch(batch)
        cond = encode_observation(self.encoder, self.normalizer, self.config, batch["obs"])
        action = self.normalizer.normalize(batch["action"].to(cond.device), "action").float()
        noise = torch.randn_like(action) if noise is None else noise.to(action)
        t = self.sample_time((size,), cond.device) if t is None else t.to(action)
        return self._cfm(cond, action, noise[:, None], t[:, None]).mean()

    # ------------------------------------------------------------------ FPO hook

    def cfm_loss(self, obs: Obs, actions: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """Per-pair conditional-flow-matching losses (B, N), with gradients.

        Args:
            obs: raw-unit observations (B, To, ...).
            actions: (B, Tp, Da) raw-unit action chunks (those the policy took).
            eps: (B, N, Tp, Da) noise in normalized action units.
            t: (B, N) times in [0, 1].

        Returns:
            (B, N): ``mean over Tp, Da of (v(x_t, t) - (eps - a))^2`` with ``a`` the normalized
            actions; ``loss`` is its mean when N is 1 and ``(eps, t)`` match.
        """
        size = self.check_obs(obs)
        want = (size, self.config.horizon, self.config.action_dim)
        if tuple(actions.shape) != want:
            raise BatchError(f"actions has shape {tuple(actions.shape)}, want {want}")
        if eps.ndim != 4 or eps.shape[0] != size or tuple(eps.shape[2:]) != want[1:]:
            raise BatchError(f"eps has shape {tuple(eps.shape)}, want ({size}, N, *{want[1:]})")
        if tuple(t.shape) != tuple(eps.shape[:2]):
            raise BatchError(f"t has shape {tuple(t.shape)}, want {tuple(eps.shape[:2])}")
        cond = encode_observation(self.encoder, self.normalizer, self.config, obs)
        action = self.normalizer.normalize(actions.to(cond.device), "action").float()
        return self._cfm(cond, action, eps.to(action), t.to(action))

    def _cfm(self, cond: Tensor, action: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """(B, Dc), (B, Tp, Da), (B, N, Tp, Da), (B, N) -> (B, N) per-pair losses."""
        size, n = t.shape
        a = action[:, None]
        x_t = t[..., None, None] * eps + (1 - t[..., None, None]) * a
        target = (eps - a).flatten(0, 1)
        v = self.velocity(x_t.flatten(0, 1), t.flatten(), cond.repeat_interleave(n, dim=0))
        return ((v - target) ** 2).mean((-2, -1)).view(size, n)

"""DiffusionPolicy: Diffusion Policy (Chi et al., 2023), sampled by the registered samplers, with
DPPO's hooks.

Shapes (``docs/DESIGN.md``): B batch, To observation steps, Tp predicted steps, Da action
size, Dc conditioning size, k denoising steps of a sampler (K train timesteps).

The observations (To steps, normalized) are encoded to one conditioning vector (B, Dc); the
denoiser predicts the noise (or the clean chunk) of a noisy normalized action chunk (B, Tp, Da)
given the timestep index ``t`` (0..K-1, as a float) and that vector. The noise schedule is the
policy's :class:`~robopolicy.sampling.processes.DiffusionProcess` (``process``, built from the
config); :meth:`sample` runs the configured sampler of :mod:`robopolicy.sampling.samplers`
(``ddpm``, ``ddim``, ``dpmpp``). Every public tensor in or out of :meth:`sample`/:meth:`loss` is
in raw units; chains (:class:`DenoisingChain`) are in normalized action units, where the noise
lives.

DPPO (Ren et al., 2024; ``irom-princeton/dppo`` ``model/diffusion/diffusion_vpg.py``) treats each
denoising step as a Gaussian policy step: the DDPM/DDIM step of the samplers
(:func:`~robopolicy.sampling.samplers.gaussian_step`), with per-row values.
:meth:`DiffusionPolicy.sample_chain` runs the chain and records every ``x`` with each step's
mean, the std it sampled with (floored at ``min_std`` for exploration) and its log-probability
(std floored at ``logprob_min_std``);
:meth:`DiffusionPolicy.chain_log_prob` recomputes log-probabilities of stored transitions under
the current weights, with gradients. Both work for DDPM and for DDIM (use ``eta > 0`` during
RL so steps are stochastic). Unlike DPPO's DDIM, ``eps^`` is not re-derived from the clipped
``x0^`` (diffusers' default, which the samplers match).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from robopolicy.data.normalize import Normalizer
from robopolicy.policies.base import Obs, Policy, register_policy
from robopolicy.policies.build import build_networks, encode_observation
from robopolicy.policies.diffusion.config import DiffusionConfig
from robopolicy.sampling.processes import DiffusionProcess, diffuse, per_row
from robopolicy.sampling.samplers import gaussian_log_prob, gaussian_step, get_sampler


@dataclasses.dataclass
class DenoisingChain:
    """One run of the denoising chain (normalized action units), as DPPO stores it."""

    x: Tensor
    """(B, k+1, Tp, Da): ``x[:, 0]`` the initial noise, ``x[:, i+1]`` the result of step i."""
    mean: Tensor
    """(B, k, Tp, Da): the Gaussian mean of step i."""
    std: Tensor
    """(B, k): the std step i sampled with (after the ``min_std`` floor)."""
    log_prob: Tensor
    """(B, k): log-probability of ``x[:, i+1]`` under step i's Gaussian with its std floored at
    ``logprob_min_std``, summed over Tp and Da."""
    timesteps: Tensor
    """(k,): the train timestep each step starts from (descending)."""
    actions: Tensor
    """(B, Tp, Da): ``x[:, -1]`` in raw units."""


@register_policy("diffusion", DiffusionConfig)
class DiffusionPolicy(Policy):
    """Conditional DDPM over action chunks; samples with any registered diffusion sampler."""

    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, normalizer: Normalizer) -> None:
        super().__init__(config, normalizer)
        self.encoder, self.model = build_networks(config, config.denoiser, config.encoder)
        self.process = DiffusionProcess.of(config)

    # ------------------------------------------------------------------ building blocks

    def encode(self, obs: Obs) -> Tensor:
        """(B, Dc) conditioning of raw-unit ``obs``, after checking it against the config."""
        self.check_obs(obs)
        return encode_observation(self.encoder, self.normalizer, self.config, obs)

    def predict(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Network output (noise or clean chunk) (B, Tp, Da) at ``x`` (B, Tp, Da), ``t`` (B,)."""
        return self.model(x, t.to(x.dtype), cond)

    def denoise(
        self,
        cond: Tensor,
        x: Tensor,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        deterministic: bool = False,
    ) -> Tensor:
        """The clean chunk (B, Tp, Da, normalized) from ``x`` (B, Tp, Da) at the noisiest level:
        the registered ``sampler`` over ``steps`` steps (the config's when None; ``ddim`` with
        the config's ``eta``); ``deterministic``: its deterministic twin, eta 0."""
        spec = get_sampler(sampler or self.config.sampler, "diffusion")
        options = {"eta": self.config.eta} if "eta" in spec.options else {}
        if deterministic:
            spec, options = spec.twin, {}
        k = steps or self.config.steps
        return spec.denoise(
            self.process, self.model, x, cond, k, draw=lambda: torch.randn_like(x), **options
        )

    def set_sampler(
        self, sampler: str | None = None, *, steps: int | None = None, eta: float | None = None
    ) -> None:
        """Choose how :meth:`sample` denoises (e.g. right after ``load_policy``); validated."""
        c = self.config
        self.config = dataclasses.replace(
            c,
            sampler=sampler or c.sampler,
            steps=c.steps if steps is None else steps,
            eta=c.eta if eta is None else eta,
        )

    # ------------------------------------------------------------------ the policy interface

    @torch.no_grad()
    def sample(self, obs: Obs, *, noise: Tensor | None = None, steps: int | None = None) -> Tensor:
        """(B, Tp, Da) raw-unit actions. Given ``noise`` (B, Tp, Da), the deterministic twin of
        the configured sampler from it (DDIM with eta 0 for ``ddpm``/``ddim``); otherwise the
        configured sampler from drawn noise. ``steps`` overrides k."""
        cond = self.encode(obs)
        if noise is None:
            x = torch.randn(self._chunk(cond.shape[0]), device=cond.device)
        else:
            self.check_noise(noise, cond.shape[0])
            x = noise.to(cond.device, torch.float32)
        x0 = self.denoise(cond, x, steps=steps, deterministic=noise is not None)
        return self.to_actions(x0)

    def loss(
        self,
        batch: Mapping[str, Any],
        *,
        noise: Tensor | None = None,
        timesteps: Tensor | None = None,
    ) -> Tensor:
        """Mean squared error of the noise (or clean-chunk) prediction on normalized actions;
        ``noise`` (B, Tp, Da) and int ``timesteps`` (B,) are drawn when not given."""
        size = self.check_batch(batch)
        cond = encode_observation(self.encoder, self.normalizer, self.config, batch["obs"])
        action = self.normalizer.normalize(batch["action"].to(cond.device), "action").float()
        noise = torch.randn_like(action) if noise is None else noise.to(action)
        if timesteps is None:
            k = self.config.num_train_timesteps
            timesteps = torch.randint(0, k, (size,), device=cond.device)
        x_t = diffuse(action, noise, self.process.abars(timesteps))
        target = noise if self.config.prediction_type == "epsilon" else action
        return F.mse_loss(self.predict(x_t, timesteps, cond), target)

    # ------------------------------------------------------------------ DPPO hooks

    def chain_levels(self, steps: int | None = None, sampler: str | None = None) -> Tensor:
        """(k+1,) int64 timesteps of the k-step chain of ``sampler`` (``ddpm``/``ddim``),
        descending, then -1 ("clean"); the config's k and sampler when None."""
        spec = get_sampler(sampler or self.config.sampler, "diffusion")
        grid = spec.grid(self.process, steps or self.config.steps)
        return torch.tensor(grid, device=self.device).long()

    @torch.no_grad()
    def sample_chain(
        self,
        obs: Obs,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        eta: float | Tensor | None = None,
        noise: Tensor | None = None,
        min_std: float = 0.0,
        logprob_min_std: float = 0.1,
        noise_clip: float | None = None,
        frozen: DiffusionPolicy | None = None,
        finetune_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> DenoisingChain:
        """Run the k-step chain and record it (see :class:`DenoisingChain`).

        Args:
            obs: raw-unit observations (B, To, ...).
            steps, sampler, eta: k, ``ddpm``/``ddim`` and DDIM's eta (float or (B,)); the
                config's when None.
            noise: (B, Tp, Da) initial ``x``; drawn when None.
            min_std: floor of every step's sampling std (DPPO's ``min_sampling_denoising_std``;
                0 keeps the sampler's own std, so DDIM with eta 0 is deterministic).
            logprob_min_std: floor of the std in the recorded log-probabilities (> 0).
            noise_clip: clamp each step's standard-normal draw to ``[-c, c]`` (DPPO's
                ``randn_clip_value``).
            frozen: a frozen copy of this policy that runs the first ``k - finetune_steps`` steps.
            finetune_steps: K', the last steps run by this policy's weights (None: all k).
            generator: random source of the initial noise and the per-step draws (on the
                policy's device); torch's global one when None.
        """
        if not logprob_min_std > 0:
            raise ValueError(f"logprob_min_std must be positive, got {logprob_min_std}")
        cond = self.encode(obs)
        size = cond.shape[0]
        sampler = sampler or self.config.sampler
        eta = self.config.eta if eta is None else eta
        levels = self.chain_levels(steps, sampler)
        abar, k = self.process.abars(levels), len(levels) - 1
        n_frozen = 0 if finetune_steps is None else k - finetune_steps
        if not 0 <= n_frozen <= k:
            raise ValueError(f"finetune_steps must be in [0, k={k}]: {finetune_steps}")
        if n_frozen and frozen is None:
            raise ValueError("finetune_steps < k needs the frozen copy that runs the early steps")
        frozen_cond = frozen.encode(obs) if n_frozen and frozen is not None else None
        if noise is None:
            x = torch.randn(self._chunk(size), generator=generator, device=cond.device)
        else:
            self.check_noise(noise, size)
            x = noise.to(cond.device, torch.float32)
        xs, means, stds, log_probs = [x], [], [], []
        for i in range(k):
            t = levels[i].expand(size)
            if i < n_frozen and frozen is not None:
                out = frozen.predict(x, t, frozen_cond)
            else:
                out = self.predict(x, t, cond)
            a, a_next = abar[i].expand(size), abar[i + 1].expand(size)
            mean, std = self._step(out, x, a, a_next, sampler, eta)
            draw = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            if noise_clip is not None:
                draw = draw.clamp(-noise_clip, noise_clip)
            x = mean + per_row(std.clamp(min=min_std), draw) * draw
            log_probs.append(gaussian_log_prob(x, mean, std.clamp(min=logprob_min_std)))
            xs.append(x)
            means.append(mean)
            stds.append(std.clamp(min=min_std).expand(size))
        return DenoisingChain(
            x=torch.stack(xs, 1),
            mean=torch.stack(means, 1),
            std=torch.stack(stds, 1),
            log_prob=torch.stack(log_probs, 1),
            timesteps=levels[:-1],
            actions=self.normalizer.unnormalize(x, "action"),
        )

    def chain_log_prob(
        self,
        obs: Obs,
        x_prev: Tensor,
        x_next: Tensor,
        step: Tensor,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        eta: float | Tensor | None = None,
        min_std: float = 0.1,
        reduce: Literal["sum", "none"] = "sum",
    ) -> Tensor:
        """Log-probabilities of N stored transitions under the current weights (with gradients).

        Args:
            obs: raw-unit observations with batch N (one per transition).
            x_prev, x_next: (N, Tp, Da) normalized ``x`` before and after the step.
            step: (N,) int64 index i of the step in the k-step chain (0 is the noisiest).
            steps, sampler, eta: the chain's k, sampler and eta, as in :meth:`sample_chain`.
            min_std: floor of the std (DPPO's ``min_logprob_denoising_std``).
            reduce: ``sum`` -> (N,) summed over Tp and Da; ``none`` -> (N, Tp, Da).
        """
        return self._log_prob(
            self.encode(obs), x_prev, x_next, step, steps, sampler, eta, min_std, reduce
        )

    def chain_log_probs(
        self,
        obs: Obs,
        x: Tensor,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        eta: float | Tensor | None = None,
        min_std: float = 0.1,
    ) -> Tensor:
        """(B, n) log-probabilities (summed over Tp, Da) of the last n steps of stored chains
        ``x`` (B, n+1, Tp, Da): ``DenoisingChain.x`` or its tail ``x[:, k - n:]``; ``eta`` a
        float or (B,); other arguments as :meth:`chain_log_prob`."""
        size, n = x.shape[0], x.shape[1] - 1
        k = steps or self.config.steps
        cond = self.encode(obs).repeat_interleave(n, dim=0)
        step = torch.arange(k - n, k, device=x.device).repeat(size)
        if isinstance(eta, Tensor) and eta.ndim:
            eta = eta.repeat_interleave(n, dim=0)
        prev, after = x[:, :-1].flatten(0, 1), x[:, 1:].flatten(0, 1)
        out = self._log_prob(cond, prev, after, step, k, sampler, eta, min_std, "sum")
        return out.view(size, n)

    def _log_prob(
        self,
        cond: Tensor,
        x_prev: Tensor,
        x_next: Tensor,
        step: Tensor,
        steps: int | None,
        sampler: str | None,
        eta: float | Tensor | None,
        min_std: float,
        reduce: Literal["sum", "none"],
    ) -> Tensor:
        sampler = sampler or self.config.sampler
        levels = self.chain_levels(steps, sampler)
        step = step.to(levels.device)
        abar = self.process.abars(levels)
        eta = self.config.eta if eta is None else eta
        out = self.predict(x_prev, levels[step], cond)
        mean, std = self._step(out, x_prev, abar[step], abar[step + 1], sampler, eta)
        return gaussian_log_prob(x_next, mean, std.clamp(min=min_std), reduce=reduce)

    def _step(
        self, out: Tensor, x: Tensor, a: Tensor, a_next: Tensor, sampler: str, eta: float | Tensor
    ) -> tuple[Tensor, Tensor]:
        """The step's Gaussian ``(mean (B, Tp, Da), std (B,))`` from the network output ``out``
        at ``x``, from ``abar`` ``a`` (B,) to ``a_next`` (B,)."""
        x0, eps = self.process.estimates(out, x, a)
        return gaussian_step(x0, eps, x, a, a_next, sampler=sampler, eta=eta)

    def _chunk(self, size: int) -> tuple[int, int, int]:
        return (size, self.config.horizon, self.config.action_dim)

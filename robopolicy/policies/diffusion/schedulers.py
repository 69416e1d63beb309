"""DDPM and DDIM noise schedules with every reverse step's Gaussian written out.

Written here (not taken from diffusers) because DPPO needs the mean and std of each denoising
step explicitly; ``tests/policies/test_diffusion.py`` checks it against diffusers'
``DDPMScheduler`` (``variance_type="fixed_small"``) and ``DDIMScheduler`` (``set_alpha_to_one``,
``steps_offset=0``, ``timestep_spacing="leading"``) step by step.

Notation (diffusers' names in brackets): K train timesteps ``t = 0..K-1`` (0 is the cleanest);
``beta_t`` [betas], ``alpha_t = 1 - beta_t``, ``abar_t = prod_{s<=t} alpha_s`` [alphas_cumprod].
Forward process: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.

A k-step sampler visits ``tau_1 > ... > tau_k`` ("leading" spacing: ``tau_i = (k - i) * (K // k)``,
so the last is 0) and steps from ``tau`` to the next ``tau'`` (after the last: ``tau' = -1``, with
``abar_{-1} = 1``). With ``a = abar_tau``, ``a' = abar_tau'`` and the network's estimate ``x0^``
(clipped to ``[-r, r]`` when ``clip_sample``):

- DDPM, "fixed_small" variance: ``mean = sqrt(a') (1 - a/a') / (1 - a) x0^
  + sqrt(a/a') (1 - a') / (1 - a) x_tau``, ``var = (1 - a') / (1 - a) (1 - a/a')``; no noise is
  added on the step from ``tau = 0``.
- DDIM with ``eta``: ``std = eta sqrt(var)`` (the same ``var``), ``mean = sqrt(a') x0^
  + sqrt(1 - a' - std^2) eps^``, where ``eps^`` is the network output (epsilon prediction) or is
  derived from the unclipped ``x0^`` (sample prediction), as diffusers does. With ``eta = 1`` and
  every step it is DDPM again whenever clipping is inactive.

Either way ``x_tau' = mean + std * z`` with ``z ~ N(0, I)``; :meth:`NoiseScheduler.step` returns
``(mean, std)`` so samplers and DPPO's log-probabilities share one formula.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

BetaSchedule = Literal["linear", "squaredcos_cap_v2"]
PredictionType = Literal["epsilon", "sample"]
Sampler = Literal["ddpm", "ddim"]
BETA_SCHEDULES: tuple[str, ...] = ("linear", "squaredcos_cap_v2")
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample")
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim")


def make_betas(
    schedule: str, num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """(K,) float32 betas. ``squaredcos_cap_v2`` (Nichol & Dhariwal's cosine schedule, each beta
    capped at 0.999) ignores ``beta_start``/``beta_end``."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if schedule == "squaredcos_cap_v2":

        def abar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        k = num_train_timesteps
        betas = [min(1 - abar((i + 1) / k) / abar(i / k), 0.999) for i in range(k)]
        return torch.tensor(betas, dtype=torch.float32)
    raise ValueError(f"beta schedule {schedule!r} is not one of {BETA_SCHEDULES}")


def leading_timesteps(num_train_timesteps: int, steps: int) -> Tensor:
    """(steps,) int64 timesteps, descending, spaced ``K // steps`` apart and ending at 0."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}], got {steps}")
    ratio = num_train_timesteps // steps
    return torch.arange(steps - 1, -1, -1, dtype=torch.int64) * ratio


class NoiseScheduler(nn.Module):
    """The schedule's tables (non-persistent buffers: they follow ``.to`` but are not saved)."""

    alphas_cumprod: Tensor

    def __init__(
        self,
        num_train_timesteps: int = 100,
        beta_schedule: str = "squaredcos_cap_v2",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction type {prediction_type!r} not in {PREDICTION_TYPES}")
        self.num_train_timesteps = num_train_timesteps
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        betas = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
        self.register_buffer("alphas_cumprod", torch.cumprod(1.0 - betas, dim=0), persistent=False)

    def timesteps(self, steps: int | None = None) -> Tensor:
        """(k,) descending timesteps of a k-step sampler ("leading" spacing), on our device."""
        steps = self.num_train_timesteps if steps is None else steps
        return leading_timesteps(self.num_train_timesteps, steps).to(self.alphas_cumprod.device)

    @staticmethod
    def previous(timesteps: Tensor) -> Tensor:
        """(k,) the timestep each step of ``timesteps`` lands on; -1 after the last."""
        return torch.cat([timesteps[1:], timesteps.new_full((1,), -1)])

    def abar(self, t: Tensor) -> Tensor:
        """``abar_t`` for int64 ``t`` of any shape; 1 where ``t < 0``."""
        table = self.alphas_cumprod
        return torch.where(t >= 0, table[t.clamp(min=0)], torch.ones((), device=table.device))

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """``x_t`` (B, ...) from clean ``x0`` (B, ...), noise ``eps`` and timesteps ``t`` (B,)."""
        a = _expand(self.abar(t).to(x0.dtype), x0)
        return a**0.5 * x0 + (1 - a) ** 0.5 * eps

    def predict_x0(self, output: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(x0^, eps^)`` from the network ``output`` at ``x_t`` (B, ...), ``t`` (B,).

        ``x0^`` is clipped when ``clip_sample``; ``eps^`` is the output itself (epsilon
        prediction) or derived from the unclipped ``x0^`` (sample prediction).
        """
        a = _expand(self.abar(t), x_t)
        if self.prediction_type == "epsilon":
            x0, eps = (x_t - (1 - a) ** 0.5 * output) / a**0.5, output
        else:
            x0, eps = output, (x_t - a**0.5 * output) / (1 - a) ** 0.5
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0, eps

    def step(
        self,
        output: Tensor,
        x_t: Tensor,
        t: Tensor,
        t_prev: Tensor,
        *,
        sampler: str = "ddpm",
        eta: float | Tensor = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """The Gaussian ``N(mean, std^2 I)`` of ``x_{t_prev}`` given ``x_t``.

        Args:
            output: (B, Tp, Da) network output at ``(x_t, t)``.
            x_t: (B, Tp, Da) current sample.
            t, t_prev: (B,) int64 current and next timestep (``t_prev = -1`` after the last).
            sampler: ``ddpm`` (posterior, "fixed_small" variance) or ``ddim``.
            eta: DDIM's noise scale (float or (B,)); ignored by DDPM.

        Returns:
            ``mean`` (B, Tp, Da) and ``std`` (B,), both float32 like the inputs.
        """
        x0, eps = self.predict_x0(output, x_t, t)
        a, a_prev = self.abar(t), self.abar(t_prev)
        var = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        if sampler == "ddpm":
            alpha, beta = a / a_prev, 1 - a / a_prev
            coef_x0 = a_prev**0.5 * beta / (1 - a)
            coef_xt = alpha**0.5 * (1 - a_prev) / (1 - a)
            mean = _expand(coef_x0, x0) * x0 + _expand(coef_xt, x_t) * x_t
            std = torch.where(t > 0, var.clamp(min=1e-20) ** 0.5, torch.zeros_like(var))
            return mean, std
        if sampler == "ddim":
            std = eta * var**0.5
            direction = (1 - a_prev - std**2).clamp(min=0) ** 0.5
            mean = _expand(a_prev**0.5, x0) * x0 + _expand(direction, eps) * eps
            return mean, std
        raise ValueError(f"sampler {sampler!r} is not one of {SAMPLERS}")


def gaussian_log_prob(
    x: Tensor, mean: Tensor, std: Tensor, *, reduce: Literal["sum", "none"] = "sum"
) -> Tensor:
    """log N(x; mean, std^2 I) of (B, Tp, Da) ``x`` with per-sample ``std`` (B,): (B,) summed
    over Tp and Da, or (B, Tp, Da) per element with ``reduce="none"``."""
    std = _expand(std, x)
    value = -0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
    return value.sum((-2, -1)) if reduce == "sum" else value


def _expand(v: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, ..., 1) to broadcast against ``like``."""
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))

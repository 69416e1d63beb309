"""Noise processes of the policies as plain numbers: what a sampler needs to know.

- :class:`DiffusionProcess`: a diffusion policy's schedule, ``x_t = sqrt(abar_t) x0 +
  sqrt(1 - abar_t) eps`` over timesteps 0..K-1 (level -1 is "clean", ``abar = 1``); fractional
  levels interpolate the log signal-to-noise ratio linearly between timesteps, so a teacher can be
  solved from any noise level (:mod:`robopolicy.inference.distill`).
- :class:`FlowProcess`: a flow policy's path ``x_t = t eps + (1 - t) a`` (t = 1 noise, 0 data).

Both give the grid of levels a k-step sampler walks (``grid``), the network's time input at a
level (``model_time``) and re-noising of a clean chunk to a level (``renoise``, warm start and
inpainting). Each policy builds its process from its config (``policy.process``). Arrays are
torch tensors or numpy arrays alike.

Notation (diffusers' names in brackets): K train timesteps ``t = 0..K-1`` (0 the cleanest),
``beta_t`` [betas], ``alpha_t = 1 - beta_t``, ``abar_t = prod_{s<=t} alpha_s`` [alphas_cumprod].
The diffusion formulas (:func:`diffuse`, :meth:`DiffusionProcess.estimates`) take ``abar`` as a
Python number (the samplers) or as a (B,) tensor, one value per row (training's timesteps and
DPPO's stored transitions, :meth:`DiffusionProcess.abars`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

Array = Any
Family = Literal["diffusion", "flow"]
BETA_SCHEDULES: tuple[str, ...] = ("linear", "squaredcos_cap_v2")
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "sample")


def logsnr(abar: float) -> float:
    """``log(abar / (1 - abar))``."""
    return math.log(abar) - math.log1p(-abar)


def make_betas(
    schedule: str, num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """(K,) float32 betas on the CPU (also while a policy is built on the meta device).
    ``squaredcos_cap_v2`` (Nichol & Dhariwal's cosine schedule, each beta capped at 0.999)
    ignores ``beta_start``/``beta_end``."""
    if schedule == "linear":
        k = num_train_timesteps
        return torch.linspace(beta_start, beta_end, k, dtype=torch.float32, device="cpu")
    if schedule == "squaredcos_cap_v2":

        def abar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        k = num_train_timesteps
        betas = [min(1 - abar((i + 1) / k) / abar(i / k), 0.999) for i in range(k)]
        return torch.tensor(betas, dtype=torch.float32, device="cpu")
    raise ValueError(f"beta schedule {schedule!r} is not one of {BETA_SCHEDULES}")


def per_row(value: Any, like: Array) -> Any:
    """A number as it is; a (B,) tensor as (B, 1, ..., 1), to broadcast against ``like``."""
    if isinstance(value, Tensor) and value.ndim:
        return value.reshape(value.shape + (1,) * (like.ndim - value.ndim))
    return value


def diffuse(x0: Array, eps: Array, abar: Any) -> Array:
    """``sqrt(abar) x0 + sqrt(1 - abar) eps``: ``x`` at ``abar`` from a clean chunk and noise
    (both (B, Tp, Da)); ``abar`` a number or (B,)."""
    return per_row(abar**0.5, x0) * x0 + per_row((1 - abar) ** 0.5, eps) * eps


@dataclasses.dataclass(frozen=True)
class DiffusionProcess:
    """A diffusion policy's noise schedule as plain numbers (``x_t = sqrt(abar) x0 +
    sqrt(1 - abar) eps``); fractional levels interpolate log-SNR linearly between timesteps."""

    alphas_cumprod: tuple[float, ...]
    """``abar_t`` for t = 0..K-1 (descending)."""
    prediction_type: str = "epsilon"
    """What the network predicts: ``epsilon`` or ``sample``."""
    clip: float | None = 1.0
    """Bound of the predicted clean chunk (normalized units); None: no clipping."""
    family: Family = "diffusion"

    def __post_init__(self) -> None:
        if not self.alphas_cumprod or not all(0 < a < 1 for a in self.alphas_cumprod):
            raise ValueError("alphas_cumprod must be values in (0, 1)")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be epsilon or sample: {self.prediction_type}")

    @classmethod
    def of(cls, config: Any) -> DiffusionProcess:
        """The process of a :class:`~robopolicy.policies.diffusion.DiffusionConfig`: its beta
        schedule's ``abar`` (the float32 cumulative product, as diffusers)."""
        betas = make_betas(
            config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end
        )
        abar = torch.cumprod(1.0 - betas, dim=0).tolist()
        clip = config.clip_sample_range if config.clip_sample else None
        return cls(tuple(abar), config.prediction_type, clip)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def abar(self, level: float) -> float:
        """``abar`` at a (possibly fractional) timestep; 1 below 0."""
        if level < 0:
            return 1.0
        lo = min(int(level), self.num_train_timesteps - 1)  # level >= 0: int floors
        if level == lo:
            return self.alphas_cumprod[lo]
        hi = min(lo + 1, self.num_train_timesteps - 1)
        lam = np.interp(level, [lo, hi], [logsnr(self.alphas_cumprod[i]) for i in (lo, hi)])
        return float(1.0 / (1.0 + math.exp(-lam)))

    def abars(self, levels: Tensor) -> Tensor:
        """float32 ``abar`` at int64 timesteps ``levels`` (any shape, -1 for "clean"), on their
        device."""
        table = torch.tensor((1.0, *self.alphas_cumprod), dtype=torch.float32, device=levels.device)
        return table[levels + 1]

    def level_of(self, abar: float) -> float:
        """The fractional timestep whose ``abar`` is ``abar`` (inverse of :meth:`abar`)."""
        lams = [logsnr(a) for a in self.alphas_cumprod]  # decreasing in t
        return float(np.interp(-logsnr(abar), [-v for v in lams], range(len(lams))))

    def model_time(self, level: float) -> float:
        return float(level)

    def grid(self, steps: int, spacing: str = "leading") -> list[float]:
        """k timesteps, descending, then -1. ``leading``: ``(k-1-i) * (K // k)``, as the
        policy's DDIM; ``trailing``: from K-1 down in steps of ``K / k``, as diffusers."""
        k_train = self.num_train_timesteps
        if not 1 <= steps <= k_train:
            raise ValueError(f"steps must be in [1, {k_train}], got {steps}")
        if spacing == "leading":
            levels = np.arange(steps - 1, -1, -1) * (k_train // steps)
        elif spacing == "trailing":
            levels = np.arange(k_train, 0, -k_train / steps).round().astype(np.int64) - 1
        else:
            raise ValueError(f"spacing must be leading or trailing, got {spacing!r}")
        return [float(t) for t in levels] + [-1.0]

    def renoise(self, x0: Array, eps: Array, level: float) -> Array:
        """``x`` at ``level`` from a clean chunk and noise (both (B, Tp, Da))."""
        return diffuse(x0, eps, self.abar(level))

    def estimates(self, out: Array, x: Array, abar: Any) -> tuple[Array, Array]:
        """``(x0^, eps^)`` from the network output ``out`` at ``x`` (both (B, Tp, Da)), at
        ``abar`` (a number or (B,)): ``x0^`` clipped when configured, ``eps^`` the output itself
        (epsilon prediction) or derived from the unclipped ``x0^`` (sample prediction), as
        diffusers does."""
        root, root_rest = per_row(abar**0.5, x), per_row((1 - abar) ** 0.5, x)
        if self.prediction_type == "epsilon":
            x0, eps = (x - root_rest * out) / root, out
        else:
            x0, eps = out, (x - root * out) / root_rest
        return (x0 if self.clip is None else x0.clip(-self.clip, self.clip)), eps


@dataclasses.dataclass(frozen=True)
class FlowProcess:
    """A flow policy's path ``x_t = t eps + (1 - t) a`` (t = 1 noise, 0 data)."""

    time_scale: float = 1000.0
    """Factor from ``t`` to the network's time input."""
    family: Family = "flow"

    @classmethod
    def of(cls, config: Any) -> FlowProcess:
        """The process of a :class:`~robopolicy.policies.flow.FlowConfig`."""
        return cls(float(config.time_scale))

    def model_time(self, level: float) -> float:
        """``level * time_scale``, multiplied in float32 as the network's own arithmetic."""
        return float(np.float32(level) * np.float32(self.time_scale))

    def grid(self, steps: int, spacing: str = "uniform") -> list[float]:
        """k + 1 uniform times from 1 down to 0: ``torch.linspace``'s float32 values, so every
        backend and the policy itself walk the same times."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return torch.linspace(1.0, 0.0, steps + 1).tolist()

    def renoise(self, x0: Array, eps: Array, level: float) -> Array:
        return level * eps + (1.0 - level) * x0


Process = DiffusionProcess | FlowProcess

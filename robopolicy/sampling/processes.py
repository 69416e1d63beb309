"""Noise processes of the policies as plain numbers: what a sampler needs to know.

- :class:`DiffusionProcess`: a diffusion policy's schedule, ``x_t = sqrt(abar_t) x0 +
  sqrt(1 - abar_t) eps`` over timesteps 0..K-1 (level -1 is "clean", ``abar = 1``); fractional
  levels interpolate the log signal-to-noise ratio linearly between timesteps, so a teacher can be
  solved from any noise level (:mod:`robopolicy.inference.distill`).
- :class:`FlowProcess`: a flow policy's path ``x_t = t eps + (1 - t) a`` (t = 1 noise, 0 data).

Both give the grid of levels a k-step sampler walks (``grid``), the network's time input at a
level (``model_time``) and re-noising of a clean chunk to a level (``renoise``, warm start and
inpainting). Arrays are torch tensors or numpy arrays alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

Array = Any
Family = Literal["diffusion", "flow"]


def logsnr(abar: float) -> float:
    """``log(abar / (1 - abar))``."""
    return math.log(abar) - math.log1p(-abar)


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
        if self.prediction_type not in ("epsilon", "sample"):
            raise ValueError(f"prediction_type must be epsilon or sample: {self.prediction_type}")

    @classmethod
    def of(cls, policy: Any) -> DiffusionProcess:
        """The process of a :class:`~robopolicy.policies.diffusion.DiffusionPolicy`."""
        c = policy.config
        abar = policy.scheduler.alphas_cumprod.detach().cpu().double().numpy()
        clip = c.clip_sample_range if c.clip_sample else None
        return cls(tuple(float(a) for a in abar), c.prediction_type, clip)

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
        a = self.abar(level)
        return math.sqrt(a) * x0 + math.sqrt(1.0 - a) * eps

    def estimates(self, out: Array, x: Array, level: float) -> tuple[Array, Array]:
        """``(x0^, eps^)`` from the network output at ``x``; ``x0^`` clipped when configured,
        ``eps^`` from the unclipped one (as the policy's schedulers)."""
        a = self.abar(level)
        if self.prediction_type == "epsilon":
            x0, eps = (x - math.sqrt(1 - a) * out) / math.sqrt(a), out
        else:
            x0, eps = out, (x - math.sqrt(a) * out) / math.sqrt(1 - a)
        return (x0 if self.clip is None else x0.clip(-self.clip, self.clip)), eps


@dataclasses.dataclass(frozen=True)
class FlowProcess:
    """A flow policy's path ``x_t = t eps + (1 - t) a`` (t = 1 noise, 0 data)."""

    time_scale: float = 1000.0
    """Factor from ``t`` to the network's time input."""
    family: Family = "flow"

    @classmethod
    def of(cls, policy: Any) -> FlowProcess:
        return cls(float(policy.config.time_scale))

    def model_time(self, level: float) -> float:
        return float(level) * self.time_scale

    def grid(self, steps: int, spacing: str = "uniform") -> list[float]:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return [1.0 - i / steps for i in range(steps)] + [0.0]

    def renoise(self, x0: Array, eps: Array, level: float) -> Array:
        return level * eps + (1.0 - level) * x0


Process = DiffusionProcess | FlowProcess


PROCESSES: dict[str, Callable[[Any], Process]] = {
    "diffusion": DiffusionProcess.of,
    "flow": FlowProcess.of,
}
"""A policy's ``type_name`` -> the builder of its process."""


def process_of(policy: Any) -> Process:
    """The :class:`DiffusionProcess` or :class:`FlowProcess` of a diffusion or flow policy."""
    name = getattr(type(policy), "type_name", "")
    if name not in PROCESSES:
        raise ValueError(f"no sampler for policy type {name!r} (have {sorted(PROCESSES)})")
    return PROCESSES[name](policy)

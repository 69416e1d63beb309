"""The flow-matching policy's config: networks, training times and the ODE integrator.

Convention (openpi's pi0 and the FPO reference code): ``t = 1`` is noise, ``t = 0`` is data,
``x_t = t * eps + (1 - t) * a`` and the network predicts the velocity ``u = eps - a``; sampling
integrates ``dx/dt = v(x, t)`` from ``t = 1`` down to 0.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from robopolicy.config import did_you_mean
from robopolicy.models.denoisers import DenoiserConfig
from robopolicy.models.encoders import ObsEncoderConfig
from robopolicy.models.unet1d import UNet1DConfig
from robopolicy.policies.base import PolicyConfig
from robopolicy.sampling.samplers import sampler_names

TIME_SAMPLINGS = ("uniform", "beta")


@dataclasses.dataclass
class FlowConfig(PolicyConfig):
    """A :class:`~robopolicy.policies.flow.model.FlowPolicy` (type ``flow``)."""

    denoiser: DenoiserConfig = dataclasses.field(default_factory=UNet1DConfig)
    """The velocity network; ``denoiser.type``: unet1d, mlp, transformer. It receives
    ``t * time_scale`` as its timestep."""
    encoder: ObsEncoderConfig = dataclasses.field(default_factory=ObsEncoderConfig)
    """How observations become the denoiser's conditioning vector."""
    time_sampling: Literal["uniform", "beta"] = "uniform"
    """Training times: ``t = min_time + (1 - min_time) * s`` with ``s ~ U(0, 1)`` or
    ``s ~ Beta(beta_alpha, beta_beta)`` (pi0: Beta(1.5, 1), which favours noisier times)."""
    beta_alpha: float = 1.5
    """First shape parameter of the ``beta`` time sampling."""
    beta_beta: float = 1.0
    """Second shape parameter of the ``beta`` time sampling."""
    min_time: float = 0.001
    """Lowest training time (pi0: 0.001), in [0, 1)."""
    sampler: str = "euler"
    """The registered flow sampler (ODE integrator) :meth:`sample` runs
    (:mod:`robopolicy.sampling.samplers`): ``euler`` (1 network call per step) or the explicit
    ``midpoint`` rule (2 calls per step, second order)."""
    steps: int = 10
    """k, integration steps per sample (uniform in t)."""
    time_scale: float = 1000.0
    """Factor from ``t`` in [0, 1] to the denoiser's timestep input (its sinusoidal embedding
    resolves a 0..1000 range; see ``robopolicy/models/embeddings.py``)."""
    clip_sample: bool = True
    """Clip the integrated chunk to ``[-clip_sample_range, clip_sample_range]`` (normalized
    units; with ``min_max`` actions, the demonstrated range) before it becomes actions: an
    observation far from the data can make the ODE diverge, and the environment or arm must not
    get that (the diffusion policy clips its clean-chunk estimate at every step)."""
    clip_sample_range: float = 1.0
    """Bound of ``clip_sample``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time_sampling must be one of {list(TIME_SAMPLINGS)}")
        samplers = sampler_names("flow")
        if self.sampler not in samplers:
            hint = did_you_mean(self.sampler, samplers)
            raise ValueError(f"sampler must be one of {samplers}, got {self.sampler!r}{hint}")
        if not (self.beta_alpha > 0 and self.beta_beta > 0):
            raise ValueError(f"beta_alpha and beta_beta must be positive, got {self.beta_alpha}")
        if not 0.0 <= self.min_time < 1.0:
            raise ValueError(f"min_time must be in [0, 1), got {self.min_time}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not self.time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {self.time_scale}")
        if not self.clip_sample_range > 0:
            raise ValueError(f"clip_sample_range must be positive, got {self.clip_sample_range}")

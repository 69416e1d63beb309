"""The diffusion policy's config: networks, noise schedule and sampler.

Defaults are Diffusion Policy's Push-T settings: 100 train timesteps, the squared-cosine
schedule, epsilon prediction with ``x0`` clipped to [-1, 1], and DDPM sampling over all 100
steps (``diffusion_policy/config/train_diffusion_unet_lowdim_workspace.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from robopolicy.config import did_you_mean, follows
from robopolicy.models.denoisers import DenoiserConfig
from robopolicy.models.encoders import ObsEncoderConfig
from robopolicy.models.unet1d import UNet1DConfig
from robopolicy.policies.base import PolicyConfig
from robopolicy.sampling.processes import BETA_SCHEDULES, PREDICTION_TYPES
from robopolicy.sampling.samplers import sampler_names

MAX_TRAIN_TIMESTEPS = 100_000
"""Bound on K (100x DDPM's 1000): its schedule tables are built from the config alone."""


@dataclasses.dataclass
class DiffusionConfig(PolicyConfig):
    """A :class:`~robopolicy.policies.diffusion.model.DiffusionPolicy` (type ``diffusion``)."""

    denoiser: DenoiserConfig = dataclasses.field(default_factory=UNet1DConfig)
    """The noise (or sample) prediction network; ``denoiser.type``: unet1d, mlp, transformer.
    It receives the timestep index ``t`` in ``0..K-1`` as a float."""
    encoder: ObsEncoderConfig = dataclasses.field(default_factory=ObsEncoderConfig)
    """How observations become the denoiser's conditioning vector."""
    num_train_timesteps: int = 100
    """K: diffusion timesteps of training (Diffusion Policy: 100; DPPO's gym tasks: 20)."""
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    """``linear`` from ``beta_start`` to ``beta_end``, or the capped squared cosine."""
    beta_start: float = 1e-4
    """First beta of the ``linear`` schedule."""
    beta_end: float = 0.02
    """Last beta of the ``linear`` schedule."""
    prediction_type: Literal["epsilon", "sample"] = "epsilon"
    """What the network predicts: the noise (``epsilon``) or the clean chunk (``sample``)."""
    clip_sample: bool = True
    """Clip the predicted clean chunk to ``[-clip_sample_range, clip_sample_range]`` (in
    normalized units) at every denoising step."""
    clip_sample_range: float = 1.0
    """Bound of ``clip_sample``."""
    sampler: str = "ddpm"
    """The registered diffusion sampler :meth:`sample` runs (:mod:`robopolicy.sampling.samplers`):
    ancestral ``ddpm``, ``ddim`` (with ``eta``) or ``dpmpp``. Given ``noise``, its deterministic
    twin runs (``ddpm`` and ``ddim`` as DDIM with eta 0)."""
    steps: int | None = dataclasses.field(default=None, metadata=follows("num_train_timesteps"))
    """k, denoising steps per sample, on the sampler's grid (``ddpm``/``ddim``: ``K // k`` apart,
    "leading"), in [1, K]. None given means K: it is always an int once built (and written null
    while it equals K, so it keeps following K when that is overridden)."""
    eta: float = 0.0
    """DDIM's noise scale: 0 deterministic, 1 has DDPM's posterior variance."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.num_train_timesteps <= MAX_TRAIN_TIMESTEPS:
            raise ValueError(
                f"num_train_timesteps must be in [1, {MAX_TRAIN_TIMESTEPS}], "
                f"got {self.num_train_timesteps}"
            )
        _one_of("beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        _one_of("prediction_type", self.prediction_type, PREDICTION_TYPES)
        _one_of("sampler", self.sampler, sampler_names("diffusion"))
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(
                f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}"
            )
        if not self.clip_sample_range > 0:
            raise ValueError(f"clip_sample_range must be positive, got {self.clip_sample_range}")
        if self.steps is None:
            self.steps = self.num_train_timesteps
        if not 1 <= self.steps <= self.num_train_timesteps:
            raise ValueError(
                f"steps must be in [1, {self.num_train_timesteps}] or null, got {self.steps}"
            )
        if not self.eta >= 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")


def _one_of(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        hint = did_you_mean(value, choices)
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}{hint}")

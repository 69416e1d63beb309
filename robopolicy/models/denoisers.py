"""The denoiser contract, its config base and its registry.

A denoiser maps a noisy action chunk, a timestep and a conditioning vector to a chunk of the same
shape (the policy decides whether that is noise, the clean sample or a velocity)::

    forward(x: (B, Tp, Da) float, t: (B,) float, cond: (B, Dc) float) -> (B, Tp, Da)

``t`` is a float whose scale the policy chooses (see :mod:`robopolicy.models.embeddings`);
a 0-d ``t`` is broadcast over the batch. ``cond`` may be ``None`` only when Dc is 0.

Each network module registers itself with its config class::

    @register_denoiser("unet1d", UNet1DConfig)
    class ConditionalUNet1D(Denoiser): ...

    net = build_denoiser(UNet1DConfig(), action_dim=2, horizon=16, cond_dim=132)

Configs are polymorphic through ``DenoiserConfig.variants``: their dicts carry ``"type"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from robopolicy.models.checks import ModelInputError, check_tensor


@dataclasses.dataclass
class DenoiserConfig:
    """Base of every denoiser config; each network's config subclasses it and registers."""

    variants: ClassVar[dict[str, type[DenoiserConfig]]] = {}


class Denoiser(nn.Module):
    """Base of every denoiser: checks inputs, then :meth:`denoise` does the work."""

    type_name: ClassVar[str]
    config_class: ClassVar[type[DenoiserConfig]]

    def __init__(self, *, action_dim: int, horizon: int, cond_dim: int) -> None:
        super().__init__()
        if action_dim < 1 or horizon < 1 or cond_dim < 0:
            raise ValueError(
                f"need action_dim >= 1, horizon >= 1, cond_dim >= 0; "
                f"got {action_dim}, {horizon}, {cond_dim}"
            )
        self.action_dim, self.horizon, self.cond_dim = action_dim, horizon, cond_dim

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None) -> Tensor:
        """(B, Tp, Da), (B,) or (), (B, Dc) -> (B, Tp, Da)."""
        check_tensor("x", x, (None, self.horizon, self.action_dim), floating=True)
        batch = x.shape[0]
        if not isinstance(t, Tensor):
            t = torch.tensor(float(t), device=x.device)
        if t.ndim == 0:
            t = t.expand(batch)
        check_tensor("t", t, (batch,))
        t = t.to(x.dtype)
        if cond is None:
            if self.cond_dim:
                raise ModelInputError(f"cond is None but the denoiser expects (B, {self.cond_dim})")
            cond = x.new_zeros(batch, 0)
        check_tensor("cond", cond, (batch, self.cond_dim), floating=True)
        return self.denoise(x, t, cond)

    def denoise(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The network proper, on checked inputs: (B, Tp, Da), (B,), (B, Dc) -> (B, Tp, Da)."""
        raise NotImplementedError


DENOISERS: dict[str, type[Denoiser]] = {}


def register_denoiser(name: str, config: type[DenoiserConfig]) -> Callable[[type], type]:
    """Class decorator: the denoiser class and its config become type ``name``."""

    def decorate(cls: type[Denoiser]) -> type[Denoiser]:
        if name in DENOISERS:
            raise ValueError(f"denoiser {name!r} registered twice")
        DENOISERS[name] = cls
        DenoiserConfig.variants[name] = config
        cls.type_name, cls.config_class = name, config
        return cls

    return decorate


def build_denoiser(
    config: DenoiserConfig, *, action_dim: int, horizon: int, cond_dim: int
) -> Denoiser:
    """The registered network for ``config`` (its class picks the type), sized for the task."""
    for cls in DENOISERS.values():
        if type(config) is cls.config_class:
            return cls(config, action_dim=action_dim, horizon=horizon, cond_dim=cond_dim)
    raise ValueError(
        f"no denoiser registered for {type(config).__name__} (registered: {sorted(DENOISERS)})"
    )

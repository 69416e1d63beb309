"""Timestep embeddings shared by every denoiser.

**Timestep scale.** Denoisers take a float timestep ``t`` of shape (B,) and the policy picks its
scale. The sinusoidal embedding below uses frequencies from 1 down to ~1/``max_period`` radians per
unit of ``t``, so it resolves values on a 0..1000 scale well at both ends:

- diffusion passes integer step indices ``0..K-1`` as floats (adjacent steps differ by 1 rad in
  the fastest channel);
- flow matching passes ``t`` in [0, 1] multiplied by ~1000. Unscaled [0, 1] times still work but
  only the fastest few channels move, so the network sees a poorly resolved time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """(B,) float timesteps -> (B, dim): ``[sin(t·f_i), cos(t·f_i)]``, ``f_i = P^(-i/half)``.

    ``P`` is ``max_period``; ``i`` runs over ``0 .. dim/2 - 1``.

    ``dim`` must be even. Integer ``t`` is cast to float32; float ``t`` keeps its dtype.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
    if not t.is_floating_point():
        t = t.float()
    half = dim // 2
    exponent = torch.arange(half, device=t.device, dtype=t.dtype) * (-math.log(max_period) / half)
    angles = t[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of ``t`` followed by a small MLP: (B,) -> (B, out_dim).

    Diffusion Policy's UNet uses ``hidden = 4·dim``; DPPO's MLP uses ``hidden = 2·dim``.
    """

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 2, got {dim}")
        self.dim = dim
        self.out_dim = out_dim or dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Mish(), nn.Linear(hidden, self.out_dim))

    def forward(self, t: Tensor) -> Tensor:
        """(B,) -> (B, out_dim), in the dtype of the MLP's weights."""
        emb = sinusoidal_embedding(t, self.dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))

"""A small transformer denoiser in the spirit of Diffusion Policy's time-series transformer.

Tokens are the Tp action steps (a linear embedding plus a learned position embedding). They
attend to each other (causally when ``causal``: step i sees steps <= i, as Diffusion Policy's
default) and, by cross-attention, to a short memory: one timestep token (sinusoidal embedding and
MLP) and, when Dc > 0, one conditioning token (a linear map of ``cond``), each with a learned
position, refined by a small MLP. Pre-norm decoder layers with GELU; a final LayerNorm and linear
head map each token back to Da numbers.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from robopolicy.models.denoisers import Denoiser, DenoiserConfig, register_denoiser
from robopolicy.models.embeddings import TimeEmbedding

MAX_LAYERS = 1024
"""Bound on ``n_layers``: a checkpoint's config is built before its weights are compared."""


@dataclasses.dataclass
class TransformerDenoiserConfig(DenoiserConfig):
    """Sizes of :class:`TransformerDenoiser`."""

    d_model: int = 128
    """Token width (even; divisible by ``n_heads``)."""
    n_heads: int = 4
    """Attention heads per layer."""
    n_layers: int = 4
    """Decoder layers (self-attention, cross-attention to the memory, feed-forward)."""
    ff_mult: int = 4
    """Feed-forward width as a multiple of ``d_model``."""
    dropout: float = 0.1
    """Dropout in attention and feed-forward (training only)."""
    causal: bool = True
    """Causal self-attention over the action steps (each step sees itself and earlier ones)."""

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "n_layers", "ff_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_layers > MAX_LAYERS:
            raise ValueError(f"n_layers must be <= {MAX_LAYERS}, got {self.n_layers}")
        if self.d_model % 2 or self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be even and divisible by n_heads ({self.n_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@register_denoiser("transformer", TransformerDenoiserConfig)
class TransformerDenoiser(Denoiser):
    """Transformer denoiser: (B, Tp, Da), (B,), (B, Dc) -> (B, Tp, Da)."""

    def __init__(
        self, config: TransformerDenoiserConfig, *, action_dim: int, horizon: int, cond_dim: int
    ) -> None:
        super().__init__(action_dim=action_dim, horizon=horizon, cond_dim=cond_dim)
        self.config = c = config
        d = c.d_model
        self.action_embed = nn.Linear(action_dim, d)
        self.action_pos = nn.Parameter(torch.randn(1, horizon, d) * 0.02)
        self.time_embed = TimeEmbedding(d, 4 * d)
        self.cond_embed = nn.Linear(cond_dim, d) if cond_dim else None
        n_memory = 2 if cond_dim else 1
        self.memory_pos = nn.Parameter(torch.randn(1, n_memory, d) * 0.02)
        self.memory_mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d))
        layer = nn.TransformerDecoderLayer(
            d,
            c.n_heads,
            c.ff_mult * d,
            c.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, c.n_layers)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, action_dim)
        mask = torch.triu(torch.ones(horizon, horizon, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", mask if c.causal else None, persistent=False)

    def denoise(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        tokens = self.action_embed(x) + self.action_pos
        memory = [self.time_embed(t)]
        if self.cond_embed is not None:
            memory.append(self.cond_embed(cond))
        mem = self.memory_mlp(torch.stack(memory, dim=1) + self.memory_pos)
        h = self.decoder(
            tokens,
            mem,
            tgt_mask=self.causal_mask,
            tgt_is_causal=self.causal_mask is not None,
        )
        return self.head(self.norm(h))

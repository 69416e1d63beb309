"""DPPO's MLP denoiser (Ren et al., 2024) and the MLP pieces other networks share.

The chunk is flattened, joined with a timestep embedding (a small MLP on the sinusoidal one) and
the conditioning vector, and mapped back to ``Tp·Da`` numbers by either

- a residual MLP (DPPO's default): a linear map to the hidden width, then pre-activation residual
  blocks of two linear layers each (``[LayerNorm] -> act -> Linear``, twice, plus the input; with
  ``dropout`` the second linear layer's input is dropped out, as in DDPM's residual blocks), then
  a linear output. ``hidden_dims`` must then be equal widths and odd in number:
  ``(512, 512, 512)`` is the input layer and one residual block, as DPPO's gym and robomimic
  configurations use; or
- a plain MLP: ``Linear -> [LayerNorm] -> act`` per hidden width, then a linear output.

DPPO's gym configurations use ``activation="relu"``, its robomimic ones the default Mish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from robopolicy.models.denoisers import Denoiser, DenoiserConfig, register_denoiser
from robopolicy.models.embeddings import TimeEmbedding

Activation = Literal["mish", "relu", "gelu", "silu", "tanh", "elu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "mish": nn.Mish,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def make_mlp(
    in_dim: int,
    hidden_dims: Sequence[int],
    out_dim: int | None,
    *,
    activation: str = "mish",
    layer_norm: bool = False,
) -> nn.Sequential:
    """``Linear -> [LayerNorm] -> act`` per hidden width, then ``Linear`` to ``out_dim`` if given.

    (B, in_dim) -> (B, out_dim), or (B, hidden_dims[-1]) with ``out_dim=None``.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(ACTIVATIONS[activation]())
        width = hidden
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: (B, D) -> (B, D), ``x + f(x)`` with two linear layers."""

    def __init__(self, dim: int, activation: str, layer_norm: bool, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for second in (False, True):
            if layer_norm:
                layers.append(nn.LayerNorm(dim, eps=1e-6))
            layers.append(ACTIVATIONS[activation]())
            if second and dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(dim, dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@dataclasses.dataclass
class MLPDenoiserConfig(DenoiserConfig):
    """Sizes of :class:`MLPDenoiser`."""

    hidden_dims: tuple[int, ...] = (512, 512, 512)
    """Hidden widths; with ``residual`` all equal and odd in number (input layer + 2 per block)."""
    time_embed_dim: int = 16
    """Size of the timestep embedding (even); its MLP is 2x as wide, as in DPPO."""
    residual: bool = True
    """Residual blocks (DPPO's ``residual_style``) or a plain MLP."""
    layer_norm: bool = False
    """LayerNorm before each activation (residual) or after each hidden linear layer (plain)."""
    activation: Activation = "mish"
    """Hidden activation: mish, relu, gelu, silu, tanh or elu."""
    dropout: float = 0.0
    """Dropout probability before the second linear layer of each residual block (residual MLP
    only), in [0, 1); 0 adds no module, so checkpoints without it keep their parameter names."""

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(d) for d in self.hidden_dims)
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        if self.residual and (len(set(self.hidden_dims)) != 1 or len(self.hidden_dims) % 2 == 0):
            raise ValueError(
                f"a residual MLP needs an odd number of equal hidden widths, e.g. (512, 512, 512); "
                f"got {self.hidden_dims} (or set residual=False)"
            )
        if self.time_embed_dim < 2 or self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim must be even and >= 2, got {self.time_embed_dim}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dropout and not self.residual:
            raise ValueError("dropout applies to the residual MLP only (residual=True)")


@register_denoiser("mlp", MLPDenoiserConfig)
class MLPDenoiser(Denoiser):
    """Flattened-chunk MLP denoiser: (B, Tp, Da), (B,), (B, Dc) -> (B, Tp, Da)."""

    def __init__(
        self, config: MLPDenoiserConfig, *, action_dim: int, horizon: int, cond_dim: int
    ) -> None:
        super().__init__(action_dim=action_dim, horizon=horizon, cond_dim=cond_dim)
        self.config = c = config
        self.time_embed = TimeEmbedding(c.time_embed_dim, 2 * c.time_embed_dim)
        in_dim = horizon * action_dim + c.time_embed_dim + cond_dim
        out_dim = horizon * action_dim
        if c.residual:
            width, n_blocks = c.hidden_dims[0], (len(c.hidden_dims) - 1) // 2
            self.net = nn.Sequential(
                nn.Linear(in_dim, width),
                *(
                    ResidualBlock(width, c.activation, c.layer_norm, c.dropout)
                    for _ in range(n_blocks)
                ),
                nn.Linear(width, out_dim),
            )
        else:
            self.net = make_mlp(
                in_dim, c.hidden_dims, out_dim, activation=c.activation, layer_norm=c.layer_norm
            )

    def denoise(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        flat = torch.cat([x.flatten(1), self.time_embed(t), cond], dim=-1)
        return self.net(flat).view_as(x)

"""Diffusion Policy's conditional 1-D UNet (Chi et al., 2023) over the horizon axis.

Each residual block is two ``Conv1d -> GroupNorm -> Mish`` layers with FiLM between them: a linear
map of ``[time embedding, cond]`` gives a per-channel scale and bias (or only a bias). The down
path halves the horizon between levels (a stride-2 conv), a two-block middle runs at the coarsest
level, and the up path doubles it back (a transposed conv) with a skip connection from the down
path at each level. A horizon that is not a multiple of ``2**(len(down_dims) - 1)`` is padded at
its end by repeating the last step and the output is cropped back, so any Tp works.

Parameter counts (Da=2, Dc=40, ``cond_predict_scale=True``; they equal those of the reference
``ConditionalUnet1D`` for the same settings):

    down_dims          kernel 3   kernel 5   time_embed_dim
    (32, 64, 128)       0.74M                 32
    (32, 64, 128)       1.04M      1.39M     128
    (64, 128, 256)      3.14M      4.56M     128
    (256, 512, 1024)              65.8M      256   Diffusion Policy's low-dim Push-T net
    (512, 1024, 2048)  158M      249M        128   its image nets (Dc larger there)
"""

from __future__ import annotations

import dataclasses
import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robopolicy.models.denoisers import Denoiser, DenoiserConfig, register_denoiser
from robopolicy.models.embeddings import TimeEmbedding


@dataclasses.dataclass
class UNet1DConfig(DenoiserConfig):
    """Sizes of :class:`ConditionalUNet1D`."""

    down_dims: tuple[int, ...] = (256, 512, 1024)
    """Channels per level, finest first; the horizon halves between consecutive levels."""
    kernel_size: int = 5
    """Temporal kernel of every residual conv (odd)."""
    n_groups: int = 8
    """GroupNorm groups; every entry of ``down_dims`` must be divisible by it."""
    time_embed_dim: int = 128
    """Size of the timestep embedding (even); its MLP is 4x as wide."""
    cond_predict_scale: bool = True
    """FiLM with a per-channel scale and bias (True) or only a bias (False)."""

    def __post_init__(self) -> None:
        self.down_dims = tuple(int(d) for d in self.down_dims)
        if not self.down_dims or min(self.down_dims) < 1:
            raise ValueError(f"down_dims must be positive channel counts, got {self.down_dims}")
        if self.n_groups < 1 or any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"every down_dims entry must be divisible by n_groups={self.n_groups}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.time_embed_dim < 2 or self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim must be even and >= 2, got {self.time_embed_dim}")


def conv_norm_mish(c_in: int, c_out: int, kernel: int, groups: int) -> nn.Sequential:
    """(B, c_in, T) -> (B, c_out, T): same-padded conv, GroupNorm, Mish."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), nn.Mish()
    )


class FiLMResidualBlock(nn.Module):
    """(B, c_in, T), (B, film_dim) -> (B, c_out, T); FiLM acts between the two convs."""

    def __init__(
        self, c_in: int, c_out: int, film_dim: int, kernel: int, groups: int, scale: bool
    ) -> None:
        super().__init__()
        self.conv1 = conv_norm_mish(c_in, c_out, kernel, groups)
        self.conv2 = conv_norm_mish(c_out, c_out, kernel, groups)
        self.scale = scale
        self.film = nn.Sequential(nn.Mish(), nn.Linear(film_dim, c_out * (2 if scale else 1)))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, film: Tensor) -> Tensor:
        h = self.conv1(x)
        mod = self.film(film).unsqueeze(-1)
        if self.scale:
            gain, bias = mod.chunk(2, dim=1)
            h = h * gain + bias
        else:
            h = h + mod
        return self.conv2(h) + self.skip(x)


@register_denoiser("unet1d", UNet1DConfig)
class ConditionalUNet1D(Denoiser):
    """Conditional 1-D UNet denoiser: (B, Tp, Da), (B,), (B, Dc) -> (B, Tp, Da)."""

    def __init__(
        self, config: UNet1DConfig, *, action_dim: int, horizon: int, cond_dim: int
    ) -> None:
        super().__init__(action_dim=action_dim, horizon=horizon, cond_dim=cond_dim)
        self.config = config
        c = config
        ted = c.time_embed_dim
        self.time_embed = TimeEmbedding(ted, 4 * ted)
        film = ted + cond_dim

        def block(c_in: int, c_out: int) -> FiLMResidualBlock:
            return FiLMResidualBlock(
                c_in, c_out, film, c.kernel_size, c.n_groups, c.cond_predict_scale
            )

        dims = (action_dim, *c.down_dims)
        pairs = list(itertools.pairwise(dims))
        self.down = nn.ModuleList()
        for level, (c_in, c_out) in enumerate(pairs):
            last = level == len(pairs) - 1
            resample = nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1)
            self.down.append(nn.ModuleList([block(c_in, c_out), block(c_out, c_out), resample]))
        self.mid = nn.ModuleList([block(dims[-1], dims[-1]), block(dims[-1], dims[-1])])
        self.up = nn.ModuleList()
        for c_out, c_in in reversed(pairs[1:]):  # c_in: this level's channels; c_out: finer one's
            upsample = nn.ConvTranspose1d(c_out, c_out, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([block(2 * c_in, c_out), block(c_out, c_out), upsample]))
        first = c.down_dims[0]
        self.head = nn.Sequential(
            conv_norm_mish(first, first, c.kernel_size, c.n_groups), nn.Conv1d(first, action_dim, 1)
        )
        self.multiple = 2 ** (len(pairs) - 1)

    def denoise(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        film = torch.cat([self.time_embed(t), cond], dim=-1)
        h = x.transpose(1, 2)  # (B, Da, Tp)
        pad = -self.horizon % self.multiple
        if pad:
            h = F.pad(h, (0, pad), mode="replicate")
        skips = []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, film), film)
            skips.append(h)
            h = downsample(h)
        for res in self.mid:
            h = res(h, film)
        for res1, res2, upsample in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = upsample(res2(res1(h, film), film))
        return self.head(h)[..., : self.horizon].transpose(1, 2)

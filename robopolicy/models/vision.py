"""The image backbone, written in plain torch: a ResNet-18-style trunk with GroupNorm, a
spatial-softmax keypoint head, and the crops used for augmentation.

As in Diffusion Policy: BatchNorm is replaced by GroupNorm with one group per 16 channels (batch
statistics interact badly with EMA weights and tiny batches), the global average pool and
classifier are replaced by a spatial softmax (Finn et al. 2016; robomimic's ``SpatialSoftmax``)
whose learned keypoints' expected image coordinates feed a linear layer, and images are randomly
cropped in training and center-cropped in evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, group_size: int) -> nn.GroupNorm:
    """GroupNorm with ``channels // group_size`` groups (at least one)."""
    groups = max(1, channels // group_size)
    if channels % groups:
        raise ValueError(f"{channels} channels do not split into {groups} groups")
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """ResNet basic block: (N, c_in, H, W) -> (N, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int, group_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(c_out, group_size)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = group_norm(c_out, group_size)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), group_norm(c_out, group_size)
            )

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(h)) + self.shortcut(x))


class ResNet18GN(nn.Module):
    """ResNet-18 trunk (blocks [2, 2, 2, 2], widths w, 2w, 4w, 8w) with GroupNorm.

    (N, 3, H, W) float -> (N, 8w, ~H/32, ~W/32): 84x84 gives a 3x3 map, 96x96 a 3x3 map.
    ``width=64`` is torchvision's ResNet-18; 32 is a quarter of its compute for CPU training.
    """

    def __init__(self, width: int = 64, group_size: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
            group_norm(width, group_size),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, c_in = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            stages += [
                BasicBlock(c_in, c_out, stride, group_size),
                BasicBlock(c_out, c_out, 1, group_size),
            ]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.out_channels = 8 * width
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def output_size(height: int, width: int) -> tuple[int, int]:
        """Spatial size of the feature map for an input of ``height`` x ``width``."""
        for _ in range(5):  # stem conv, max pool, three strided stages: each halves, rounding up
            height, width = (height + 1) // 2, (width + 1) // 2
        return height, width

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


class SpatialSoftmax(nn.Module):
    """Learned keypoints: (N, C, H, W) -> (N, K, 2) expected (x, y) positions in [-1, 1].

    A 1x1 conv makes K heatmaps; a softmax over each map's H·W cells (divided by
    ``temperature``) weights a grid running from -1 to 1 along each axis.
    """

    def __init__(self, in_channels: int, num_keypoints: int, temperature: float = 1.0) -> None:
        super().__init__()
        self.keypoints = nn.Conv2d(in_channels, num_keypoints, 1)
        self.temperature = temperature

    def forward(self, features: Tensor) -> Tensor:
        heat = self.keypoints(features)
        n, k, h, w = heat.shape
        weights = torch.softmax(heat.reshape(n, k, h * w) / self.temperature, dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=heat.device, dtype=heat.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=heat.device, dtype=heat.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)  # (H·W, 2)
        return weights @ grid


class ImageFeatures(nn.Module):
    """Backbone, spatial softmax, linear: (N, 3, H, W) float -> (N, feature_dim)."""

    def __init__(self, width: int, group_size: int, num_keypoints: int, feature_dim: int) -> None:
        super().__init__()
        self.backbone = ResNet18GN(width, group_size)
        self.pool = SpatialSoftmax(self.backbone.out_channels, num_keypoints)
        self.proj = nn.Linear(2 * num_keypoints, feature_dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(self.pool(self.backbone(images)).flatten(1))


def center_crop(images: Tensor, height: int, width: int) -> Tensor:
    """(N, H, W, C) -> (N, height, width, C), the middle window (any dtype)."""
    top = (images.shape[1] - height) // 2
    left = (images.shape[2] - width) // 2
    return images[:, top : top + height, left : left + width]


def random_crop(images: Tensor, height: int, width: int) -> Tensor:
    """(N, H, W, C) -> (N, height, width, C), an independent uniform window per image.

    Draws from torch's global generator, so a seeded trainer gets the same crops.
    """
    n, h, w = images.shape[:3]
    top = torch.randint(0, h - height + 1, (n, 1, 1), device=images.device)
    left = torch.randint(0, w - width + 1, (n, 1, 1), device=images.device)
    rows = top + torch.arange(height, device=images.device)[None, :, None]
    cols = left + torch.arange(width, device=images.device)[None, None, :]
    index = torch.arange(n, device=images.device)[:, None, None]
    return images[index, rows, cols]

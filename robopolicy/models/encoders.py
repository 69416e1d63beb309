"""Observation encoders: low-dim state and camera images fused into one conditioning vector.

``ObsEncoder(config, lowdim_dim=Ds, image_shapes={key: (H, W, 3)}, n_obs_steps=To)`` maps

    lowdim: (B, To, Ds) float, already normalized (or None when Ds is 0)
    images: {key: (B, To, H, W, 3) uint8} for every key of ``image_shapes``

to ``(B, out_dim)``: the flattened low-dim history (optionally through an MLP), then for each
camera (in sorted key order) and each step its ``image_feature_dim`` features, concatenated.

Images: uint8 -> float in [0, 1] -> [-1, 1] (``image_norm="minus_one_one"``) or ImageNet mean/std
(``"imagenet"``, for backbones trained on ImageNet statistics); then a random ``crop_shape``
window per image in training mode and the center window in eval mode; then one
:class:`~robopolicy.models.vision.ImageFeatures` per camera (or one shared by all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from robopolicy.models.checks import ModelInputError, check_tensor
from robopolicy.models.mlp import make_mlp
from robopolicy.models.vision import (
    ImageFeatures,
    ResNet18GN,
    center_crop,
    group_norm,
    random_crop,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class ObsEncoderConfig:
    """How observations become the denoiser's conditioning vector."""

    lowdim_hidden_dims: tuple[int, ...] = ()
    """MLP widths (Mish after each) applied to the flattened low-dim history; () = flatten only."""
    image_feature_dim: int = 64
    """Features per camera and step, after the keypoint head's linear layer."""
    backbone_width: int = 32
    """Channels of the ResNet-18 stem (64 is the paper's ResNet-18; 32 is ~4x cheaper on CPU)."""
    group_size: int = 16
    """Channels per GroupNorm group in the backbone (Diffusion Policy: 16)."""
    num_keypoints: int = 32
    """Spatial-softmax keypoints per camera (robomimic and Diffusion Policy: 32)."""
    crop_shape: tuple[int, int] | None = (84, 84)
    """(height, width) of the crop (random in training, central in eval); None = no crop."""
    random_crop: bool = True
    """Random crops in training mode; False always takes the center crop."""
    image_norm: Literal["minus_one_one", "imagenet"] = "minus_one_one"
    """Pixel scaling after [0, 1]: to [-1, 1], or ImageNet mean and std per channel."""
    share_backbone: bool = False
    """One backbone and keypoint head for all cameras instead of one per camera."""

    def __post_init__(self) -> None:
        self.lowdim_hidden_dims = tuple(int(d) for d in self.lowdim_hidden_dims)
        if self.lowdim_hidden_dims and min(self.lowdim_hidden_dims) < 1:
            raise ValueError(f"lowdim_hidden_dims must be positive, got {self.lowdim_hidden_dims}")
        for name in ("image_feature_dim", "backbone_width", "group_size", "num_keypoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for mult in (1, 2, 4, 8):
            group_norm(mult * self.backbone_width, self.group_size)  # raises if groups don't fit
        if self.crop_shape is not None:
            self.crop_shape = (int(self.crop_shape[0]), int(self.crop_shape[1]))
            if min(self.crop_shape) < 1:
                raise ValueError(f"crop_shape must be positive, got {self.crop_shape}")
        if self.image_norm not in ("minus_one_one", "imagenet"):
            raise ValueError(
                f"image_norm must be 'minus_one_one' or 'imagenet', not {self.image_norm!r}"
            )


class ObsEncoder(nn.Module):
    """Low-dim history and camera images -> (B, out_dim) conditioning vector."""

    def __init__(
        self,
        config: ObsEncoderConfig,
        *,
        lowdim_dim: int,
        image_shapes: Mapping[str, tuple[int, int, int]],
        n_obs_steps: int,
    ) -> None:
        super().__init__()
        self.config = c = config
        if n_obs_steps < 1 or lowdim_dim < 0:
            raise ValueError(
                f"need n_obs_steps >= 1 and lowdim_dim >= 0, got {n_obs_steps}, {lowdim_dim}"
            )
        if not lowdim_dim and not image_shapes:
            raise ValueError("an observation encoder needs low-dim inputs or at least one camera")
        self.lowdim_dim, self.n_obs_steps = lowdim_dim, n_obs_steps
        self.camera_keys = tuple(sorted(image_shapes))
        self.image_shapes = {k: tuple(int(s) for s in image_shapes[k]) for k in self.camera_keys}
        for key, shape in self.image_shapes.items():
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"camera {key!r} has shape {shape}, want (H, W, 3)")
            seen = c.crop_shape or shape[:2]
            if seen[0] > shape[0] or seen[1] > shape[1]:
                raise ValueError(f"crop_shape {c.crop_shape} is larger than camera {key!r} {shape}")
            if min(ResNet18GN.output_size(*seen)) < 2:
                raise ValueError(
                    f"camera {key!r}: {seen[0]}x{seen[1]} pixels (after cropping) leave the "
                    f"backbone a 1-pixel map, on which keypoints carry no information; "
                    f"use at least 33x33"
                )
        self.lowdim_net = None
        lowdim_out = lowdim_dim * n_obs_steps
        if lowdim_dim and c.lowdim_hidden_dims:
            self.lowdim_net = make_mlp(lowdim_out, c.lowdim_hidden_dims, None)
            lowdim_out = c.lowdim_hidden_dims[-1]
        n_nets = min(1, len(self.camera_keys)) if c.share_backbone else len(self.camera_keys)
        self.cameras = nn.ModuleList(
            ImageFeatures(c.backbone_width, c.group_size, c.num_keypoints, c.image_feature_dim)
            for _ in range(n_nets)
        )
        scale = (
            (2.0, 2.0, 2.0)
            if c.image_norm == "minus_one_one"
            else tuple(1 / s for s in IMAGENET_STD)
        )
        shift = (0.5, 0.5, 0.5) if c.image_norm == "minus_one_one" else IMAGENET_MEAN
        self.register_buffer("pixel_shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.out_dim = lowdim_out + len(self.camera_keys) * n_obs_steps * c.image_feature_dim

    def forward(self, lowdim: Tensor | None, images: Mapping[str, Tensor] | None = None) -> Tensor:
        """(B, To, Ds) float or None, {key: (B, To, H, W, 3) uint8} -> (B, out_dim)."""
        images = images or {}
        parts, batch = [], None
        if self.lowdim_dim:
            check_tensor("lowdim", lowdim, (None, self.n_obs_steps, self.lowdim_dim), floating=True)
            batch = lowdim.shape[0]
            flat = lowdim.reshape(batch, -1)
            parts.append(flat if self.lowdim_net is None else self.lowdim_net(flat))
        elif lowdim is not None and lowdim.numel():
            raise ModelInputError("lowdim given but the encoder was built with lowdim_dim=0")
        unknown = set(images) - set(self.camera_keys)
        if unknown:
            raise ModelInputError(
                f"unexpected image keys {sorted(unknown)} (have {self.camera_keys})"
            )
        for i, key in enumerate(self.camera_keys):
            if key not in images:
                raise ModelInputError(f"images lack camera {key!r}")
            shape = (batch, self.n_obs_steps, *self.image_shapes[key])
            img = check_tensor(f"images[{key!r}]", images[key], shape, dtype=torch.uint8)
            batch = img.shape[0]
            net = self.cameras[0 if self.config.share_backbone else i]
            features = net(self.preprocess(img.flatten(0, 1)))  # (B·To, F)
            parts.append(features.reshape(batch, -1))
        return torch.cat(parts, dim=-1)

    def preprocess(self, images: Tensor) -> Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, h, w) float: crop, scale to [0, 1], normalize."""
        if self.config.crop_shape is not None:
            h, w = self.config.crop_shape
            crop = random_crop if self.training and self.config.random_crop else center_crop
            images = crop(images, h, w)
        dtype = self.pixel_scale.dtype
        x = images.permute(0, 3, 1, 2).to(dtype) / 255.0
        return (x - self.pixel_shift) * self.pixel_scale

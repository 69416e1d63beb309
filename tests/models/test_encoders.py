"""The observation encoder: shapes, crops, spatial softmax, GroupNorm only, uint8 images."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robopolicy.config import from_dict, to_dict
from robopolicy.models import ModelInputError, ObsEncoder, ObsEncoderConfig
from robopolicy.models.vision import SpatialSoftmax, center_crop, random_crop

TINY = ObsEncoderConfig(
    backbone_width=8, group_size=4, num_keypoints=4, image_feature_dim=6, crop_shape=(36, 36)
)
B, TO, DS, HW = 3, 2, 4, 40


def make(cameras: int, lowdim: bool, config: ObsEncoderConfig = TINY) -> ObsEncoder:
    torch.manual_seed(0)
    shapes = {f"image.cam{i}": (HW, HW, 3) for i in range(cameras)}
    return ObsEncoder(config, lowdim_dim=DS if lowdim else 0, image_shapes=shapes, n_obs_steps=TO)


def obs(cameras: int, lowdim: bool) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    images = {
        f"image.cam{i}": torch.randint(0, 256, (B, TO, HW, HW, 3), dtype=torch.uint8, generator=gen)
        for i in range(cameras)
    }
    return (torch.randn(B, TO, DS, generator=gen) if lowdim else None), images


@pytest.mark.parametrize(("cameras", "lowdim"), [(0, True), (1, False), (1, True), (2, True)])
def test_output_shape(cameras: int, lowdim: bool) -> None:
    enc = make(cameras, lowdim)
    out = enc(*obs(cameras, lowdim))
    want = (DS * TO if lowdim else 0) + cameras * TO * TINY.image_feature_dim
    assert out.shape == (B, want) and enc.out_dim == want
    assert torch.isfinite(out).all()


def test_nothing_to_encode_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs low-dim inputs or at least one camera"):
        make(0, False)


def test_lowdim_mlp_and_shared_backbone() -> None:
    config = from_dict(ObsEncoderConfig, {**to_dict(TINY), "lowdim_hidden_dims": [16]})
    assert make(2, True, config)(*obs(2, True)).shape == (B, 16 + 2 * TO * 6)
    shared = ObsEncoderConfig(**{**vars(TINY), "share_backbone": True})
    sizes = [sum(p.numel() for p in make(2, False, c).parameters()) for c in (TINY, shared)]
    assert sizes[0] == 2 * sizes[1]
    assert make(2, False, shared)(*obs(2, False)).shape == (B, 2 * TO * 6)


def test_random_crop_in_training_center_crop_in_eval() -> None:
    enc = make(1, False)
    lowdim, images = obs(1, False)
    enc.train()
    assert not torch.allclose(enc(lowdim, images), enc(lowdim, images))
    enc.eval()
    assert torch.equal(enc(lowdim, images), enc(lowdim, images))
    fixed = ObsEncoderConfig(**{**vars(TINY), "random_crop": False})
    enc = make(1, False, fixed).train()
    assert torch.equal(enc(lowdim, images), enc(lowdim, images))


def test_crops_are_windows_of_the_image() -> None:
    image = torch.arange(10 * 12).reshape(1, 10, 12, 1).expand(64, -1, -1, -1)
    assert torch.equal(center_crop(image, 6, 8)[0, :, :, 0], image[0, 2:8, 2:10, 0])
    crops = random_crop(image, 6, 8)
    assert crops.shape == (64, 6, 8, 1)
    tops, lefts = crops[:, 0, 0, 0] // 12, crops[:, 0, 0, 0] % 12
    assert tops.max() <= 4 and lefts.max() <= 4 and len(set(crops[:, 0, 0, 0].tolist())) > 1
    assert torch.equal(
        crops,
        torch.stack([image[0, y : y + 6, x : x + 8] for y, x in zip(tops, lefts, strict=True)]),
    )


def test_spatial_softmax_keypoints_lie_in_the_unit_square() -> None:
    pool = SpatialSoftmax(in_channels=5, num_keypoints=7)
    points = pool(torch.randn(4, 5, 3, 6) * 100)
    assert points.shape == (4, 7, 2) and points.abs().max() <= 1.0 + 1e-6
    with torch.no_grad():
        pool.keypoints.weight.fill_(1.0)
        pool.keypoints.bias.zero_()
    peak = torch.full((1, 5, 3, 6), -50.0)
    peak[..., 0, -1] = 50.0  # top-right cell
    torch.testing.assert_close(pool(peak)[0, 0], torch.tensor([1.0, -1.0]))


def test_group_norm_only() -> None:
    enc = make(2, True)
    modules = list(enc.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
    assert any(isinstance(m, nn.GroupNorm) for m in modules)


def test_images_must_be_uint8_with_the_declared_shape() -> None:
    enc = make(1, True)
    lowdim, images = obs(1, True)
    with pytest.raises(ModelInputError, match="uint8"):
        enc(lowdim, {"image.cam0": images["image.cam0"].float() / 255})
    with pytest.raises(ModelInputError, match="has shape"):
        enc(lowdim, {"image.cam0": images["image.cam0"][:, :, :16]})
    with pytest.raises(ModelInputError, match="lack camera"):
        enc(lowdim, {})
    with pytest.raises(ModelInputError, match="lowdim has shape"):
        enc(lowdim[:, :1], images)


def test_gradients_reach_every_parameter_and_imagenet_norm_runs() -> None:
    enc = make(1, True, ObsEncoderConfig(**{**vars(TINY), "image_norm": "imagenet"})).train()
    enc(*obs(1, True)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_crop_larger_than_image_is_an_error() -> None:
    with pytest.raises(ValueError, match="larger than camera"):
        make(1, False, ObsEncoderConfig(**{**vars(TINY), "crop_shape": (48, 48)}))
    with pytest.raises(ValueError, match="1-pixel map"):
        make(1, False, ObsEncoderConfig(**{**vars(TINY), "crop_shape": (32, 32)}))

"""Building policies: networks from a config, conditioning from observations, a policy from data.

- :func:`make_policy` is the trainer's one call: it reads the per-frame shapes from a
  :class:`~robopolicy.data.dataset.SequenceDataset`, fits the normalizer on its frames, builds
  the registered policy class of the config and describes its interface from the store.
- :func:`build_networks` and :func:`encode_observation` are what every denoising policy shares:
  an :class:`~robopolicy.models.encoders.ObsEncoder` and a denoiser sized from the config, and
  ``obs -> (B, Dc)`` (low-dim keys normalized and concatenated per step; images go to the
  encoder as uint8).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

import robopolicy.models.mlp
import robopolicy.models.transformer
import robopolicy.models.unet1d  # noqa: F401  (each network registers its config)
from robopolicy.data.normalize import Normalizer
from robopolicy.errors import DataError
from robopolicy.models.denoisers import Denoiser, DenoiserConfig, build_denoiser
from robopolicy.models.encoders import ObsEncoder, ObsEncoderConfig
from robopolicy.policies.base import POLICIES, Policy, PolicyConfig, load_policy_types
from robopolicy.policies.interface import Interface

if TYPE_CHECKING:
    from robopolicy.data.dataset import SequenceDataset

_WINDOW = ("obs_keys", "image_keys", "n_obs_steps", "horizon", "n_action_steps")


def make_policy(config: PolicyConfig, dataset: SequenceDataset) -> Policy:
    """A fresh policy of ``config``'s type for the data of ``dataset``.

    ``config.shapes`` is filled from the dataset (a non-empty one must agree with it) and the
    normalizer is fitted on every frame of the store (``config.normalizer_modes()``). The
    observation keys and window (To, Tp, Ta) of ``config`` and of the dataset must be the same.
    """
    data = dataset.config
    for name in _WINDOW:
        if tuple(_as_tuple(getattr(config, name))) != tuple(_as_tuple(getattr(data, name))):
            raise ValueError(
                f"policy {name}={getattr(config, name)!r} but the dataset has "
                f"{getattr(data, name)!r}; build the dataset from the policy config"
            )
    shapes = {k: tuple(dataset.arrays[k].shape[1:]) for k in (*data.obs_keys, *data.image_keys)}
    shapes["action"] = tuple(dataset.arrays[data.action_key].shape[1:])
    for key, shape in config.shapes.items():
        if key in shapes and tuple(shape) != shapes[key]:
            raise ValueError(f"config shape of {key!r} is {shape}, the data's {shapes[key]}")
    config = dataclasses.replace(config, shapes=shapes)
    arrays = dict(dataset.arrays)
    arrays["action"] = dataset.arrays[data.action_key]
    normalizer = Normalizer.fit(arrays, config.normalizer_modes(), source=dataset.path)
    features = {key: dataset.features[key] for key in (*data.obs_keys, *data.image_keys)}
    features["action"] = dataset.features[data.action_key]
    try:
        interface = Interface.from_data(config, fps=dataset.fps, features=features)
    except ValueError as exc:  # the store's sources or shapes
        raise DataError(dataset.path, f"cannot describe the policy's interface: {exc}") from None
    load_policy_types()
    for name, cls in PolicyConfig.variants.items():
        if type(config) is cls:
            policy = POLICIES[name](config, normalizer)
            policy.interface = interface
            return policy
    raise ValueError(f"{type(config).__name__} is not a registered policy config")


def build_networks(
    config: PolicyConfig, denoiser: DenoiserConfig, encoder: ObsEncoderConfig
) -> tuple[ObsEncoder, Denoiser]:
    """The observation encoder and the denoiser for ``config``'s shapes."""
    if not config.shapes:
        raise ValueError(
            "the policy config has no shapes yet; build it from data with "
            "robopolicy.policies.build.make_policy(config, dataset)"
        )
    obs_encoder = ObsEncoder(
        encoder,
        lowdim_dim=config.state_dim,
        image_shapes={k: config.shapes[k] for k in config.image_keys},
        n_obs_steps=config.n_obs_steps,
    )
    net = build_denoiser(
        denoiser,
        action_dim=config.action_dim,
        horizon=config.horizon,
        cond_dim=obs_encoder.out_dim,
    )
    return obs_encoder, net


def encode_observation(
    encoder: ObsEncoder, normalizer: Normalizer, config: PolicyConfig, obs: Mapping[str, Tensor]
) -> Tensor:
    """(B, Dc) conditioning of raw-unit ``obs`` (already checked against ``config``).

    Each low-dim key ``(B, To, *shape)`` is normalized, flattened per step and concatenated in
    ``obs_keys`` order to ``(B, To, Ds)`` float32; images pass as uint8 ``(B, To, H, W, 3)``.
    """
    device = next(encoder.buffers()).device  # the encoder always holds its pixel statistics
    if normalizer.device != device:
        normalizer.to(device)
    lowdim = None
    if config.obs_keys:
        parts = []
        for key in config.obs_keys:
            value = normalizer.normalize(obs[key].to(device), key)
            parts.append(value.reshape(*value.shape[:2], -1).to(torch.float32))
        lowdim = torch.cat(parts, dim=-1)
    images = {key: obs[key].to(device) for key in config.image_keys}
    return encoder(lowdim, images)


def _as_tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,)

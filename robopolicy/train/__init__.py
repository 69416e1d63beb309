"""Behaviour cloning: typed configs with named presets, the training loop, its checkpoints.

    from robopolicy.train import Trainer, get_preset
    config = get_preset("arm-push", policy="flow", data="push.zarr")
    Trainer(config, evaluate=None).fit("runs/push")     # resumable: fit(..., resume=True)

``robopolicy train`` (in ``apps/train.py``) is this with rollouts as the ``evaluate``
callback; this package never imports ``sim``. Names load on first use, so listing the presets
(:mod:`robopolicy.train.presets`) does not import torch.
"""

from __future__ import annotations

from robopolicy.lazy import lazy_exports

_NAMES = {
    "TrainConfig": "robopolicy.train.config",
    "Trainer": "robopolicy.train.trainer",
    "TrainResult": "robopolicy.train.trainer",
    "PRESETS": "robopolicy.train.presets",
    "get_preset": "robopolicy.train.presets",
}
__all__ = sorted(_NAMES)

__getattr__ = lazy_exports(__name__, _NAMES)

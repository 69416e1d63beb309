"""EMA of a policy's weights, with Diffusion Policy's decay warmup (``ema_model.py`` there).

After every optimizer step, update k (from 0) computes ``j = max(0, k - update_after_step - 1)``
and the decay ``d = clamp(1 - (1 + j / inv_gamma) ** -power, min_value, max_value)``, or 0 when
``j == 0``; then for each trained parameter ``ema = d * ema + (1 - d) * param``. Parameters
that are not trained, parameters of batch-norm layers and all buffers are copied as they are.
With ``inv_gamma = 1`` and ``power = 3/4`` the decay reaches 0.999 after about 10k updates.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robopolicy.train.config import EmaConfig


def ema_decay(update: int, config: EmaConfig) -> float:
    """The decay used by update number ``update`` (0 for the first)."""
    j = max(0, update - config.update_after_step - 1)
    if j <= 0:
        return 0.0
    value = 1.0 - (1.0 + j / config.inv_gamma) ** -config.power
    return max(config.min_value, min(value, config.max_value))


class Ema:
    """A frozen copy of ``model`` whose weights follow the model's by :func:`ema_decay`."""

    def __init__(self, model: nn.Module, config: EmaConfig) -> None:
        self.config = config
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0
        """Updates done so far (the ``optimization_step`` of Diffusion Policy's EMAModel)."""
        self.decay = 0.0
        """The decay of the last update."""

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the averaged weights towards ``model``'s (call after each optimizer step)."""
        self.decay = decay = ema_decay(self.updates, self.config)
        for module, averaged in zip(model.modules(), self.model.modules(), strict=True):
            params = zip(
                module.parameters(recurse=False), averaged.parameters(recurse=False), strict=True
            )
            for param, mean in params:
                if isinstance(module, _BatchNorm) or not param.requires_grad:
                    mean.copy_(param.detach())
                else:
                    mean.mul_(decay).add_(param.detach(), alpha=1.0 - decay)
            buffers = zip(
                module.buffers(recurse=False), averaged.buffers(recurse=False), strict=True
            )
            for buffer, copied in buffers:
                copied.copy_(buffer)
        self.updates += 1

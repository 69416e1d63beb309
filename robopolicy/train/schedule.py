"""Learning rate by step: linear warmup from 0 to the peak, then a half cosine (or constant).

The shape is diffusers' ``get_cosine_schedule_with_warmup`` that Diffusion Policy trains with,
written as a pure function of the step, so a resumed run needs no scheduler state::

    factor(s) = s / W                                          s < W
              = m + (1 - m) * (1 + cos(pi * (s - W) / (T - W))) / 2   W <= s <= T

with W warmup steps, T total steps and m the floor (``min_lr_ratio``). The rate applied at
optimizer step s (counted from 0) is ``lr * factor(s)``.
"""

from __future__ import annotations

import math

import torch

from robopolicy.train.config import ScheduleConfig


def lr_factor(step: int, total_steps: int, config: ScheduleConfig) -> float:
    """Multiplier of the peak rate at optimizer step ``step`` of a run of ``total_steps``."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    warmup = config.warmup_steps
    if step < warmup:
        return step / warmup
    if config.kind == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = config.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr

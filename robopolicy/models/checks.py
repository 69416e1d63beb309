"""The one shape and dtype check every network in :mod:`robopolicy.models` uses on its inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from robopolicy.errors import RobopolicyError


class ModelInputError(RobopolicyError, ValueError):
    """A tensor handed to a network whose shape or dtype does not fit it; the message names it."""


def check_tensor(
    name: str,
    value: object,
    shape: Sequence[int | None],
    *,
    dtype: torch.dtype | None = None,
    floating: bool = False,
) -> Tensor:
    """``value`` itself when it is a tensor of ``shape`` (``None`` = any size), else an error.

    ``dtype`` demands that exact dtype; ``floating`` demands any floating-point dtype.
    """
    if not isinstance(value, Tensor):
        raise ModelInputError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if value.ndim != len(shape) or any(
        s is not None and got != s for got, s in zip(value.shape, shape, strict=True)
    ):
        raise ModelInputError(f"{name} has shape {tuple(value.shape)}, want {want}")
    if dtype is not None and value.dtype != dtype:
        raise ModelInputError(f"{name} has dtype {value.dtype}, want {dtype}")
    if floating and not value.is_floating_point():
        raise ModelInputError(f"{name} has dtype {value.dtype}, want a floating-point dtype")
    return value

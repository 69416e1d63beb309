"""The Gaussian MLP policy's config. Defaults are cleanrl's ``ppo_continuous_action`` actor."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from robopolicy.policies.base import PolicyConfig

ACTIVATION_NAMES = ("tanh", "relu", "elu", "mish", "gelu", "silu")


@dataclasses.dataclass
class GaussianPolicyConfig(PolicyConfig):
    """A :class:`~robopolicy.policies.gaussian.model.GaussianPolicy` (type ``gaussian``).

    The window defaults to one observation and one action (To = Tp = Ta = 1); any To/Tp/Ta that
    :class:`PolicyConfig` accepts works, the chunk being one Gaussian over ``Tp * Da`` numbers.
    """

    n_obs_steps: int = 1
    """To: observation steps the MLP sees (flattened)."""
    horizon: int = 1
    """Tp: actions predicted per sample."""
    n_action_steps: int = 1
    """Ta: actions executed per chunk, from index ``To - 1``."""
    hidden_dims: tuple[int, ...] = (64, 64)
    """Hidden widths of the mean MLP."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu, mish, gelu or silu."""
    layer_norm: bool = False
    """LayerNorm after each hidden linear layer."""
    init_std: float = 1.0
    """Initial standard deviation, in normalized action units (cleanrl: 1)."""
    min_std: float = 1e-3
    """Lower bound of the standard deviation (normalized units)."""
    max_std: float = 2.0
    """Upper bound of the standard deviation (normalized units)."""
    bc_loss: Literal["mse", "nll"] = "mse"
    """Behaviour-cloning loss of :meth:`loss`: MSE of the mean, or the Gaussian negative
    log-likelihood (which also fits the standard deviation)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hidden_dims = tuple(int(d) for d in self.hidden_dims)
        if self.image_keys:
            raise ValueError("the gaussian policy takes low-dim observations only (image_keys=())")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(
                f"activation must be one of {ACTIVATION_NAMES}, got {self.activation!r}"
            )
        if not 0 < self.min_std <= self.init_std <= self.max_std or not math.isfinite(self.max_std):
            raise ValueError(
                f"need 0 < min_std <= init_std <= max_std < inf, got "
                f"{self.min_std}, {self.init_std}, {self.max_std}"
            )
        if self.bc_loss not in ("mse", "nll"):
            raise ValueError(f"bc_loss must be mse or nll, got {self.bc_loss!r}")

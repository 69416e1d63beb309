"""The steered policy's config: the frozen base policy's config and the latent actor's.

A steered policy (DSRL, Wagenmaker et al., 2025) is a base diffusion or flow policy, left as it
is, plus a small actor that picks the base's initial noise ``w`` (Tp, Da) from the observation.
Its window (To, Tp, Ta), observation keys, shapes and normalization are the base's: they are
copied from ``base`` by :meth:`SteeredConfig.around` and checked to agree when read from JSON.
"""

from __future__ import annotations

import dataclasses
import math

from robopolicy.models.mlp import ACTIVATIONS
from robopolicy.policies.base import PolicyConfig

_WINDOW = ("obs_keys", "image_keys", "n_obs_steps", "horizon", "n_action_steps", "shapes")


@dataclasses.dataclass
class LatentActorConfig:
    """The latent actor: an MLP from the normalized To-step observation to a tanh-squashed
    Gaussian over the flattened noise ``w`` (Tp * Da numbers). Defaults: DSRL's Gym configs
    (3 x 128, tanh, LayerNorm; its Robomimic configs use 3 x 2048)."""

    hidden_dims: tuple[int, ...] = (128, 128, 128)
    """Hidden widths of the trunk."""
    activation: str = "tanh"
    """Hidden activation (DSRL: tanh): mish, relu, gelu, silu, tanh or elu."""
    layer_norm: bool = True
    """LayerNorm after each hidden linear layer (DSRL: on, for the actor and the critics)."""
    noise_bound: float = 1.5
    """b: every latent is ``b * tanh(.)``, inside (-b, b) (DSRL's ``action_magnitude``: 1.5 on
    most tasks, 1.0 on Transport, 2.5 on Walker2d)."""

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(d) for d in self.hidden_dims)
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f"hidden_dims must be positive widths, got {self.hidden_dims}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        if not (self.noise_bound > 0 and math.isfinite(self.noise_bound)):
            raise ValueError(f"noise_bound must be positive and finite, got {self.noise_bound}")


@dataclasses.dataclass
class SteeredConfig(PolicyConfig):
    """A :class:`~robopolicy.policies.steered.model.SteeredPolicy` (type ``steered``)."""

    base: PolicyConfig | None = None
    """The frozen base policy's config (any registered type with a deterministic
    ``sample(obs, noise=...)``: diffusion, flow, gaussian; low-dim observations only)."""
    actor: LatentActorConfig = dataclasses.field(default_factory=LatentActorConfig)
    """The latent actor."""
    steps: int | None = None
    """k, the base's denoising steps per sample, of the deterministic sampler the actor was
    trained with (DDIM with eta 0, or the flow ODE); None: the base's own ``steps``. The same
    latent gives another chunk with another number of steps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base is None:
            raise ValueError("a steered policy needs its base policy's config (base)")
        if isinstance(self.base, SteeredConfig):
            raise ValueError("the base of a steered policy cannot itself be steered")
        if self.base.image_keys:
            raise ValueError("steered policies observe low-dim keys only (image_keys=())")
        for name in (*_WINDOW, "normalization"):
            mine, theirs = getattr(self, name), getattr(self.base, name)
            if mine != theirs:
                raise ValueError(f"{name}={mine!r} differs from the base's {theirs!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {self.steps}")

    @classmethod
    def around(
        cls,
        base: PolicyConfig,
        actor: LatentActorConfig | None = None,
        steps: int | None = None,
    ) -> SteeredConfig:
        """The config steering ``base`` (its window, keys, shapes and normalization copied) with
        ``steps`` of the base per sample."""
        window = {name: getattr(base, name) for name in (*_WINDOW, "normalization")}
        return cls(**window, base=base, actor=actor or LatentActorConfig(), steps=steps)

    def normalizer_modes(self) -> dict[str, str]:
        """The base's normalizer modes (the steered policy uses the base's normalizer)."""
        if self.base is None:
            raise ValueError("a steered policy needs its base policy's config (base)")
        return self.base.normalizer_modes()

    @property
    def latent_dim(self) -> int:
        """Tp * Da: the flattened latent's size."""
        return self.horizon * self.action_dim

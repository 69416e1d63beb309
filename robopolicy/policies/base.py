"""What every policy is: its config, its methods, its registry, and the one batch check.

Shapes (``docs/DESIGN.md``): B batch, To observation steps, Tp predicted steps, Ta executed
steps (Ta <= Tp - To + 1), Da action size, K denoising steps.

- ``sample(obs, *, noise=None, steps=None) -> (B, Tp, Da)`` actions in raw units, from
  ``obs = {"state": (B, To, Ds), "image.<cam>": (B, To, H, W, 3) uint8, ...}`` in raw units.
  Given ``noise`` (B, Tp, Da) it is deterministic. Action ``To - 1`` of the chunk is due "now";
  executors run ``[To - 1, To - 1 + Ta)``.
- ``loss(batch) -> ()`` for behaviour cloning, ``batch = {"obs": {...}, "action": (B, Tp, Da)}``
  as :class:`robopolicy.data.dataset.SequenceDataset` serves it (raw units).
- ``set_sampler(sampler, steps=...)``: the sampler ``sample`` runs, chosen after loading; a
  policy without one (Gaussian, steered) refuses any choice.

A policy that denoises (diffusion, flow) is also a :class:`DenoisingPolicy` (with a
:class:`SamplerConfig`): the inference engine runs those parts on its own backends
(:mod:`robopolicy.inference.engine`) and checks for them with ``isinstance``.

Normalization lives inside the policy: its :class:`~robopolicy.data.normalize.Normalizer` is
fitted on the training data and travels in the checkpoint. So does its ``interface``
(:class:`~robopolicy.policies.interface.Interface`): what it observes and does, in what units,
from which sources, at what fps.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from robopolicy.data.normalize import Normalizer
from robopolicy.errors import RobopolicyError
from robopolicy.policies.interface import Interface

if TYPE_CHECKING:
    from robopolicy.models.denoisers import Denoiser
    from robopolicy.models.encoders import ObsEncoder
    from robopolicy.sampling.processes import Process

Obs = Mapping[str, Tensor]
IMAGE_PREFIX = "image."


class BatchError(RobopolicyError):
    """A batch or observation whose keys or shapes do not fit the policy."""


@dataclasses.dataclass
class PolicyConfig:
    """Fields every policy shares; each policy type subclasses it and registers as a variant."""

    variants: ClassVar[dict[str, type[PolicyConfig]]] = {}

    obs_keys: tuple[str, ...] = ("state",)
    """Low-dimensional observation keys, concatenated (after normalization) per step."""
    image_keys: tuple[str, ...] = ()
    """Camera keys (``image.<camera>`` or a store's own name such as Push-T's ``img``)."""
    n_obs_steps: int = 2
    """To: observation steps the policy conditions on, ending at "now"."""
    horizon: int = 16
    """Tp: actions predicted per sample (the chunk)."""
    n_action_steps: int = 8
    """Ta: actions executed per chunk, starting at "now"."""
    shapes: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    """Per-frame shape of every observation key and of ``action``, read from the data."""
    normalization: dict[str, str] = dataclasses.field(default_factory=dict)
    """Key -> ``min_max`` | ``mean_std`` | ``identity``; low-dim keys and ``action`` default to
    ``min_max`` (images are scaled to [-1, 1] by their encoder, not by the normalizer)."""

    def __post_init__(self) -> None:
        self.obs_keys, self.image_keys = tuple(self.obs_keys), tuple(self.image_keys)
        self.shapes = {k: tuple(int(d) for d in v) for k, v in self.shapes.items()}
        if not self.obs_keys and not self.image_keys:
            raise ValueError("a policy needs at least one observation key")
        for name in ("n_obs_steps", "horizon", "n_action_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_obs_steps > self.horizon:
            raise ValueError(f"n_obs_steps ({self.n_obs_steps}) > horizon ({self.horizon})")
        if self.n_action_steps > self.horizon - self.n_obs_steps + 1:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be <= horizon - n_obs_steps + 1 "
                f"({self.horizon - self.n_obs_steps + 1})"
            )
        missing = [k for k in (*self.obs_keys, *self.image_keys, "action") if k not in self.shapes]
        if self.shapes and missing:
            raise ValueError(f"shapes lacks {missing}")
        for key in self.image_keys:
            if key in self.shapes and len(self.shapes[key]) != 3:
                raise ValueError(f"image key {key!r} has shape {self.shapes[key]}, not (H, W, C)")

    @property
    def action_dim(self) -> int:
        """Da, from ``shapes["action"]``."""
        if "action" not in self.shapes:
            raise ValueError("the config has no action shape yet (shapes is empty)")
        return int(torch.Size(self.shapes["action"]).numel())

    @property
    def state_dim(self) -> int:
        """Size of the low-dim observation of one step (all ``obs_keys`` concatenated)."""
        return sum(int(torch.Size(self.shapes[k]).numel()) for k in self.obs_keys)

    def normalizer_modes(self) -> dict[str, str]:
        """Mode per normalized key: the low-dim keys and ``action``."""
        return {k: self.normalization.get(k, "min_max") for k in (*self.obs_keys, "action")}


POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str, config: type[PolicyConfig]) -> Callable[[type], type]:
    """Class decorator: the policy class and its config become type ``name``."""

    def decorate(cls: type[Policy]) -> type[Policy]:
        if name in POLICIES:
            raise ValueError(f"policy {name!r} registered twice")
        POLICIES[name] = cls
        PolicyConfig.variants[name] = config
        cls.type_name = name
        cls.config_class = config
        return cls

    return decorate


def load_policy_types() -> dict[str, type[Policy]]:
    """Import every policy package under :mod:`robopolicy.policies` (each registers itself)."""
    import robopolicy.policies

    for module in pkgutil.iter_modules(robopolicy.policies.__path__):
        if module.ispkg:
            importlib.import_module(f"robopolicy.policies.{module.name}")
    return POLICIES


class Policy(nn.Module):
    """Base class of every policy; subclasses implement :meth:`sample` and :meth:`loss`."""

    type_name: ClassVar[str]
    config_class: ClassVar[type[PolicyConfig]]

    def __init__(self, config: PolicyConfig, normalizer: Normalizer) -> None:
        super().__init__()
        missing = set(config.normalizer_modes()) - set(normalizer.keys)
        if missing:
            raise BatchError(f"normalizer has no statistics for {sorted(missing)}")
        self.config = config
        self.normalizer = normalizer
        self._interface: Interface | None = None

    @property
    def interface(self) -> Interface:
        """What the policy observes and does, with units, sources and fps (``docs/DESIGN.md``,
        "Checkpoint"): as built from data or loaded with the checkpoint; else what the config
        alone tells (sources unknown)."""
        if self._interface is None:
            return Interface.from_config(self.config)
        return self._interface

    @interface.setter
    def interface(self, interface: Interface) -> None:
        """Describe the policy by ``interface``; a ValueError where it disagrees with the
        config."""
        interface.check_fits(self.config)
        self._interface = interface

    def sample(self, obs: Obs, *, noise: Tensor | None = None, steps: int | None = None) -> Tensor:
        """(B, Tp, Da) actions in raw units; deterministic when ``noise`` is given."""
        raise NotImplementedError

    def loss(self, batch: Mapping[str, Any]) -> Tensor:
        """Scalar behaviour-cloning loss on a raw-unit batch."""
        raise NotImplementedError

    def set_sampler(self, sampler: str | None = None, *, steps: int | None = None) -> None:
        """Sample with ``sampler`` (None: the policy's own) for ``steps`` steps (None: its own),
        e.g. right after ``load_policy``; a ValueError for a sampler that is not its family's,
        or for any choice where the policy has no sampler (here: Gaussian, steered)."""
        if sampler is not None or steps is not None:
            raise ValueError(f"a {self.type_name} policy has no sampler to choose")

    def to_actions(self, x: Tensor) -> Tensor:
        """Raw-unit actions (B, T, Da) from a sampled chunk in normalized units (every sampler's
        last step, the policy's own and the inference engine's)."""
        return self.normalizer.unnormalize(x, "action")

    def reset(self, done: Any = None) -> None:
        """Forget state carried between calls (e.g. a warm-start chunk): that of the rows where
        ``done`` (B,) bool is True (their episodes ended), or all when None; stateless by
        default."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_obs(self, obs: Obs) -> int:
        """Check ``obs`` against the config; return B. BatchError names the key and shapes."""
        c = self.config
        batch = None
        for key in (*c.obs_keys, *c.image_keys):
            if key not in obs:
                raise BatchError(f"observation lacks {key!r} (has {sorted(obs)})")
            value = obs[key]
            want = (c.n_obs_steps, *c.shapes[key])
            if value.ndim != len(want) + 1 or tuple(value.shape[1:]) != want:
                raise BatchError(f"obs[{key!r}] has shape {tuple(value.shape)}, want (B, *{want})")
            if batch is None:
                batch = value.shape[0]
            elif value.shape[0] != batch:
                raise BatchError(f"obs[{key!r}] has batch {value.shape[0]}, others {batch}")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise BatchError(f"obs[{key!r}] has NaN or inf")
        return int(batch)

    def check_noise(self, noise: Tensor, batch: int) -> None:
        want = (batch, self.config.horizon, self.config.action_dim)
        if tuple(noise.shape) != want:
            raise BatchError(f"noise has shape {tuple(noise.shape)}, want {want}")

    def check_batch(self, batch: Mapping[str, Any]) -> int:
        """Check a training batch (``obs`` and ``action``); return B."""
        if "obs" not in batch or "action" not in batch:
            raise BatchError(f"a batch needs 'obs' and 'action', got {sorted(batch)}")
        size = self.check_obs(batch["obs"])
        action = batch["action"]
        want = (size, self.config.horizon, self.config.action_dim)
        if tuple(action.shape) != want:
            raise BatchError(f"action has shape {tuple(action.shape)}, want {want}")
        return size


class SamplerConfig(Protocol):
    """The config of a :class:`DenoisingPolicy`: the sampler its ``sample`` runs and how long."""

    sampler: str
    """A registered sampler of the policy's family (:mod:`robopolicy.sampling.samplers`)."""
    steps: int
    """k: the sampler's steps per sample."""


@runtime_checkable
class EtaConfig(Protocol):
    """A sampler config with DDIM's noise scale (diffusion)."""

    eta: float
    """0 deterministic, 1 DDPM's posterior variance."""


@runtime_checkable
class DenoisingPolicy(Protocol):
    """A :class:`Policy` that samples by denoising a chunk with a registered sampler (diffusion,
    flow): what the inference engine runs itself, the sampler calling the denoiser on a backend
    of its own (:mod:`robopolicy.inference.engine`)."""

    config: SamplerConfig
    """Its config (a :class:`PolicyConfig` too)."""
    process: Process
    """The noise process its samplers walk (:mod:`robopolicy.sampling.processes`)."""
    encoder: ObsEncoder
    """Observations -> conditioning; ``encoder.out_dim`` is Dc."""
    model: Denoiser
    """The network a sampler calls k times: ``model.denoise(x, t, cond)``, inputs unchecked."""

    @property
    def device(self) -> torch.device: ...

    def encode(self, obs: Obs) -> Tensor:
        """(B, Dc) conditioning of raw-unit ``obs``, after checking it against the config."""
        ...

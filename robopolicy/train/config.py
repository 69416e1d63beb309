"""The behaviour-cloning run, as one typed config: data, policy, optimizer, schedule, EMA, loop.

Every field is overridable from the command line as ``section.field=value`` (see
:func:`robopolicy.config.apply_overrides`); ``policy.type=diffusion`` swaps the policy variant.
Defaults follow Diffusion Policy's Push-T low-dim training (AdamW lr 1e-4, betas (0.95, 0.999),
weight decay 1e-6, 500 warmup steps then cosine decay, batch 256, EMA power 0.75); the named
presets in :mod:`robopolicy.train.presets` size runs for each task.

The window shape (To, Tp, Ta) and the observation keys belong to the policy config alone; the
dataset is built from them (:meth:`TrainConfig.dataset_config`), so they are never given twice.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from robopolicy.cadence import CadenceConfig
from robopolicy.config import FLAT
from robopolicy.data.dataset import SequenceDatasetConfig, parse_derived
from robopolicy.policies.base import PolicyConfig, load_policy_types


@dataclasses.dataclass
class DataConfig:
    """Which episode store, and how its episodes split into training and validation."""

    path: str = ""
    """The episode store (zarr directory); ``robopolicy train --data`` fills it."""
    action_key: str = "action"
    """Key of the actions in the store."""
    val_ratio: float = 0.05
    """Fraction of episodes held out for the validation loss, in [0, 1); 0 turns it off."""
    split_seed: int = 42
    """Seed of the train/validation split of episodes (Diffusion Policy's default 42)."""
    max_train_episodes: int | None = None
    """Train on at most this many episodes (None: every one not held out)."""
    derived_keys: dict[str, str] = dataclasses.field(default_factory=dict)
    """Observation keys the store may lack, each a slice of another key's last axis, e.g.
    ``{"agent_pos": "state[:2]"}`` (see :class:`~robopolicy.data.dataset.SequenceDatasetConfig`)."""

    def __post_init__(self) -> None:
        for key, spec in self.derived_keys.items():
            parse_derived(key, spec)
        if not 0.0 <= self.val_ratio < 1.0:
            raise ValueError(f"val_ratio must be in [0, 1), got {self.val_ratio}")
        if self.max_train_episodes is not None and self.max_train_episodes < 1:
            raise ValueError(f"max_train_episodes must be >= 1, got {self.max_train_episodes}")


@dataclasses.dataclass
class OptimConfig:
    """AdamW."""

    lr: float = 1e-4
    """Peak learning rate (reached at the end of warmup)."""
    betas: tuple[float, float] = (0.95, 0.999)
    """Adam's moment decay rates."""
    eps: float = 1e-8
    """Adam's denominator epsilon."""
    weight_decay: float = 1e-6
    """Decoupled weight decay."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not self.eps > 0 or self.weight_decay < 0:
            raise ValueError("eps must be positive and weight_decay >= 0")


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warmup from 0, then ``kind`` down to ``min_lr_ratio``."""

    kind: Literal["cosine", "constant"] = "cosine"
    """``cosine``: half a cosine from the peak to ``min_lr_ratio`` x peak at the last step;
    ``constant``: the peak after warmup."""
    warmup_steps: int = 500
    """Optimizer steps of linear warmup (the rate at step s < warmup is peak x s / warmup)."""
    min_lr_ratio: float = 0.0
    """Floor of the cosine, as a fraction of the peak rate, in [0, 1]."""

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclasses.dataclass
class EmaConfig:
    """Exponential moving average of the weights, with Diffusion Policy's warmup of the decay:
    ``decay(k) = clamp(1 - (1 + k / inv_gamma) ** -power, min_value, max_value)`` at update k
    (counted from ``update_after_step``), and 0 for the first update (a plain copy)."""

    enabled: bool = True
    """Keep EMA weights; checkpoints, validation and evaluation then use them."""
    inv_gamma: float = 1.0
    """Inverse multiplicative factor of the warmup."""
    power: float = 0.75
    """Exponent of the warmup (0.75 reaches 0.999 after ~10k updates, 2/3 after ~31.6k)."""
    min_value: float = 0.0
    """Lowest decay."""
    max_value: float = 0.9999
    """Highest decay."""
    update_after_step: int = 0
    """Updates before this many optimizer steps copy the weights (decay 0)."""

    def __post_init__(self) -> None:
        if not self.inv_gamma > 0 or not self.power > 0:
            raise ValueError("ema inv_gamma and power must be positive")
        if not 0.0 <= self.min_value <= self.max_value <= 1.0:
            raise ValueError("ema needs 0 <= min_value <= max_value <= 1")
        if self.update_after_step < 0:
            raise ValueError(f"update_after_step must be >= 0, got {self.update_after_step}")


def _default_policy() -> PolicyConfig:
    variants = {**PolicyConfig.variants, **_registered()}
    for name in ("flow", "diffusion"):
        if name in variants:
            return variants[name]()
    raise ValueError("no policy type is registered; give TrainConfig(policy=...)")


def _registered() -> dict[str, type[PolicyConfig]]:
    load_policy_types()
    return PolicyConfig.variants


@dataclasses.dataclass
class TrainConfig:
    """One behaviour-cloning run (module docstring). Epochs and steps count optimizer steps
    over the training windows; an epoch is ``len(windows) // batch_size`` steps (at least 1)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    """The episode store and its split."""
    policy: PolicyConfig = dataclasses.field(default_factory=_default_policy)
    """The policy variant and its settings (``policy.type``: ``flow``, ``diffusion``, ...);
    ``shapes`` are read from the data when empty."""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The optimizer."""
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    """The learning-rate schedule."""
    ema: EmaConfig = dataclasses.field(default_factory=EmaConfig)
    """EMA of the weights."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this (None: no clipping, as Diffusion Policy)."""
    epochs: int = 100
    """Passes over the training windows."""
    max_steps: int | None = None
    """Stop after this many optimizer steps, if sooner than ``epochs`` (the schedule's length
    is whichever ends first)."""
    batch_size: int = 256
    """Windows per optimizer step."""
    val_every: int = 1
    """Compute the validation loss every this many epochs (0: never)."""
    val_batches: int | None = 8
    """Validation batches per check, in a fixed order (None: all of them)."""
    cadence: CadenceConfig = dataclasses.field(
        default_factory=lambda: CadenceConfig(
            eval_every=0, eval_episodes=50, eval_envs=8, checkpoint_every=1000, keep_checkpoints=3
        ),
        metadata=FLAT,
    )
    """When to evaluate and checkpoint (spelled flat: ``eval_every=5``): ``eval_every`` counts
    epochs and runs the caller's ``evaluate`` callback (0: only at the end), a checkpoint
    follows every evaluation; ``checkpoint_every`` counts optimizer steps; ``eval_episodes``,
    ``eval_seed`` and ``eval_envs`` are read by the caller that builds the callback."""
    best_metric: str = "success_rate"
    """Evaluation figure (higher is better) that picks ``best``; without evaluations, the
    lowest validation loss does."""
    log_every: int = 50
    """Record the mean training loss every this many steps."""
    seed: int = 0
    """Seeds the weights' initialisation, the noise of the losses and the data order."""
    num_threads: int | None = None
    """torch intra-op threads (None: torch's default). Runs reproduce bit for bit only with
    the same thread count."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0, got {self.val_every}")
        for name in ("max_steps", "val_batches", "num_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {value}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or null, got {self.grad_clip}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def dataset_config(self) -> SequenceDatasetConfig:
        """The :class:`SequenceDatasetConfig` this run trains on (keys and windows from the
        policy, the store and split from ``data``)."""
        if not self.data.path:
            raise ValueError("data.path is empty: give the episode store (--data PATH)")
        p = self.policy
        return SequenceDatasetConfig(
            path=Path(self.data.path),
            obs_keys=p.obs_keys,
            image_keys=p.image_keys,
            action_key=self.data.action_key,
            n_obs_steps=p.n_obs_steps,
            horizon=p.horizon,
            n_action_steps=p.n_action_steps,
            val_ratio=self.data.val_ratio,
            seed=self.data.split_seed,
            max_train_episodes=self.data.max_train_episodes,
            derived_keys=self.data.derived_keys,
        )


def policy_variants() -> dict[str, type[PolicyConfig]]:
    """Every registered policy config type by name (importing the policy packages)."""
    return dict(_registered())


def train_config_from_dict(data: dict) -> TrainConfig:
    """:func:`robopolicy.config.from_dict` for a TrainConfig, with every policy type loaded;
    reads runs saved before a field was renamed too (``keep_last`` for ``keep_checkpoints``,
    ``policy.num_inference_steps`` for ``policy.steps``: :data:`robopolicy.config.RENAMED`)."""
    from robopolicy.config import from_dict, renamed

    _registered()
    data = renamed(data)
    if isinstance(data.get("policy"), dict):
        data["policy"] = renamed(data["policy"])
    return from_dict(TrainConfig, data)

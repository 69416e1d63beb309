"""Named training presets per task: ``get_preset("arm-push", policy="flow", data=PATH)``.

A preset is a function of the policy type (``flow`` or ``diffusion``) returning a
:class:`~robopolicy.train.config.TrainConfig`, registered with :func:`preset`. Command-line
overrides apply on top (``robopolicy train --preset arm-push optim.lr=3e-4``).

The shared optimizer, schedule and EMA settings are Diffusion Policy's Push-T ones (AdamW lr 1e-4,
betas (0.95, 0.999), weight decay 1e-6, 500 warmup steps, cosine decay, batch 256, EMA power
0.75); the built-in tasks' presets are sized for a few minutes on 2 CPU cores, Push-T's follow
Diffusion Policy's window (To 2, Tp 16, Ta 8) with CPU-sized networks. The registry imports
nothing heavy (the command line lists presets without loading torch); a preset builds its config
when called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from robopolicy.config import ConfigError, build, did_you_mean

if TYPE_CHECKING:
    from robopolicy.train.config import TrainConfig

POLICY_TYPES = ("flow", "diffusion")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A registered preset."""

    name: str
    """Its name (``--preset``)."""
    task: str
    """The task whose data and evaluation it is made for."""
    description: str
    """One line for ``robopolicy train --help``."""
    build: Callable[[str], TrainConfig]
    """policy type -> config."""


PRESETS: dict[str, Preset] = {}


def preset(name: str, *, task: str, description: str) -> Callable:
    """Decorator registering ``fn(policy_type) -> TrainConfig`` as preset ``name``."""

    def decorate(fn: Callable[[str], TrainConfig]) -> Callable[[str], TrainConfig]:
        if name in PRESETS:
            raise ValueError(f"preset {name!r} registered twice")
        PRESETS[name] = Preset(name, task, description, fn)
        return fn

    return decorate


def get_preset(name: str, *, policy: str = "flow", data: str | None = None) -> TrainConfig:
    """Preset ``name`` for policy type ``policy``, training on ``data`` when given."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, list(PRESETS))}")
    if policy not in POLICY_TYPES:
        raise ConfigError(f"unknown policy type {policy!r}{did_you_mean(policy, POLICY_TYPES)}")
    config = PRESETS[name].build(policy)
    if data is not None:
        config.data = dataclasses.replace(config.data, path=str(data))
    return config


def default_preset(task: str) -> str | None:
    """The preset named after ``task``, else the first made for it, else None."""
    if task in PRESETS:
        return task
    return next((p.name for p in PRESETS.values() if p.task == task), None)


def policy_config(kind: str, common: dict[str, Any], per_kind: dict[str, dict[str, Any]]) -> Any:
    """A policy config of type ``kind`` from plain values (validated like a config file)."""
    from robopolicy.config import from_dict
    from robopolicy.policies.base import PolicyConfig
    from robopolicy.train.config import policy_variants

    policy_variants()  # registers every policy type
    return from_dict(PolicyConfig, {"type": kind, **common, **per_kind[kind]}, where="policy.")


def _mlp(width: int, depth: int = 3) -> dict[str, Any]:
    return {"type": "mlp", "hidden_dims": [width] * depth, "time_embed_dim": 32}


def _unet(*dims: int) -> dict[str, Any]:
    return {"type": "unet1d", "down_dims": list(dims), "time_embed_dim": 128}


@preset(
    "arm-push",
    task="arm-push",
    description="arm-push from state: To 2, Tp 8, Ta 4, residual-MLP denoiser, 10000 steps "
    "(~1.5 min on one core)",
)
def arm_push(kind: str) -> TrainConfig:
    from robopolicy.train.config import (
        DataConfig,
        EmaConfig,
        OptimConfig,
        ScheduleConfig,
        TrainConfig,
    )

    denoiser = _mlp(256)
    policy = policy_config(
        kind,
        {"n_obs_steps": 2, "horizon": 8, "n_action_steps": 4, "denoiser": denoiser},
        {"flow": {"steps": 10}, "diffusion": {"num_train_timesteps": 100}},
    )
    return build(
        TrainConfig,
        data=DataConfig(val_ratio=0.05),
        policy=policy,
        optim=OptimConfig(lr=1e-3),
        schedule=ScheduleConfig(warmup_steps=200),
        ema=EmaConfig(power=0.75),
        epochs=1000,
        max_steps=10_000,
        batch_size=256,
        val_every=20,
        eval_every=0,
        eval_episodes=50,
        checkpoint_every=1000,
        num_threads=1,  # small MLPs train fastest on one thread (2 threads: ~25x slower, busy box)
    )


@preset(
    "arm-pick-place",
    task="arm-pick-place",
    description="arm-pick-place from state: To 2, Tp 16, Ta 8, residual-MLP denoiser, 8000 steps",
)
def arm_pick_place(kind: str) -> TrainConfig:
    from robopolicy.train.config import OptimConfig, ScheduleConfig, TrainConfig

    policy = policy_config(
        kind,
        {"n_obs_steps": 2, "horizon": 16, "n_action_steps": 8, "denoiser": _mlp(512)},
        {"flow": {"steps": 10}, "diffusion": {"num_train_timesteps": 100}},
    )
    return build(
        TrainConfig,
        policy=policy,
        optim=OptimConfig(lr=5e-4),
        schedule=ScheduleConfig(warmup_steps=300),
        epochs=2000,
        max_steps=8000,
        val_every=20,
        checkpoint_every=1000,
        num_threads=1,
    )


def _pusht(kind: str, common: dict[str, Any], *, lr: float, epochs: int) -> TrainConfig:
    """Diffusion Policy's Push-T recipe; trains from its replay buffer as distributed (the agent
    position ``agent_pos`` is the first two numbers of ``state``)."""
    from robopolicy.train.config import (
        DataConfig,
        EmaConfig,
        OptimConfig,
        ScheduleConfig,
        TrainConfig,
    )

    window = {"n_obs_steps": 2, "horizon": 16, "n_action_steps": 8}
    policy = policy_config(
        kind,
        {**window, **common},
        {
            "flow": {"steps": 10},
            "diffusion": {"num_train_timesteps": 100, "sampler": "ddim", "steps": 10},
        },
    )
    return build(
        TrainConfig,
        data=DataConfig(val_ratio=0.02, split_seed=42, derived_keys={"agent_pos": "state[:2]"}),
        policy=policy,
        optim=OptimConfig(lr=lr, betas=(0.95, 0.999), weight_decay=1e-6),
        schedule=ScheduleConfig(warmup_steps=500),
        ema=EmaConfig(inv_gamma=1.0, power=0.75, max_value=0.9999),
        epochs=epochs,
        batch_size=256,
        val_every=10,
        eval_every=50,
        eval_episodes=50,
        eval_seed=100_000,
        best_metric="mean_max_coverage",
        checkpoint_every=5000,
    )


@preset(
    "pusht",
    task="pusht",
    description="Push-T from Diffusion Policy's low-dim observations (its replay buffer's "
    "keypoint, and agent_pos = state[:2]): To 2, Tp 16, Ta 8, residual-MLP denoiser 5 x 384, "
    "lr 1e-3, 190k steps (~58 min on one core)",
)
def pusht(kind: str) -> TrainConfig:
    # two residual blocks of 384 fit the demonstrations far better than DPPO's one block of 512
    # at about the same cost per step (BENCHMARKS.md, Push-T)
    denoiser = {"type": "mlp", "hidden_dims": [384] * 5}
    common = {"obs_keys": ["keypoint", "agent_pos"], "denoiser": denoiser}
    config = _pusht(kind, common, lr=1e-3, epochs=100_000)
    config.max_steps = 190_000
    config.num_threads = 1
    return config


@preset(
    "pusht-image",
    task="pusht",
    description="Push-T from the 96x96 camera (data key img, evaluated on image.top): ResNet-"
    "style encoder with 84x84 random crops, UNet (64-128-256)",
)
def pusht_image(kind: str) -> TrainConfig:
    common = {
        "obs_keys": [],
        "image_keys": ["img"],
        "denoiser": _unet(64, 128, 256),
        "encoder": {"crop_shape": [84, 84], "random_crop": True},
    }
    config = _pusht(kind, common, lr=1e-4, epochs=100)
    config.batch_size = 64
    return config

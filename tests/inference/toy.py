"""A toy task for the inference tests: bimodal-in-phase sinusoid chunks that the observation
does not determine, and tiny diffusion/flow policies trained on it in a few seconds.

Chunks (Tp=8, Da=2) are ``(sin(w j + phi), cos(w j + phi))`` with a uniform random phase and
``w = 2 pi / 16``; the state (To=2, Ds=3) is noise. A policy must pick a phase at random, so two
independent chunks disagree at their boundary, while a chunk continued from a given prefix is
smooth: what warm start and real-time chunking rely on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.models.mlp import MLPDenoiserConfig
from robopolicy.policies import Policy
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.flow import FlowConfig, FlowPolicy

WINDOW = dict(n_obs_steps=2, horizon=8, n_action_steps=4)
SHAPES = {"state": (3,), "action": (2,)}
OMEGA = 2 * math.pi / 16


def toy_batch(n: int, generator: torch.Generator) -> dict[str, Any]:
    """``{"obs": {"state": (n, 2, 3)}, "action": (n, 8, 2)}`` raw units."""
    phase = torch.rand(n, 1, generator=generator) * 2 * math.pi
    angle = phase + OMEGA * torch.arange(WINDOW["horizon"])[None]
    action = torch.stack([angle.sin(), angle.cos()], dim=-1)
    state = torch.randn(n, WINDOW["n_obs_steps"], 3, generator=generator)
    return {"obs": {"state": state}, "action": action}


def make_toy_policy(kind: str, *, width: int = 128, seed: int = 0, **kwargs: Any) -> Policy:
    """An untrained tiny ``kind`` policy whose normalizer fits the toy data."""
    denoiser = MLPDenoiserConfig(hidden_dims=(width,) * 3, time_embed_dim=16)
    common = dict(shapes=SHAPES, denoiser=denoiser, **WINDOW)
    if kind == "diffusion":
        config: Any = DiffusionConfig(**{"num_train_timesteps": 100, **common, **kwargs})
    else:
        config = FlowConfig(**{**common, **kwargs})
    batch = toy_batch(2000, torch.Generator().manual_seed(seed))
    arrays = {
        "state": batch["obs"]["state"].reshape(-1, 3).numpy(),
        "action": batch["action"].reshape(-1, 2).numpy(),
    }
    normalizer = Normalizer.fit(arrays, config.normalizer_modes())
    torch.manual_seed(seed)
    cls = DiffusionPolicy if kind == "diffusion" else FlowPolicy
    return cls(config, normalizer)


def train_toy_policy(kind: str, *, steps: int = 1500, seed: int = 0, **kwargs: Any) -> Policy:
    """A tiny ``kind`` policy fitted to the toy chunks (a few seconds on one CPU thread)."""
    policy = make_toy_policy(kind, seed=seed, **kwargs)
    generator = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    policy.train()
    for _ in range(steps):
        loss = policy.loss(toy_batch(256, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return policy.eval()


def needs_onnx() -> None:
    """Skip the test unless the ONNX export and runtime packages are installed."""
    import pytest

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


def phase_error(actions: np.ndarray) -> np.ndarray:
    """(B,) how far each chunk (B, Tp, 2) is from a unit-circle sinusoid of the toy's speed."""
    radius = np.abs(np.linalg.norm(actions, axis=-1) - 1).mean(-1)
    angle = np.unwrap(np.arctan2(actions[..., 0], actions[..., 1]), axis=-1)
    speed = np.abs(np.diff(angle, axis=-1) - OMEGA).mean(-1)
    return radius + speed

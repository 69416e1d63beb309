"""A tiny joint-space diffusion policy for the built-in arm whose chunks a sample does not
determine: the real-time chunking test and benchmark (``scripts/bench_rtc.py``).

A chunk (Tp = 16 actions at 10 Hz, Ta = 8, Da = 7: six joints and the gripper) moves every
joint and the gripper on circles around the arm's home pose with the gripper half closed,
``home + A (sin θ_j, cos θ_j, ...)`` with ``θ_j = φ + ω j``, a uniform random phase ``φ`` and
``ω = 2π / 16`` per action. Every output moves, so the normalizer scales each and the
diffusion policy's clipping keeps every action within the data's range: no chunk is refused,
however short the training. The state (To = 2 readings of the arm) is the home pose plus
noise and says nothing of ``φ``. So two independent chunks disagree where one hands over to
the other (a new phase each time), while a chunk inpainted from the previous one's prefix
continues it: what real-time chunking is for. ``tests/inference/toy.py`` is the same task in
two dimensions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.models.mlp import MLPDenoiserConfig
from robopolicy.policies import save_policy
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from sim.arm import Arm

OBS_STEPS, HORIZON, ACTION_STEPS, FPS = 2, 16, 8, 10.0
"""To, Tp, Ta and the policy's rate."""
AMPLITUDE, OMEGA = 0.1, 2 * math.pi / 16
"""Radius of each output's circle (rad; the gripper's in its 0..1 units) and the phase step
per action."""


def center() -> np.ndarray:
    """(7,) the built-in arm's home pose and the gripper half closed: the circles' centre."""
    return np.append(Arm.load().home, 0.5)


def phase_batch(n: int, generator: torch.Generator, home: np.ndarray) -> dict:
    """``{"obs": {"state": (n, To, 7)}, "action": (n, Tp, 7)}`` in raw units (rad) around
    ``home`` (:func:`center`)."""
    home = torch.as_tensor(home, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=generator) * 2 * math.pi
    angle = phase + OMEGA * torch.arange(HORIZON)[None]
    wave = torch.stack([angle.sin(), angle.cos()] * 4, dim=-1)[..., :7]
    action = home + AMPLITUDE * wave
    state = home + 0.05 * torch.randn(n, OBS_STEPS, 7, generator=generator)
    return {"obs": {"state": state}, "action": action}


def train_phase_policy(out: str | Path, *, steps: int = 1500, seed: int = 0) -> Path:
    """Train the policy (module docstring) for ``steps`` Adam steps and save its checkpoint at
    ``out`` (serve it with ``--fps 10``); a few seconds a hundred steps on one CPU thread."""
    config = DiffusionConfig(
        shapes={"state": (7,), "action": (7,)},
        denoiser=MLPDenoiserConfig(hidden_dims=(128,) * 3, time_embed_dim=16),
        n_obs_steps=OBS_STEPS,
        horizon=HORIZON,
        n_action_steps=ACTION_STEPS,
        num_train_timesteps=100,
    )
    generator = torch.Generator().manual_seed(seed)
    home = center()
    data = phase_batch(4000, generator, home)
    arrays = {
        "state": data["obs"]["state"].reshape(-1, 7).numpy(),
        "action": data["action"].reshape(-1, 7).numpy(),
    }
    torch.manual_seed(seed)
    policy = DiffusionPolicy(config, Normalizer.fit(arrays, config.normalizer_modes()))
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    policy.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: more threads only contend
    try:
        for _ in range(steps):
            loss = policy.loss(phase_batch(256, generator, home))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    finally:
        torch.set_num_threads(threads)
    return save_policy(policy.eval(), out)

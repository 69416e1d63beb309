"""A tiny policy and a tiny store for trainer tests (fast, random in its loss, registered once)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from robopolicy.config import build
from robopolicy.data.store import EpisodeStore
from robopolicy.policies import Policy, PolicyConfig, register_policy
from robopolicy.policies.base import POLICIES
from robopolicy.train.config import DataConfig, EmaConfig, ScheduleConfig, TrainConfig


@dataclasses.dataclass
class TinyConfig(PolicyConfig):
    hidden: int = 16


class TinyPolicy(Policy):
    """An MLP from the flattened observation window to the chunk, with noise on its input so
    that the loss draws from torch's RNG (as a diffusion policy's does)."""

    def __init__(self, config: TinyConfig, normalizer) -> None:
        super().__init__(config, normalizer)
        c = config
        self.net = torch.nn.Sequential(
            torch.nn.Linear(c.n_obs_steps * c.state_dim, c.hidden),
            torch.nn.Mish(),
            torch.nn.Linear(c.hidden, c.horizon * c.action_dim),
        )

    def _forward(self, obs):
        size = self.check_obs(obs)
        state = self.normalizer.normalize(obs["state"], "state").reshape(size, -1)
        return self.net(state).view(size, self.config.horizon, self.config.action_dim)

    def sample(self, obs, *, noise=None, steps=None):
        with torch.no_grad():
            return self.normalizer.unnormalize(self._forward(obs), "action")

    def loss(self, batch):
        self.check_batch(batch)
        if os.environ.get("TINY_POLICY_SLEEP"):
            time.sleep(float(os.environ["TINY_POLICY_SLEEP"]))
        noisy = {"state": batch["obs"]["state"] + 0.01 * torch.randn_like(batch["obs"]["state"])}
        target = self.normalizer.normalize(batch["action"], "action")
        return torch.nn.functional.mse_loss(self._forward(noisy), target)


if "test-tiny" not in POLICIES:
    register_policy("test-tiny", TinyConfig)(TinyPolicy)


def make_store(path: Path, episodes: int = 12, seed: int = 0) -> Path:
    """Episodes of 20-30 frames: state (3,), action (2,) a smooth function of the state."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(path, fps=10)
    for _ in range(episodes):
        length = int(rng.integers(20, 31))
        state = np.cumsum(rng.normal(size=(length, 3)), axis=0).astype(np.float32)
        action = np.stack([np.sin(state[:, 0]), state[:, 1] - state[:, 2]], axis=1)
        store.append_episode({"state": state, "action": action.astype(np.float32)})
    return path


def tiny_config(data: Path, **fields) -> TrainConfig:
    """A run of a few hundred steps of TinyPolicy on ``data``."""
    defaults = dict(
        data=DataConfig(path=str(data), val_ratio=0.2),
        policy=TinyConfig(n_obs_steps=2, horizon=4, n_action_steps=2),
        schedule=ScheduleConfig(warmup_steps=10),
        ema=EmaConfig(power=0.75),
        epochs=30,
        batch_size=16,
        checkpoint_every=25,
        keep_checkpoints=2,
        log_every=10,
        grad_clip=1.0,
        num_threads=1,
    )
    return build(TrainConfig, **{**defaults, **fields})

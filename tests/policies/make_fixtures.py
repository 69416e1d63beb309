"""Tiny policies for the policy tests, and the stored checkpoints that old commits made.

``python -m tests.policies.make_fixtures`` writes ``tests/policies/fixtures/``: one tiny low-dim
diffusion and one tiny flow checkpoint (an MLP denoiser of a few KB each) and
``expected.json`` with an observation, noise and the samples and losses they gave.
``tests/policies/test_stored_checkpoints.py`` checks that today's code loads them and gives the
same numbers. Run this only to add a new fixture, never to make that test pass again (its
docstring says how to migrate instead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.data.store import EpisodeStore
from robopolicy.models.mlp import MLPDenoiserConfig
from robopolicy.policies import Policy, save_policy
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.flow import FlowConfig, FlowPolicy

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHAPES = {"state": (3,), "action": (2,)}
WINDOW = dict(n_obs_steps=2, horizon=4, n_action_steps=2)
ACTION_SCALE, ACTION_SHIFT = 5.0, 100.0  # raw actions far from [-1, 1], so units show


def tiny_mlp(width: int = 32) -> MLPDenoiserConfig:
    return MLPDenoiserConfig(hidden_dims=(width,) * 3, time_embed_dim=8)


def tiny_config(kind: str, **kwargs: Any) -> DiffusionConfig | FlowConfig:
    """A low-dim config: state (3,), action (2,), To=2, Tp=4, Ta=2, a small MLP denoiser."""
    args: dict[str, Any] = dict(shapes=SHAPES, denoiser=tiny_mlp(), **WINDOW)
    if kind == "diffusion":
        return DiffusionConfig(**{**args, "num_train_timesteps": 20, **kwargs})
    return FlowConfig(**{**args, **kwargs})


def toy_data(n: int = 4, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``n`` windows: observations {"state": (n, 2, 3)} and raw-unit actions (n, 4, 2)."""
    gen = torch.Generator().manual_seed(seed)
    state = torch.randn(n, WINDOW["n_obs_steps"], 3, generator=gen)
    action = torch.randn(n, WINDOW["horizon"], 2, generator=gen) * ACTION_SCALE + ACTION_SHIFT
    return {"state": state}, action


def toy_policy(kind: str, seed: int = 0, **kwargs: Any) -> Policy:
    """A freshly initialised tiny policy whose normalizer fits :func:`toy_data`."""
    config = tiny_config(kind, **kwargs)
    obs, action = toy_data()
    arrays = {"state": obs["state"].reshape(-1, 3).numpy(), "action": action.reshape(-1, 2).numpy()}
    normalizer = Normalizer.fit(arrays, config.normalizer_modes())
    torch.manual_seed(seed)
    cls = DiffusionPolicy if kind == "diffusion" else FlowPolicy
    return cls(config, normalizer)


def toy_store(path: Path, lengths: tuple[int, ...] = (6, 9, 7)) -> Path:
    """An episode store with ``state`` (3,), ``action`` (2,) and a 40x40 camera ``image.front``."""
    store = EpisodeStore.create(path, fps=10)
    rng = np.random.default_rng(0)
    for n in lengths:
        store.append_episode(
            {
                "state": rng.normal(size=(n, 3)).astype(np.float32),
                "action": (rng.normal(size=(n, 2)) * ACTION_SCALE + ACTION_SHIFT).astype(
                    np.float32
                ),
                "image.front": rng.integers(0, 256, size=(n, 40, 40, 3), dtype=np.uint8),
            }
        )
    return path


def main() -> None:
    """Write the fixtures (refuses to overwrite existing ones)."""
    if (FIXTURES / "expected.json").exists():
        raise SystemExit(f"{FIXTURES} exists: add a new fixture instead of regenerating it")
    torch.set_num_threads(1)
    obs, _ = toy_data(n=2, seed=1)
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(2, WINDOW["horizon"], 2, generator=gen)
    t = torch.rand(2, generator=gen)
    expected: dict[str, Any] = {"obs": obs["state"].tolist(), "noise": noise.tolist()}
    for name, kind, kwargs in (
        ("diffusion_mlp", "diffusion", dict(sampler="ddim", steps=5)),
        ("flow_mlp", "flow", dict(sampler="midpoint", steps=3)),
    ):
        policy = toy_policy(kind, seed=3, denoiser=tiny_mlp(16), **kwargs).eval()
        _, action = toy_data(n=2, seed=1)
        batch = {"obs": obs, "action": action}
        if kind == "diffusion":
            steps = (t * 20).long()
            loss = policy.loss(batch, noise=noise, timesteps=steps)
        else:
            loss = policy.loss(batch, noise=noise, t=t)
        expected[name] = {
            "action": action.tolist(),
            "t": t.tolist(),
            "loss": loss.item(),
            "sample": policy.sample(obs, noise=noise).tolist(),
        }
        save_policy(policy, FIXTURES / name, card={"made_by": "tests/policies/make_fixtures.py"})
    text = json.dumps(expected, indent=1)
    (FIXTURES / "expected.json").write_text(text + "\n", encoding="utf-8")
    print(f"wrote {FIXTURES}")


if __name__ == "__main__":
    main()

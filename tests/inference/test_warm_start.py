"""Warm start continues the previous chunk with fewer network evaluations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.inference.warm_start import (
    WarmStart,
    WarmStartConfig,
    repeated_history,
    shift_chunk,
)
from tests.inference.toy import needs_onnx, toy_batch


def test_shift_pads_the_tail_with_the_last_action():
    chunk = np.arange(8, dtype=np.float32).reshape(1, 4, 2)
    shifted = shift_chunk(chunk, 3)
    assert shifted[0].tolist() == [[6, 7], [6, 7], [6, 7], [6, 7]]
    assert shift_chunk(torch.as_tensor(chunk), 1)[0, :, 0].tolist() == [2, 4, 6, 6]


@pytest.mark.parametrize(
    ("kind", "sampler", "backend"),
    [
        ("diffusion", "ddim", "torch"),
        ("diffusion", "dpmpp", "torch"),
        ("diffusion", "ddim", "onnx"),
        ("flow", "euler", "torch"),
    ],
)
def test_a_warm_chunk_continues_the_previous_one_with_fewer_evaluations(
    toy, kind, sampler, backend
):
    if backend == "onnx":
        needs_onnx()
    engine = InferenceEngine(toy(kind), EngineConfig(sampler, 10, backend=backend, seed=0))
    warm = WarmStart(engine, WarmStartConfig(warm_steps=2), episode_start=None)
    generator = torch.Generator().manual_seed(0)
    first = warm.sample(toy_batch(64, generator)["obs"]).numpy()
    assert engine.net_evals == 10
    obs = toy_batch(64, generator)["obs"]
    second = warm.sample(obs).numpy()
    assert engine.net_evals == 12  # 2 warm steps, not 10
    cold = engine.sample(obs).numpy()
    target = shift_chunk(first, 4)[:, :3]  # Ta = 4 executed; compare the first 3 actions
    warm_gap = np.abs(second[:, :3] - target).mean()
    cold_gap = np.abs(cold[:, :3] - target).mean()
    assert warm_gap < 0.4 * cold_gap, (warm_gap, cold_gap)
    warm.reset()
    warm.sample(obs)
    assert engine.net_evals == 32  # after reset: cold again (10 + 10 for `cold` above)


def test_fresh_episodes_start_cold_and_noise_makes_it_deterministic(toy):
    engine = InferenceEngine(toy("flow"), EngineConfig("euler", 8, backend="torch"))
    obs = toy_batch(3, torch.Generator().manual_seed(1))["obs"]
    obs["state"][1, 1] = obs["state"][1, 0]  # row 1: a fresh episode's padded history
    assert repeated_history(obs).tolist() == [False, True, False]
    noise = torch.randn(3, 8, 2)
    runs = []
    for _ in range(2):
        warm = WarmStart(engine, WarmStartConfig(warm_steps=3))
        warm.sample(obs, noise=noise)
        runs.append(warm.sample(obs, noise=noise))
    assert torch.equal(runs[0], runs[1])
    cold_row = engine.sample({"state": obs["state"][1:2]}, noise=noise[1:2])
    torch.testing.assert_close(runs[0][1:2], cold_row)


def test_config_is_validated():
    with pytest.raises(ValueError, match="warm_steps"):
        WarmStartConfig(warm_steps=0)
    with pytest.raises(ValueError, match="> steps"):
        WarmStartConfig(warm_steps=5, steps=4)

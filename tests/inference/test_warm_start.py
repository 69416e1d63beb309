"""Warm start continues the previous chunk with fewer network evaluations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.inference.warm_start import WarmStart, WarmStartConfig, shift_chunk
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
    warm = WarmStart(engine, WarmStartConfig(warm_steps=2))
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


def test_rows_whose_episode_ended_start_cold_and_noise_makes_it_deterministic(toy):
    engine = InferenceEngine(toy("flow"), EngineConfig("euler", 8, backend="torch"))
    obs = toy_batch(3, torch.Generator().manual_seed(1))["obs"]
    noise = torch.randn(3, 8, 2)
    runs = []
    for ended in ([False, True, False], [False, True, False], [False, False, False]):
        warm = WarmStart(engine, WarmStartConfig(warm_steps=3))
        warm.sample(obs, noise=noise)
        warm.reset(np.array(ended))  # what evaluate_policy passes: the envs whose episode ended
        before = engine.net_evals
        runs.append(warm.sample(obs, noise=noise))
        assert engine.net_evals - before == 3 + 8 * any(ended)  # warm rows 3 steps, cold ones 8
    assert torch.equal(runs[0], runs[1])
    cold_row = engine.sample({"state": obs["state"][1:2]}, noise=noise[1:2])
    torch.testing.assert_close(runs[0][1:2], cold_row)  # row 1 starts its episode cold
    torch.testing.assert_close(runs[0][[0, 2]], runs[2][[0, 2]])  # rows 0 and 2 stay warm
    assert not torch.allclose(runs[2][1:2], cold_row)
    with pytest.raises(ValueError, match="done has shape"):
        warm.reset(np.ones(2, dtype=bool))
    warm.reset()
    before = engine.net_evals
    warm.sample(obs, noise=noise)
    assert engine.net_evals - before == 8  # reset(): every row cold


def test_config_is_validated():
    with pytest.raises(ValueError, match="warm_steps"):
        WarmStartConfig(warm_steps=0)
    with pytest.raises(ValueError, match="> steps"):
        WarmStartConfig(warm_steps=5, steps=4)

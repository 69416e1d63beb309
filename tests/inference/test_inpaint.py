"""Real-time chunking: the next chunk keeps the committed prefix and does not jerk at the
boundary, unlike switching to an independent chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.inference.inpaint import InpaintConfig, prefix_weights, sample_with_prefix
from tests.inference.toy import needs_onnx, toy_batch

SHIFT, DELAY, START = 4, 2, 1  # executed since the last chunk; inference delay; To - 1


def boundary_jerk(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(B,) max |third difference| of the executed trajectory around the switch: ``old``'s
    actions up to the commit horizon, then ``new``'s (index j of new = j + SHIFT of old)."""
    switch = START + DELAY
    executed = np.concatenate([old[:, START : SHIFT + switch], new[:, switch:]], axis=1)
    return np.abs(np.diff(executed, n=3, axis=1)).max(axis=(1, 2))


@pytest.mark.parametrize(
    ("kind", "sampler", "backend", "bound"),
    [
        ("diffusion", "ddim", "torch", 1e-6),
        ("diffusion", "dpmpp", "torch", 1e-6),
        ("diffusion", "ddim", "onnx", 1e-6),
        ("flow", "euler", "torch", 0.35),
        ("flow", "euler", "onnx", 0.35),
    ],
)
def test_rtc_keeps_the_prefix_and_smooths_the_boundary(toy, kind, sampler, backend, bound):
    if backend == "onnx":
        needs_onnx()
    engine = InferenceEngine(toy(kind), EngineConfig(sampler, 10, backend=backend, seed=0))
    generator = torch.Generator().manual_seed(0)
    old = engine.sample(toy_batch(64, generator)["obs"]).numpy()
    obs = toy_batch(64, generator)["obs"]
    prefix = old[:, SHIFT:]  # the previous chunk in the new chunk's indices (L = Tp - SHIFT)
    frozen = START + DELAY
    with torch.inference_mode():  # as executors call it; flow guidance needs autograd anyway
        inpainted = sample_with_prefix(engine, obs, prefix, frozen=frozen).numpy()
    naive = engine.sample(obs).numpy()
    deviation = np.abs(inpainted[:, :frozen] - prefix[:, :frozen])
    assert deviation.max() <= bound, deviation.max()
    rtc, switch = boundary_jerk(old, inpainted).mean(), boundary_jerk(old, naive).mean()
    assert rtc < 0.6 * switch, (rtc, switch)
    if kind == "diffusion":  # the soft mask beats holding the frozen actions alone
        hard = sample_with_prefix(
            engine, obs, prefix, frozen=frozen, config=InpaintConfig(soft_mask=False)
        ).numpy()
        assert rtc < 0.75 * boundary_jerk(old, hard).mean()


@pytest.mark.parametrize(("kind", "sampler"), [("flow", "euler"), ("diffusion", "ddpm")])
def test_rtc_is_deterministic_given_noise_and_checks_its_input(toy, kind, sampler):
    engine = InferenceEngine(toy(kind), EngineConfig(sampler, 5, backend="torch"))
    obs = toy_batch(2, torch.Generator().manual_seed(1))["obs"]
    prefix, noise = torch.zeros(2, 3, 2), torch.randn(2, 8, 2)
    kept = noise.clone()
    first = sample_with_prefix(engine, obs, prefix, frozen=2, noise=noise)
    assert torch.equal(first, sample_with_prefix(engine, obs, prefix, frozen=2, noise=noise))
    assert torch.equal(noise, kept)  # the caller's noise is not written into
    bad = [
        (torch.zeros(2, 3, 5), "prefix must be"),
        (torch.zeros(3), "prefix must be"),
        (torch.full((2, 3, 2), float("nan")), "NaN"),
    ]
    for value, match in bad:
        with pytest.raises(ValueError, match=match):
            sample_with_prefix(engine, obs, value)
    with pytest.raises(ValueError, match="frozen"):
        sample_with_prefix(engine, obs, prefix, frozen=4)


def test_soft_mask_weights():
    weights = prefix_weights(8, 6, 2)
    assert weights[:2].tolist() == [1, 1] and weights[6:].tolist() == [0, 0]
    assert np.all(np.diff(weights[1:6]) < 0) and 0 < weights[5] < weights[2] < 1
    assert prefix_weights(8, 6, 2, soft=False).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]

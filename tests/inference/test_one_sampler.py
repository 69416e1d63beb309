"""One sampler module: for the same noise, a policy's own ``sample()`` and the inference engine's
torch and ONNX backends give the same actions, for every registered sampler and both policy
kinds (stochastic samplers run their deterministic twin from given noise, everywhere)."""

from __future__ import annotations

import pytest
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.sampling.samplers import SAMPLERS
from tests.inference.toy import make_toy_policy, needs_onnx, toy_batch


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_policy_sample_and_engine_backends_agree_given_noise(sampler, backend, steps):
    if backend == "onnx":
        needs_onnx()
    policy = make_toy_policy(SAMPLERS[sampler].family, width=32)
    policy.set_sampler(sampler, steps=steps)
    obs = toy_batch(3, torch.Generator().manual_seed(0))["obs"]
    noise = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(1))
    own = policy.sample(obs, noise=noise)
    engine = InferenceEngine(policy, EngineConfig(sampler=sampler, backend=backend))
    assert engine.steps == steps  # the policy's configured count
    torch.testing.assert_close(engine.sample(obs, noise=noise), own, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(own).all() and (own - policy.sample(obs, noise=-noise)).abs().max() > 0

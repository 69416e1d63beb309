"""The inference engine: the exported graph and CUDA graphs match eager torch; the server's
engine seam; backend ``policy``, the policy's own loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.inference.backends import OnnxNet, TorchNet
from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.models.unet1d import UNet1DConfig
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.gaussian import GaussianPolicy, GaussianPolicyConfig
from tests.inference.toy import make_toy_policy, needs_onnx


def unet_policy() -> DiffusionPolicy:
    """A low-dim UNet policy (0.7M parameters), untrained."""
    shapes = {"state": (5,), "action": (2,)}
    config = DiffusionConfig(
        shapes=shapes,
        denoiser=UNet1DConfig(down_dims=(32, 64, 128)),
        n_obs_steps=2,
        horizon=16,
        n_action_steps=8,
    )
    rng = np.random.default_rng(0)
    arrays = {k: rng.normal(size=(100, *s)).astype(np.float32) for k, s in shapes.items()}
    torch.manual_seed(0)
    return DiffusionPolicy(config, Normalizer.fit(arrays, config.normalizer_modes())).eval()


@pytest.mark.parametrize("network", ["unet", "mlp"])
def test_exported_graph_matches_eager_to_1e5(network):
    needs_onnx()
    policy = unet_policy() if network == "unet" else make_toy_policy("diffusion", width=64)
    c = policy.config
    cond_dim = policy.encoder.out_dim
    onnx = OnnxNet(
        policy.model, horizon=c.horizon, action_dim=c.action_dim, cond_dim=cond_dim, threads=1
    )
    eager = TorchNet(policy.model)
    gen = torch.Generator().manual_seed(0)
    for batch, t in ((1, 99.0), (5, 3.0), (2, 0.0)):  # any batch size: B is dynamic
        x = torch.randn(batch, c.horizon, c.action_dim, generator=gen)
        cond = torch.randn(batch, cond_dim, generator=gen)
        expected = eager(x, t, cond).numpy()
        got = onnx(x.numpy(), t, cond.numpy())
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    engines = [
        InferenceEngine(policy, EngineConfig("ddim", 10, backend=b)) for b in ("torch", "onnx")
    ]
    obs = {"state": torch.randn(2, 2, c.state_dim, generator=gen)}
    noise = torch.randn(2, c.horizon, c.action_dim, generator=gen)
    a, b = (e.sample(obs, noise=noise) for e in engines)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_engine_is_the_servers_engine():
    engine = InferenceEngine(
        make_toy_policy("flow", width=32),
        EngineConfig("midpoint", 3, backend="auto"),
        fps=10.0,
        name="toy",
    )
    meta = engine.metadata()
    assert (meta["sampler"], meta["steps"], meta["horizon"], meta["fps"]) == ("midpoint", 3, 8, 10)
    assert meta["backend"] in ("torch", "onnx") and meta["obs"]["state"]["shape"] == [2, 3]
    obs = {"state": np.random.default_rng(0).normal(size=(2, 2, 3)).astype(np.float32)}
    noise = np.random.default_rng(1).normal(size=(2, 8, 2)).astype(np.float32)
    actions = engine.run(obs, noise, 5)
    assert actions.dtype == np.float32 and actions.shape == (2, 8, 2)
    np.testing.assert_array_equal(actions, engine.run(obs, noise, 5))
    assert engine.run(obs, None, None).shape == (2, 8, 2)


def test_backend_policy_is_the_policys_own_sample_and_the_only_one_without_a_sampler():
    config = GaussianPolicyConfig(n_obs_steps=2, horizon=8, n_action_steps=4)
    gaussian = GaussianPolicy.untrained(config, {"state": (3,)}, (2,), (-1.0, -1.0), (1.0, 1.0))
    flow = make_toy_policy("flow", width=32)
    obs = {"state": np.random.default_rng(0).normal(size=(2, 2, 3)).astype(np.float32)}
    noise = np.random.default_rng(1).normal(size=(2, 8, 2)).astype(np.float32)
    for policy, sampler, steps in ((gaussian, None, None), (flow, "midpoint", 3)):
        engine = InferenceEngine(policy, EngineConfig(sampler, steps, backend="policy"))
        meta = engine.metadata()
        assert (meta["sampler"], meta["steps"], meta["max_steps"]) == (sampler, steps, 1000)
        assert "backend" not in meta and not engine.inpaint and engine.net_evals is None
        with torch.inference_mode():
            own = policy.sample(
                {"state": torch.from_numpy(obs["state"])}, noise=torch.from_numpy(noise)
            )
        np.testing.assert_array_equal(engine.run(obs, noise, None), own.numpy())
        with pytest.raises(NotImplementedError, match="does not inpaint"):
            engine.run_with_prefix(obs, noise, None, noise[:, :2], 1)
    with pytest.raises(ValueError, match="a gaussian policy has no sampler to choose"):
        InferenceEngine(gaussian, EngineConfig(steps=4, backend="policy"))
    with pytest.raises(ValueError, match="which a gaussian policy has not"):
        InferenceEngine(gaussian, EngineConfig(backend="torch"))
    with pytest.raises(ValueError, match="own eta and noise"):
        EngineConfig(backend="policy", seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_replay_the_eager_denoiser():
    policy = make_toy_policy("diffusion", width=32).to("cuda")
    eager, graphs = (
        InferenceEngine(policy, EngineConfig("ddim", 10, backend=b))
        for b in ("torch", "cuda-graph")
    )
    assert graphs.backend == "cuda-graph"
    for batch in (3, 1, 3):  # a graph per batch size, replayed
        obs = {"state": torch.randn(batch, 2, 3, device="cuda")}
        noise = torch.randn(batch, 8, 2, device="cuda")
        expected = eager.sample(obs, noise=noise)
        torch.testing.assert_close(graphs.sample(obs, noise=noise), expected, atol=1e-5, rtol=1e-5)
    assert len(graphs.net._graphs) == 2


def test_a_flow_chunk_is_clipped_like_the_policys_own():
    """Noise 100x too large integrates to a chunk far outside the data: the engine clips it to
    the demonstrated range exactly as ``policy.sample`` does."""
    policy = make_toy_policy("flow", width=32)
    engine = InferenceEngine(policy, EngineConfig("euler", 4, backend="torch"))
    gen = torch.Generator().manual_seed(0)
    obs = {"state": torch.randn(3, 2, policy.config.state_dim, generator=gen)}
    noise = 100 * torch.randn(3, policy.config.horizon, policy.config.action_dim, generator=gen)
    got = engine.sample(obs, noise=noise)
    torch.testing.assert_close(got, policy.sample(obs, noise=noise, steps=4))
    stats = policy.normalizer.stats("action")
    assert (got >= stats["min"] - 1e-4).all() and (got <= stats["max"] + 1e-4).all()
    assert torch.isclose(got, stats["max"].expand_as(got)).any()

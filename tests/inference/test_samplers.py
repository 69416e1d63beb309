"""Every registered sampler on every backend: shapes, finiteness, determinism; DPPO's chain
agrees with the DDPM sampler; DPM-Solver++ matches diffusers step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robopolicy.inference.engine import EngineConfig, InferenceEngine
from robopolicy.sampling.samplers import SAMPLERS, get_sampler
from tests.inference.toy import make_toy_policy, needs_onnx, toy_batch

CASES = [(name, spec.family) for name, spec in SAMPLERS.items()]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize(("sampler", "kind"), CASES)
def test_every_sampler_is_finite_shaped_and_deterministic_given_noise(sampler, kind, backend):
    if backend == "onnx":
        needs_onnx()
    policy = make_toy_policy(kind, width=32)
    engine = InferenceEngine(policy, EngineConfig(sampler, 4, backend=backend, seed=0))
    obs = toy_batch(3, torch.Generator().manual_seed(0))["obs"]
    noise = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(1))
    drawn = engine.sample(obs)
    assert drawn.shape == (3, 8, 2) and torch.isfinite(drawn).all()
    first, again = engine.sample(obs, noise=noise), engine.sample(obs, noise=noise)
    assert torch.equal(first, again) and torch.isfinite(first).all()
    per_step = SAMPLERS[engine.spec.deterministic or sampler].evals_per_step
    before = engine.net_evals
    engine.sample(obs, noise=noise)
    assert engine.net_evals - before == 4 * per_step


@pytest.mark.parametrize(
    ("kind", "sampler", "steps"),
    [("diffusion", "ddim", 10), ("diffusion", "ddim", 100), ("flow", "euler", 10)],
)
def test_our_loop_reproduces_the_policy_sample(kind, sampler, steps):
    policy = make_toy_policy(kind, width=32)
    engine = InferenceEngine(policy, EngineConfig(sampler, steps, backend="torch"))
    obs = toy_batch(4, torch.Generator().manual_seed(2))["obs"]
    noise = torch.randn(4, 8, 2)
    expected = policy.sample(obs, noise=noise, steps=steps)
    torch.testing.assert_close(engine.sample(obs, noise=noise), expected, atol=1e-5, rtol=1e-5)


def test_ddpm_matches_the_policy_chain_given_the_same_draws():
    """DPPO's chain (its own loop, per-row float32 coefficients) and the DDPM sampler walk the
    same path given the same draws."""
    policy = make_toy_policy("diffusion", width=32)
    process = policy.process
    obs = toy_batch(2, torch.Generator().manual_seed(3))["obs"]
    cond = policy.encode(obs)
    x = torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        chain = policy.sample_chain(obs, steps=20, sampler="ddpm", noise=x, generator=generator)
        expected = chain.x[:, -1]
        ours_gen = torch.Generator().manual_seed(5)
        ours = get_sampler("ddpm").run(
            process,
            _policy_net(policy),
            x,
            cond,
            process.grid(20),
            draw=lambda: torch.randn(x.shape, generator=ours_gen),
        )
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def _policy_net(policy):
    def net(x, t, c):
        return policy.model.denoise(x, torch.full((x.shape[0],), t), c)

    return net


@pytest.mark.parametrize("draws", ["zeros", "normal"])
def test_ddim_with_eta_one_over_all_k_steps_is_ddpm(draws):
    """Theory (Song et al. 2021): DDIM's step with eta 1 has DDPM's posterior mean and variance,
    so over every train timestep, without clipping, it walks DDPM's path given the same draws,
    and with zero draws DDPM's mean path. Eta 0 (the ODE) does not."""
    policy = make_toy_policy("diffusion", width=32, clip_sample=False)
    process = policy.process
    obs = toy_batch(2, torch.Generator().manual_seed(3))["obs"]
    x = torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(4))
    levels = process.grid(process.num_train_timesteps)  # all K = 100 timesteps

    def run(name, **options):
        generator = torch.Generator().manual_seed(5)

        def draw():
            if draws == "zeros":
                return torch.zeros_like(x)
            return torch.randn(x.shape, generator=generator)

        with torch.no_grad():
            cond = policy.encode(obs)
            return get_sampler(name).run(
                process, _policy_net(policy), x, cond, levels, draw=draw, **options
            )

    ddpm = run("ddpm")
    torch.testing.assert_close(run("ddim", eta=1.0), ddpm, atol=1e-4, rtol=1e-4)
    assert (run("ddim", eta=0.0) - ddpm).abs().max() > 1e-2


def test_the_engine_takes_ddim_eta_from_the_checkpoint():
    policy = make_toy_policy("diffusion", width=32, clip_sample=False, sampler="ddim", eta=1.0)
    obs = toy_batch(2, torch.Generator().manual_seed(8))["obs"]
    ddim = InferenceEngine(policy, EngineConfig(backend="torch", steps=100, seed=3))
    assert ddim.options == {"eta": 1.0}
    ddpm = InferenceEngine(policy, EngineConfig("ddpm", 100, backend="torch", seed=3))
    torch.testing.assert_close(ddim.sample(obs), ddpm.sample(obs), atol=1e-4, rtol=1e-4)
    noise = torch.randn(2, 8, 2)  # given noise: eta 0, deterministic
    assert torch.equal(ddim.sample(obs, noise=noise), ddim.sample(obs, noise=noise))
    with pytest.raises(ValueError, match="takes no eta"):
        InferenceEngine(make_toy_policy("flow", width=32), EngineConfig("euler", eta=0.5))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers on numpy 2
@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("steps", [1, 2, 5, 10, 25])
def test_dpm_solver_pp_matches_diffusers(prediction, steps):
    diffusers = pytest.importorskip("diffusers")
    policy = make_toy_policy("diffusion", width=32, prediction_type=prediction, clip_sample=False)
    reference = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=100,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction,
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
    )
    reference.set_timesteps(steps)
    obs = toy_batch(3, torch.Generator().manual_seed(6))["obs"]
    noise = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        cond = policy.encode(obs)
        x = noise.clone()
        for t in reference.timesteps:
            out = policy.model.denoise(x, t.float().expand(3), cond)
            x = reference.step(out, t, x).prev_sample
    process = policy.process
    assert [int(t) for t in reference.timesteps] == process.grid(steps, "trailing")[:-1]
    engine = InferenceEngine(policy, EngineConfig("dpmpp", steps, backend="torch"))
    ours = engine.denoise(engine.encode(obs), noise.clone())
    np.testing.assert_allclose(ours.numpy(), x.numpy(), atol=2e-5, rtol=1e-4)


def test_unknown_samplers_and_steps_are_refused():
    policy = make_toy_policy("flow", width=32)
    with pytest.raises(ValueError, match="did you mean 'euler'"):
        InferenceEngine(policy, EngineConfig("eulr", backend="torch"))
    with pytest.raises(ValueError, match="sampler 'ddim'"):
        InferenceEngine(policy, EngineConfig("ddim", backend="torch"))
    diffusion = make_toy_policy("diffusion", width=32)
    with pytest.raises(ValueError, match="steps must be in"):
        InferenceEngine(diffusion, EngineConfig("dpmpp", 101, backend="torch"))
    with pytest.raises(ValueError, match="did you mean 'onnx'"):
        EngineConfig(backend="onx")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda-graph needs the policy on a GPU"):
            InferenceEngine(diffusion, EngineConfig(backend="cuda-graph"))

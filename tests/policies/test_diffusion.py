"""DiffusionPolicy: the DDPM/DDIM step vs diffusers, BC overfit, sampling, DPPO hooks,
checkpoints."""

from __future__ import annotations

import copy
import importlib.util
import itertools

import pytest
import torch

import robopolicy
from robopolicy.config import ConfigError, apply_overrides, from_dict, to_dict
from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig
from robopolicy.models.encoders import ObsEncoderConfig
from robopolicy.models.unet1d import UNet1DConfig
from robopolicy.policies import PolicyConfig, save_policy
from robopolicy.policies.build import make_policy
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.sampling.processes import DiffusionProcess, diffuse
from robopolicy.sampling.samplers import gaussian_step
from tests.policies.make_fixtures import WINDOW, toy_data, toy_policy, toy_store

HAS_DIFFUSERS = importlib.util.find_spec("diffusers") is not None


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- the DDPM/DDIM step


def process(**kwargs) -> DiffusionProcess:
    return DiffusionProcess.of(DiffusionConfig(num_train_timesteps=100, **kwargs))


def step(p: DiffusionProcess, out, x, t, t_next, sampler, eta=0.0):
    """(mean, std) of one step from (B,) timesteps ``t`` to ``t_next``, as DPPO's chain runs it
    (per-row values)."""
    a, a_next = p.abars(t), p.abars(t_next)
    x0, eps = p.estimates(out, x, a)
    return gaussian_step(x0, eps, x, a, a_next, sampler=sampler, eta=eta)


@pytest.mark.skipif(not HAS_DIFFUSERS, reason="diffusers is not installed (pip install diffusers)")
@pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("clip", [True, False])
def test_schedulers_match_diffusers_step_by_step(schedule, prediction, clip):
    from diffusers import DDIMScheduler, DDPMScheduler

    ours = process(beta_schedule=schedule, prediction_type=prediction, clip_sample=clip)
    kw = dict(num_train_timesteps=100, beta_schedule=schedule, prediction_type=prediction)
    kw["clip_sample"] = clip
    x0, eps, t = torch.randn(5, 4, 2), torch.randn(5, 4, 2), torch.randint(0, 100, (5,))
    ddpm = DDPMScheduler(variance_type="fixed_small", **kw)
    torch.testing.assert_close(diffuse(x0, eps, ours.abars(t)), ddpm.add_noise(x0, eps, t))
    for k in (100, 10, 7, 1):
        ddpm = DDPMScheduler(variance_type="fixed_small", **kw)
        ddim = DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **kw)
        ddpm.set_timesteps(k)
        ddim.set_timesteps(k)
        levels = torch.tensor(ours.grid(k)).long()
        timesteps = levels[:-1]
        assert torch.equal(timesteps, ddpm.timesteps) and torch.equal(timesteps, ddim.timesteps)
        x = torch.randn(3, 4, 2)
        for i, (t, t_prev) in enumerate(itertools.pairwise(levels)):
            out = 2 * torch.randn(3, 4, 2)  # large enough that clipping acts at some steps
            tb, pb = t.repeat(3), t_prev.repeat(3)
            z = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
            mean, std = step(ours, out, x, tb, pb, "ddpm")
            ref = ddpm.step(out, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
            torch.testing.assert_close(mean + std[:, None, None] * z, ref, rtol=0, atol=1e-6)
            for eta in (0.0, 0.5, 1.0):
                mean, std = step(ours, out, x, tb, pb, "ddim", eta)
                ref_ddim = ddim.step(out, t, x, eta=eta, variance_noise=z).prev_sample
                torch.testing.assert_close(
                    mean + std[:, None, None] * z, ref_ddim, atol=1e-6, rtol=0
                )
            x = ref


@pytest.mark.parametrize("steps", [100, 10])
@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_ddim_with_eta_one_is_ddpm_without_clipping(steps, prediction):
    """DDIM's sigma(eta=1)^2 is DDPM's fixed_small posterior variance, and its mean equals the
    posterior mean when eps^ and x0^ agree (no clipping) -- for any pair of steps (t, t')."""
    p = process(prediction_type=prediction, clip_sample=False)
    levels = torch.tensor(p.grid(steps)).long()
    for t, t_prev in itertools.pairwise(levels):
        x, out = torch.randn(6, 4, 2), torch.randn(6, 4, 2)
        tb, pb = t.repeat(6), t_prev.repeat(6)
        mean_ddpm, std_ddpm = step(p, out, x, tb, pb, "ddpm")
        mean_ddim, std_ddim = step(p, out, x, tb, pb, "ddim", 1.0)
        torch.testing.assert_close(mean_ddim, mean_ddpm, atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(std_ddim, std_ddpm, atol=1e-6, rtol=1e-5)
    clipped = process(clip_sample=True)  # where x0^ is clipped they differ
    t, t_prev = torch.tensor([99]), torch.tensor([98])
    x, out = torch.randn(1, 4, 2), 3 * torch.ones(1, 4, 2)
    mean_ddpm, _ = step(clipped, out, x, t, t_prev, "ddpm")
    mean_ddim, _ = step(clipped, out, x, t, t_prev, "ddim", 1.0)
    assert not torch.allclose(mean_ddpm, mean_ddim, atol=1e-3)


def test_policy_ddim_eta_one_chain_is_ddpm_chain_given_the_same_draws():
    policy = toy_policy("diffusion", clip_sample=False).eval()
    obs, _ = toy_data()
    chains = [
        policy.sample_chain(obs, sampler=s, eta=1.0, generator=torch.Generator().manual_seed(0))
        for s in ("ddpm", "ddim")
    ]
    torch.testing.assert_close(chains[1].x, chains[0].x, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------- behaviour cloning


@pytest.mark.parametrize(
    "prediction, bound, steps", [("epsilon", 0.04, 1500), ("sample", 0.002, 800)]
)
def test_overfits_four_windows(prediction, bound, steps):
    policy = toy_policy("diffusion", prediction_type=prediction)
    obs, action = toy_data()
    batch = {"obs": {"state": obs["state"].repeat(16, 1, 1)}, "action": action.repeat(16, 1, 1)}
    optim = torch.optim.Adam(policy.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, steps)
    first = policy.loss(batch).item()
    for _ in range(steps):
        loss = policy.loss(batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
        schedule.step()
    policy.eval()
    final = torch.stack([policy.loss(batch) for _ in range(10)]).mean().item()
    assert final < bound < first / 10
    span = (action.amax() - action.amin()).item()
    assert (policy.sample(obs) - action).abs().max() < 0.1 * span  # ancestral DDPM
    if prediction == "sample":  # deterministic DDIM; with epsilon it varies with the noise draw
        assert (policy.sample(obs, noise=torch.randn(4, 4, 2)) - action).abs().max() < 0.02 * span


def test_sample_is_deterministic_given_noise_in_raw_units():
    policy = toy_policy("diffusion").eval()
    obs, action = toy_data()
    noise = torch.randn(4, 4, 2)
    first = policy.sample(obs, noise=noise)
    assert first.shape == (4, WINDOW["horizon"], 2)
    torch.testing.assert_close(policy.sample(obs, noise=noise), first, rtol=0, atol=0)
    assert (policy.sample(obs, noise=torch.randn(4, 4, 2)) - first).abs().max() > 1e-3
    # clip_sample keeps x0 in [-1, 1]: unnormalized, the chunk lies in the data's raw range
    assert first.min() >= action.min() - 1e-3 and first.max() <= action.max() + 1e-3
    for sampler in ("ddpm", "ddim"):
        policy.set_sampler(sampler, steps=5, eta=0.5)
        out = policy.sample(obs)
        assert out.shape == (4, 4, 2) and torch.isfinite(out).all()
    assert policy.sample(obs, noise=noise, steps=20).shape == (4, 4, 2)
    with pytest.raises(ValueError, match="steps must be in"):
        policy.sample(obs, noise=noise, steps=21)
    with pytest.raises(ValueError, match="steps must be in"):
        policy.set_sampler(steps=50)


# ---------------------------------------------------------------------- DPPO hooks


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 5)])
def test_chain_log_probs_recompute_and_follow_the_weights(sampler, steps):
    policy = toy_policy("diffusion").eval()
    obs, _ = toy_data()
    kw = dict(steps=steps, sampler=sampler, eta=1.0)
    chain = policy.sample_chain(obs, **kw, min_std=0.1, logprob_min_std=0.1, noise_clip=3.0)
    k = steps or 20
    assert chain.x.shape == (4, k + 1, 4, 2) and chain.mean.shape == (4, k, 4, 2)
    assert chain.std.shape == chain.log_prob.shape == (4, k) and (chain.std >= 0.1).all()
    torch.testing.assert_close(
        chain.actions, policy.normalizer.unnormalize(chain.x[:, -1], "action")
    )
    # an independent computation of one step's log-probability
    i = k - 1
    ref = torch.distributions.Normal(chain.mean[:, i], chain.std[:, i, None, None])
    torch.testing.assert_close(chain.log_prob[:, i], ref.log_prob(chain.x[:, i + 1]).sum((1, 2)))
    again = policy.chain_log_probs(obs, chain.x, **kw)
    torch.testing.assert_close(again, chain.log_prob, atol=1e-4, rtol=1e-5)
    tail = policy.chain_log_probs(obs, chain.x[:, k - 3 :], **kw)  # the last K' = 3 steps
    torch.testing.assert_close(tail, chain.log_prob[:, k - 3 :], atol=1e-4, rtol=1e-5)
    step = torch.full((4,), i)
    per_dim = policy.chain_log_prob(
        obs, chain.x[:, i], chain.x[:, i + 1], step, **kw, reduce="none"
    )
    assert per_dim.shape == (4, 4, 2)
    loss = -policy.chain_log_probs(obs, chain.x, **kw).mean()
    loss.backward()
    assert all(p.grad is not None for p in policy.model.parameters())
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert (policy.chain_log_probs(obs, chain.x, **kw) - chain.log_prob).abs().max() > 1e-3


def test_frozen_copy_runs_the_early_steps():
    policy = toy_policy("diffusion").eval()
    frozen = copy.deepcopy(policy).requires_grad_(False)
    obs, _ = toy_data()
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    kw = dict(sampler="ddim", steps=10, eta=1.0, min_std=0.1)
    mixed = policy.sample_chain(
        obs, **kw, frozen=frozen, finetune_steps=3, generator=torch.Generator().manual_seed(0)
    )
    base = frozen.sample_chain(obs, **kw, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed.x[:, :8], base.x[:, :8])
    assert (mixed.x[:, 8:] - base.x[:, 8:]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="frozen copy"):
        policy.sample_chain(obs, **kw, finetune_steps=3)


# ---------------------------------------------------------------------- configs, data, checkpoints


def test_config_round_trip_and_validation():
    config = DiffusionConfig(shapes={"state": (3,), "action": (2,)}, sampler="ddim", eta=0.3)
    again = from_dict(PolicyConfig, to_dict(config))
    assert again == config and isinstance(again.denoiser, UNet1DConfig)
    with pytest.raises(ConfigError, match="did you mean 'ddpm'"):
        from_dict(PolicyConfig, {**to_dict(config), "sampler": "dpm"})
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        from_dict(PolicyConfig, {**to_dict(config), "step": 3})
    for bad in (dict(steps=101), dict(eta=-1.0), dict(beta_start=0.5)):
        with pytest.raises(ValueError):
            DiffusionConfig(**bad)


def test_steps_are_k_unless_given_and_follow_an_overridden_k():
    """``steps`` None is K: an int once built, written null while it equals K, so overriding K
    (``policy.num_train_timesteps=20`` on the command line) moves it along."""
    config = DiffusionConfig(num_train_timesteps=100)
    assert config.steps == 100 and to_dict(config)["steps"] is None
    assert from_dict(PolicyConfig, to_dict(config)) == config
    assert apply_overrides(config, ["num_train_timesteps=20"]).steps == 20
    fewer = DiffusionConfig(num_train_timesteps=100, steps=10)
    assert to_dict(fewer)["steps"] == 10
    assert apply_overrides(fewer, ["num_train_timesteps=20"]).steps == 10


def test_save_load_gives_identical_samples(tmp_path):
    policy = toy_policy("diffusion", sampler="ddim", steps=5).eval()
    obs, _ = toy_data()
    noise = torch.randn(4, 4, 2)
    loaded = robopolicy.load_policy(save_policy(policy, tmp_path / "ckpt"))
    assert isinstance(loaded, DiffusionPolicy) and loaded.config == policy.config
    torch.testing.assert_close(loaded.sample(obs, noise=noise), policy.sample(obs, noise=noise))
    loaded.set_sampler("ddpm", steps=20)  # samplers are chosen at load time
    assert loaded.config.sampler == "ddpm" and loaded.sample(obs).shape == (4, 4, 2)


def test_image_policy_from_a_store(tmp_path):
    data = SequenceDataset(
        SequenceDatasetConfig(
            toy_store(tmp_path / "toy.zarr"), image_keys=["image.front"], **WINDOW
        )
    )
    config = DiffusionConfig(
        image_keys=("image.front",),
        denoiser=UNet1DConfig(down_dims=(8, 16), n_groups=4, time_embed_dim=8, kernel_size=3),
        encoder=ObsEncoderConfig(
            image_feature_dim=4,
            backbone_width=8,
            group_size=4,
            num_keypoints=4,
            crop_shape=(36, 36),
        ),
        num_train_timesteps=10,
        **WINDOW,
    )
    policy = make_policy(config, data)
    assert policy.config.shapes == {"state": (3,), "image.front": (40, 40, 3), "action": (2,)}
    batch = data[[0, 1, 2]]
    loss = policy.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    policy.eval()
    noise = torch.randn(3, 4, 2)
    out = policy.sample(batch["obs"], noise=noise)
    assert out.shape == (3, 4, 2) and out.min() > 50  # raw units (actions around 100)
    loaded = robopolicy.load_policy(save_policy(policy, tmp_path / "ckpt"))
    torch.testing.assert_close(loaded.sample(batch["obs"], noise=noise), out)
    with pytest.raises(ValueError, match="image_keys"):
        make_policy(DiffusionConfig(**{**WINDOW, "horizon": 8}), data)

"""FlowPolicy: BC overfit, integrators, sampling, the FPO per-pair loss, configs, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

import robopolicy
from robopolicy.config import ConfigError, from_dict, to_dict
from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig
from robopolicy.models.encoders import ObsEncoderConfig
from robopolicy.models.transformer import TransformerDenoiserConfig
from robopolicy.policies import PolicyConfig, save_policy
from robopolicy.policies.build import make_policy
from robopolicy.policies.flow import FlowConfig, FlowPolicy
from robopolicy.sampling.samplers import get_sampler
from tests.policies.make_fixtures import WINDOW, toy_data, toy_policy, toy_store

pytestmark = pytest.mark.usefixtures("one_thread")


class Field(torch.nn.Module):
    """A known velocity field ``v(x, t, cond) = fn(x)`` in place of the policy's network."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x, t, cond):
        return self.fn(x)


def test_overfits_four_windows():
    policy = toy_policy("flow")
    obs, action = toy_data()
    batch = {"obs": {"state": obs["state"].repeat(16, 1, 1)}, "action": action.repeat(16, 1, 1)}
    optim = torch.optim.Adam(policy.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, 1500)
    first = policy.loss(batch).item()
    for _ in range(1500):
        loss = policy.loss(batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
        schedule.step()
    policy.eval()
    final = torch.stack([policy.loss(batch) for _ in range(10)]).mean().item()
    # eps = (x_t - (1 - t) a) / t is ill-conditioned as t -> 0: a small net's floor is ~0.05
    assert final < 0.08 < first / 15
    span = (action.amax() - action.amin()).item()
    for sampler in ("euler", "midpoint"):
        policy.set_sampler(sampler, steps=10)
        assert (policy.sample(obs, noise=torch.randn(4, 4, 2)) - action).abs().max() < 0.1 * span


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_integrators_on_a_known_field(method, monkeypatch):
    """dx/dt = x from t = 1 to 0 gives x(0) = x(1) / e; k Euler steps of h = -1/k multiply by
    (1 - 1/k)^k, k midpoint steps by (1 - 1/k + 1/(2k^2))^k."""
    policy = toy_policy("flow")
    monkeypatch.setattr(policy, "model", Field(lambda x: x))
    x = torch.randn(3, 4, 2)
    for k in (1, 2, 4):
        factor = (1 - 1 / k) ** k if method == "euler" else (1 - 1 / k + 0.5 / k**2) ** k
        out = policy.denoise(torch.zeros(3, 0), x, steps=k, sampler=method)
        torch.testing.assert_close(out, x * factor)
    out = policy.denoise(torch.zeros(3, 0), x, steps=64, sampler=method)
    torch.testing.assert_close(out, x / math.e, atol=1e-2 if method == "euler" else 1e-4, rtol=0)
    half = get_sampler(method).denoise(policy.process, policy.model, x, None, 128, start=64)
    torch.testing.assert_close(half, x * math.exp(-0.5), atol=1e-2, rtol=0)  # a warm start


@pytest.mark.parametrize("clip", [True, False])
def test_a_diverging_field_is_clipped_to_the_demonstrated_range(clip, monkeypatch):
    """An ODE that runs away (here dx/dt = -50 x: x(0) = e^50 x(1)) must not reach the env."""
    policy = toy_policy("flow", clip_sample=clip).eval()
    monkeypatch.setattr(policy, "model", Field(lambda x: -50.0 * x))
    obs, action = toy_data()
    lo, hi = action.reshape(-1, 2).amin(0), action.reshape(-1, 2).amax(0)
    out = policy.sample(obs, noise=torch.randn(4, 4, 2), steps=8)
    inside = ((out >= lo - 1e-4) & (out <= hi + 1e-4)).all()
    assert bool(inside) == clip
    if clip:  # at the bounds, not merely inside them
        assert torch.isclose(out, lo.expand_as(out)).any() and torch.isclose(out, hi).any()


def test_sample_is_deterministic_given_noise_in_raw_units():
    policy = toy_policy("flow").eval()
    obs, action = toy_data()
    noise = torch.randn(4, 4, 2)
    first = policy.sample(obs, noise=noise)
    assert first.shape == (4, WINDOW["horizon"], 2)
    torch.testing.assert_close(policy.sample(obs, noise=noise), first, rtol=0, atol=0)
    assert (policy.sample(obs, noise=torch.randn(4, 4, 2)) - first).abs().max() > 1e-3
    assert (first - action.mean()).abs().max() < 10 * action.std()  # raw units (near 100)
    assert policy.sample(obs, noise=noise, steps=1).shape == (4, 4, 2)
    assert torch.isfinite(policy.sample(obs)).all()
    with pytest.raises(ValueError, match="sampler"):
        policy.set_sampler("rk4")


def test_cfm_loss_per_pair_matches_loss():
    policy = toy_policy("flow").eval()
    obs, action = toy_data()
    eps, t = torch.randn(4, 3, 4, 2), torch.rand(4, 3)
    per_pair = policy.cfm_loss(obs, action, eps, t)
    assert per_pair.shape == (4, 3) and (per_pair >= 0).all()
    batch = {"obs": obs, "action": action}
    for j in range(3):
        whole = policy.loss(batch, noise=eps[:, j], t=t[:, j])
        torch.testing.assert_close(per_pair[:, j].mean(), whole)
    ratio = torch.exp(per_pair.detach() - policy.cfm_loss(obs, action, eps, t))  # FPO's ratio
    torch.testing.assert_close(ratio, torch.ones_like(ratio))
    ratio.mean().backward()
    assert all(p.grad is not None for p in policy.model.parameters())
    with pytest.raises(Exception, match="eps has shape"):
        policy.cfm_loss(obs, action, eps[:, :, :2], t)
    with pytest.raises(Exception, match="t has shape"):
        policy.cfm_loss(obs, action, eps, t[:, :2])


def test_time_sampling():
    policy = toy_policy("flow", time_sampling="beta", min_time=0.001)
    torch.manual_seed(0)
    t = policy.sample_time((20000,))
    assert t.min() >= 0.001 and t.max() <= 1.0
    assert abs(t.mean().item() - (0.001 + 0.999 * 0.6)) < 0.01  # Beta(1.5, 1) has mean 0.6
    uniform = toy_policy("flow", time_sampling="uniform").sample_time((20000,))
    assert abs(uniform.mean().item() - 0.5) < 0.01


def test_config_round_trip_and_validation():
    config = FlowConfig(
        shapes={"state": (3,), "action": (2,)}, denoiser=TransformerDenoiserConfig()
    )
    again = from_dict(PolicyConfig, to_dict(config))
    assert again == config and isinstance(again.denoiser, TransformerDenoiserConfig)
    with pytest.raises(ConfigError, match="did you mean 'midpoint'"):
        from_dict(PolicyConfig, {**to_dict(config), "sampler": "midpont"})
    for bad in (dict(steps=0), dict(min_time=1.0), dict(time_scale=0.0)):
        with pytest.raises(ValueError):
            FlowConfig(**bad)


def test_save_load_gives_identical_samples(tmp_path):
    policy = toy_policy("flow", sampler="midpoint", steps=4).eval()
    obs, _ = toy_data()
    noise = torch.randn(4, 4, 2)
    loaded = robopolicy.load_policy(save_policy(policy, tmp_path / "ckpt"))
    assert isinstance(loaded, FlowPolicy) and loaded.config == policy.config
    torch.testing.assert_close(loaded.sample(obs, noise=noise), policy.sample(obs, noise=noise))
    loaded.set_sampler("euler", steps=2)
    assert loaded.config.sampler == "euler" and loaded.sample(obs).shape == (4, 4, 2)


def test_image_policy_from_a_store(tmp_path):
    data = SequenceDataset(
        SequenceDatasetConfig(
            toy_store(tmp_path / "toy.zarr"), obs_keys=(), image_keys=["image.front"], **WINDOW
        )
    )
    config = FlowConfig(
        obs_keys=(),
        image_keys=("image.front",),
        denoiser=TransformerDenoiserConfig(d_model=16, n_heads=2, n_layers=1),
        encoder=ObsEncoderConfig(
            image_feature_dim=4, backbone_width=8, group_size=4, num_keypoints=4, crop_shape=None
        ),
        steps=2,
        **WINDOW,
    )
    policy = make_policy(config, data)
    batch = data[[0, 1, 2]]
    loss = policy.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    policy.eval()
    noise = torch.randn(3, 4, 2)
    out = policy.sample(batch["obs"], noise=noise)
    assert out.shape == (3, 4, 2) and torch.isfinite(out).all()
    loaded = robopolicy.load_policy(save_policy(policy, tmp_path / "ckpt"))
    torch.testing.assert_close(loaded.sample(batch["obs"], noise=noise), out)

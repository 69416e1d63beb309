"""The Gaussian MLP policy: sampling contract, log-probabilities, BC loss, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from robopolicy.policies.base import BatchError
from robopolicy.policies.checkpoint import load_policy, save_policy
from robopolicy.policies.gaussian import GaussianPolicy, GaussianPolicyConfig


def make(**window) -> GaussianPolicy:
    torch.manual_seed(0)
    config = GaussianPolicyConfig(init_std=0.5, **window)
    return GaussianPolicy.untrained(config, {"state": (3,)}, (2,), (-2.0, 0.0), (2.0, 1.0))


def obs(batch: int, to: int = 1) -> dict[str, torch.Tensor]:
    return {"state": torch.randn(batch, to, 3, generator=torch.Generator().manual_seed(1))}


def test_sample_is_mean_plus_std_noise_in_raw_units():
    policy = make(n_obs_steps=2, horizon=4, n_action_steps=2)
    o = obs(5, to=2)
    noise = torch.randn(5, 4, 2)
    a, b = policy.sample(o, noise=noise), policy.sample(o, noise=noise)
    torch.testing.assert_close(a, b)  # deterministic given the noise
    mean = policy.sample(o, noise=torch.zeros(5, 4, 2))
    raw, normalized = policy.sample_chunk(o, noise)
    torch.testing.assert_close(raw, a)
    torch.testing.assert_close(normalized, policy.mean(o) + 0.5 * noise)
    # min_max over the bounds: normalized [-1, 1] is raw [-2, 2] and [0, 1]
    torch.testing.assert_close((a - mean) / torch.tensor([2.0, 0.5]), 0.5 * noise)
    assert policy.sample(o).shape == (5, 4, 2) and not policy.sample(o).requires_grad
    with pytest.raises(BatchError, match="noise"):
        policy.sample(o, noise=torch.zeros(5, 3, 2))
    with pytest.raises(BatchError, match="state"):
        policy.sample(obs(5, to=1))


def test_log_prob_and_entropy_of_the_executed_actions_match_torch():
    policy = make(n_obs_steps=2, horizon=4, n_action_steps=2)
    o = obs(6, to=2)
    executed = policy.executed
    assert (executed.start, executed.stop) == (1, 3)
    actions = torch.randn(6, 2, 2)
    dist = Normal(policy.mean(o)[:, 1:3], policy.std())
    torch.testing.assert_close(policy.log_prob(o, actions), dist.log_prob(actions).sum((1, 2)))
    torch.testing.assert_close(policy.entropy(), dist.entropy()[0].sum())


def test_bc_loss_and_checkpoint_round_trip(tmp_path):
    policy = make()
    batch = {"obs": obs(8), "action": torch.rand(8, 1, 2)}
    mse = policy.loss(batch)
    target = policy.normalizer.normalize(batch["action"], "action")
    torch.testing.assert_close(mse, (policy.mean(batch["obs"]) - target).pow(2).mean())
    nll = make(bc_loss="nll").loss(batch)
    assert torch.isfinite(nll)
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    assert isinstance(loaded, GaussianPolicy) and loaded.config == policy.config
    noise = torch.randn(8, 1, 2)
    torch.testing.assert_close(
        loaded.sample(batch["obs"], noise=noise), policy.sample(batch["obs"], noise=noise)
    )


def test_config_is_validated():
    with pytest.raises(ValueError, match="std"):
        GaussianPolicyConfig(init_std=5.0, max_std=2.0)
    with pytest.raises(ValueError, match="activation"):
        GaussianPolicyConfig(activation="sigmoid")
    with pytest.raises(ValueError, match="low-dim"):
        GaussianPolicyConfig(image_keys=("image.front",))

"""The shared RL math against hand-written references: GAE over chunks, reward scaling, stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robopolicy.rl.advantages import (
    RewardScaler,
    RunningMeanStd,
    bootstrap_values,
    explained_variance,
    gae,
    normalize,
)


@st.composite
def rollouts(draw):
    """Random (T, N, n) rewards with executed prefixes, episode ends and values."""
    t, n_envs, n = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    floats = st.floats(-5, 5, allow_nan=False, width=32)
    rewards = np.array(draw(st.lists(floats, min_size=t * n_envs * n, max_size=t * n_envs * n)))
    steps = np.array(draw(st.lists(st.integers(1, n), min_size=t * n_envs, max_size=t * n_envs)))
    ends = np.array(
        draw(st.lists(st.sampled_from("..ct"), min_size=t * n_envs, max_size=t * n_envs))
    )
    values = np.array(draw(st.lists(floats, min_size=t * n_envs, max_size=t * n_envs)))
    last = np.array(draw(st.lists(floats, min_size=n_envs, max_size=n_envs)))
    executed = np.arange(n)[None, :] < steps[:, None]
    return {
        "rewards": torch.tensor(rewards.reshape(t, n_envs, n) * executed.reshape(t, n_envs, n)),
        "executed": torch.tensor(executed.reshape(t, n_envs, n)),
        "terminated": torch.tensor((ends == "t").reshape(t, n_envs)),
        "truncated": torch.tensor((ends == "c").reshape(t, n_envs)),
        "values": torch.tensor(values.reshape(t, n_envs), dtype=torch.float64),
        "last": torch.tensor(last, dtype=torch.float64),
        "gamma": draw(st.floats(0.0, 1.0)),
        "lam": draw(st.floats(0.0, 1.0)),
    }


def reference_advantages(r: dict, final: dict[tuple[int, int], float]) -> np.ndarray:
    """A_t = G_t - V_t with G_t the λ-weighted average of the returns that bootstrap at each
    later decision boundary, per-step λ: weight (1 - λ^n) λ^(steps before) on each, the rest on
    the episode's end (or the batch's), walked forward from t with plain loops."""
    rewards, executed = r["rewards"].numpy(), r["executed"].numpy()
    values, last = r["values"].numpy(), r["last"].numpy()
    term, trunc = r["terminated"].numpy(), r["truncated"].numpy()
    gamma, lam = r["gamma"], r["lam"]
    t_max, n_envs, _ = rewards.shape
    out = np.zeros((t_max, n_envs))
    for i in range(n_envs):
        for t in range(t_max):
            total, weight, discount, acc, k = 0.0, 1.0, 1.0, 0.0, t
            while True:
                for j in range(int(executed[k, i].sum())):
                    acc += discount * rewards[k, i, j]
                    discount *= gamma
                steps = int(executed[k, i].sum())
                if term[k, i]:
                    total += weight * acc
                    break
                if trunc[k, i]:
                    total += weight * (acc + discount * final[(k, i)])
                    break
                following = values[k + 1, i] if k + 1 < t_max else last[i]
                if k + 1 == t_max:
                    total += weight * (acc + discount * following)
                    break
                total += weight * (1 - lam**steps) * (acc + discount * following)
                weight *= lam**steps
                k += 1
            out[t, i] = total - values[t, i]
    return out


def run_gae(r: dict, final_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    after = bootstrap_values(r["values"], r["last"], r["terminated"], r["truncated"], final_values)
    ended = r["terminated"] | r["truncated"]
    return gae(r["rewards"], r["executed"], r["values"], after, ended, r["gamma"], r["lam"])


@settings(max_examples=150, deadline=None)
@given(rollouts(), st.integers(0, 2**31))
def test_gae_over_chunks_matches_the_reference(r, seed):
    where = r["truncated"].nonzero().tolist()
    final_values = torch.randn(len(where), generator=torch.Generator().manual_seed(seed)).double()
    final = {(t, i): float(v) for (t, i), v in zip(where, final_values, strict=True)}
    advantages, returns = run_gae(r, final_values)
    np.testing.assert_allclose(advantages.numpy(), reference_advantages(r, final), atol=1e-6)
    np.testing.assert_allclose(returns.numpy(), (advantages + r["values"]).numpy())


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.floats(0, 1), st.floats(0, 1), st.integers(0, 99))
def test_one_step_chunks_are_the_usual_gae(t_max, n_envs, gamma, lam, seed):
    """With Ta = 1 it is cleanrl's GAE (done flags, no truncation)."""
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(t_max, n_envs, generator=g).double()
    values = torch.randn(t_max, n_envs, generator=g).double()
    last = torch.randn(n_envs, generator=g).double()
    dones = torch.rand(t_max, n_envs, generator=g) < 0.2
    expected = torch.zeros(t_max, n_envs, dtype=torch.float64)
    running = torch.zeros(n_envs, dtype=torch.float64)
    for t in reversed(range(t_max)):
        following = values[t + 1] if t + 1 < t_max else last
        alive = (~dones[t]).double()
        delta = rewards[t] + gamma * following * alive - values[t]
        running = delta + gamma * lam * alive * running
        expected[t] = running
    none = torch.zeros(t_max, n_envs, dtype=torch.bool)
    after = bootstrap_values(values, last, dones, none, torch.zeros(0))
    executed = torch.ones(t_max, n_envs, 1, dtype=torch.bool)
    advantages, _ = gae(rewards[..., None], executed, values, after, dones, gamma, lam)
    torch.testing.assert_close(advantages, expected)


def test_truncation_bootstraps_from_the_final_observation_in_nonzero_order():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    truncated = torch.tensor([[False, True], [True, False], [False, False]])
    terminated = torch.tensor([[False, False], [False, True], [False, False]])
    after = bootstrap_values(
        values, torch.tensor([7.0, 8.0]), terminated, truncated, torch.tensor([10.0, 20.0])
    )
    # (0, 1) -> first final value, (1, 0) -> second; (1, 1) terminated -> 0; last row -> next_obs
    torch.testing.assert_close(after, torch.tensor([[3.0, 10.0], [20.0, 0.0], [7.0, 8.0]]))
    with pytest.raises(ValueError, match="gamma"):
        gae(
            torch.zeros(1, 1, 1),
            torch.ones(1, 1, 1, dtype=torch.bool),
            values[:1, :1],
            values[:1, :1],
            terminated[:1, :1],
            1.5,
            0.9,
        )


def test_reward_scaling_divides_by_the_running_return_std():
    """Two envs, chunks of 2 steps; env 0's episode ends at its second step of decision 0."""
    rewards = torch.tensor([[[1.0, 2.0], [3.0, 0.5]], [[4.0, 0.0], [1.0, 1.0]]])  # (T=2, N=2, n=2)
    executed = torch.tensor([[[True, True], [True, True]], [[True, False], [True, True]]])
    dones = torch.tensor([[[False, True], [False, False]], [[False, False], [False, False]]])
    gamma = 0.9
    scaler = RewardScaler(2, gamma, clip=10.0)
    scaled = scaler(rewards, executed, dones)
    # returns by hand: env 0: 1, 2 + 0.9 * 1 = 2.9 | reset | 4;  env 1: 3, 3.2, 3.88, 4.492
    seen = np.array([1.0, 2.9, 4.0, 3.0, 0.5 + 0.9 * 3.0, 1.0 + 0.9 * 3.2, 1.0 + 0.9 * 3.88])
    prior = 1e-4  # RunningMeanStd starts at mean 0, variance 1 with this weight
    mean = seen.sum() / (len(seen) + prior)
    var = (
        seen.var() * len(seen)
        + prior
        + (seen.mean() ** 2) * prior * len(seen) / (len(seen) + prior)
    ) / (len(seen) + prior)
    assert float(scaler.stats.mean) == pytest.approx(mean, rel=1e-6)
    assert float(scaler.stats.var) == pytest.approx(var, rel=1e-6)
    torch.testing.assert_close(
        scaled, (rewards / np.sqrt(var + 1e-8)).float(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(scaler.returns.numpy(), [4.0, 1.0 + 0.9 * 3.88])
    # the returns carry over to the next batch; clipping bounds the scaled rewards
    big = scaler(
        torch.full((1, 2, 1), 1e6),
        torch.ones(1, 2, 1, dtype=torch.bool),
        torch.zeros(1, 2, 1, dtype=torch.bool),
    )
    assert big.abs().max() <= 10.0 + 1e-6
    state = scaler.state_dict()
    again = RewardScaler(2, gamma)
    again.load_state_dict(state)
    torch.testing.assert_close(again.scale(rewards), scaler.scale(rewards))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=5), st.integers(0, 99))
def test_running_mean_std_matches_the_whole_stream(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randn(size, 3, generator=g) * 3 + 1 for size in sizes]
    stats = RunningMeanStd((3,), count=1e-12)
    for batch in batches:
        stats.update(batch)
    whole = torch.cat(batches).double()
    torch.testing.assert_close(stats.mean, whole.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.var, whole.var(0, unbiased=False), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.min, whole.min(0).values)
    torch.testing.assert_close(stats.max, whole.max(0).values)


def test_normalize_and_explained_variance():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    z = normalize(x)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6) and float(z.std()) == pytest.approx(
        1.0, abs=1e-6
    )
    target = torch.tensor([1.0, -1.0, 2.0, 0.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), float(target.mean())), target) == pytest.approx(0.0)
    assert np.isnan(explained_variance(target, torch.ones(4)))

"""Sweep of the locomotion tasks (``family == "locomotion"``) and ``robopolicy medium``."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from robopolicy.cli import main
from robopolicy.data.dataset import SequenceDataset, SequenceDatasetConfig
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from robopolicy.policies.checkpoint import load_policy
from sim.registry import load_tasks, make_task
from sim.tasks.locomotion import LOCOMOTION, normalized_score

TASKS = sorted(name for name, spec in load_tasks().items() if spec.family == "locomotion")
SIZES = {"hopper": (11, 3), "walker2d": (17, 6), "halfcheetah": (17, 6)}


def states(env: gym.Env, seed: int, actions: list[np.ndarray]) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    out = [obs["state"]]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        out.append(obs["state"])
        if terminated or truncated:
            break
    return np.stack(out)


def test_the_three_tasks_are_registered_without_an_extra():
    assert TASKS == ["halfcheetah", "hopper", "walker2d"]
    for name in TASKS:
        spec = load_tasks()[name]
        assert spec.extra is None and spec.max_episode_steps == 1000


@pytest.mark.parametrize("name", TASKS)
def test_reset_and_step_match_the_declared_spaces(name):
    env = make_task(name)
    env.action_space.seed(0)
    obs, info = env.reset(seed=0)
    ds, da = SIZES[name]
    meta = env.unwrapped.task_meta
    assert env.observation_space.contains(obs)
    assert obs["state"].shape == (ds,) == (len(meta.state_names),)
    assert env.action_space.shape == (da,) == (len(meta.action_names),)
    assert obs["timestamp"] == 0.0 and info["is_success"] is False
    total = 0.0
    for step in range(40):
        action = np.zeros(da, np.float32) if step < 20 else env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        assert obs["state"].dtype == np.float32 and np.isfinite(obs["state"]).all()
        assert obs["timestamp"] == pytest.approx((step + 1) / meta.fps)
        assert isinstance(reward, float) and info["is_success"] is False
        assert info["score"] == pytest.approx(normalized_score(name, total))
        assert not truncated
        if terminated:
            break
    env.close()


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_trajectory_and_bad_actions(name):
    env_a, env_b = make_task(name), make_task(name)
    env_a.action_space.seed(3)
    actions = [env_a.action_space.sample() for _ in range(30)]
    a = states(env_a, 7, actions)
    np.testing.assert_array_equal(a, states(env_b, 7, actions))
    np.testing.assert_array_equal(a, states(env_a, 7, actions))  # a reused env replays it
    assert not np.array_equal(a[0], env_a.reset(seed=8)[0]["state"])
    # out-of-range actions are clipped to [-1, 1]; non-finite ones refused
    big = [np.full(env_a.action_space.shape, 5.0)] * 5
    ones = [np.ones(env_a.action_space.shape)] * 5
    np.testing.assert_array_equal(states(env_a, 1, big), states(env_b, 1, ones))
    with pytest.raises(ValueError, match="non-finite"):
        env_a.step(np.full(env_a.action_space.shape, np.nan))


def test_scores_are_d4rl_normalized_returns():
    ref = LOCOMOTION["hopper"]
    assert normalized_score("hopper", ref.ref_min) == pytest.approx(0.0)
    assert normalized_score("hopper", ref.ref_max) == pytest.approx(100.0)
    assert (LOCOMOTION["walker2d"].ref_max, LOCOMOTION["halfcheetah"].ref_max) == (4592.3, 12135.0)


@pytest.mark.slow
def test_medium_writes_a_valid_store_and_resumes(tmp_path, capsys):
    out = tmp_path / "hopper-medium"
    tiny = ["--budget-steps", "512", "--num-envs", "2", "--quiet", "--json", "n_steps=128"]
    tiny += ["eval_episodes=1", "eval_envs=1", "num_minibatches=4", "update_epochs=2"]
    assert main(["medium", "--task", "hopper", "--out", str(out), "--episodes", "2", *tiny]) == 0
    report = json.loads(capsys.readouterr().out)
    store = EpisodeStore.open(out)
    assert sorted(store.keys) == ["action", "reward", "state", "terminal", "timeout", "timestamp"]
    assert store.n_episodes == 2 and store.fps == 125.0
    lengths = store.episode_lengths
    for i in range(2):
        ep = store.episode(i)
        assert ep["state"].shape == (lengths[i], 11) and ep["action"].shape == (lengths[i], 3)
        assert np.abs(ep["action"]).max() <= 1.0
        ends = ep["terminal"] | ep["timeout"]
        assert ends[-1] and not ends[:-1].any() and not (ep["terminal"] & ep["timeout"]).any()
        assert store.episode_meta("return")[i] == pytest.approx(ep["reward"].sum(), rel=1e-5)
        np.testing.assert_allclose(ep["timestamp"], np.arange(lengths[i]) * 0.008, atol=1e-9)
    np.testing.assert_array_equal(store.episode_meta("seed"), [0, 1])
    medium = store.attrs["medium"]
    assert medium["budget_steps"] == 512 and medium["episodes"] == 2
    assert medium["return_mean"] == pytest.approx(store.episode_meta("return").mean())
    assert report["score_mean"] == pytest.approx(store.episode_meta("score").mean())
    assert report["expert_env_steps"] >= 512
    expert = load_policy(medium["expert_checkpoint"])
    assert expert.type_name == "gaussian"
    # a BC dataset can read it; resuming appends the episode an uninterrupted run would have
    assert len(
        SequenceDataset(SequenceDatasetConfig(out, n_obs_steps=1, horizon=1, n_action_steps=1))
    )
    first = store.episode(1)
    assert main(["medium", "--task", "hopper", "--out", str(out), "--episodes", "3", *tiny]) == 0
    store = EpisodeStore.open(out)
    assert store.n_episodes == 3
    for key, value in first.items():
        np.testing.assert_array_equal(store.episode(1)[key], value)
    with pytest.raises(DataError, match="budget_steps"):
        from apps.medium_dataset import MediumConfig, medium

        medium(MediumConfig("hopper", out, budget_steps=1024, episodes=4), progress=False)

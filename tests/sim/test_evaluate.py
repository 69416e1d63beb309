"""Evaluation rollouts: exact seeds whatever the number of envs, Wilson intervals, videos."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robopolicy.data.normalize import Normalizer
from robopolicy.data.video import probe_video
from robopolicy.policies import Policy, PolicyConfig, register_policy
from robopolicy.policies.base import POLICIES
from sim.eval_video import EpisodeRecorder
from sim.evaluate import evaluate_policy, wilson_interval
from tests.sim.toy_envs import ToyEnv


@dataclasses.dataclass
class ChaseConfig(PolicyConfig):
    overshoot: float = 0.0


class ChasePolicy(Policy):
    """Deterministic: every action of the chunk is the cube's latest position (arm-push state
    dims 2:4), so the ee walks into the cube and shoves it about."""

    def __init__(self, config, normalizer):
        super().__init__(config, normalizer)
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.batches: list[int] = []

    def sample(self, obs, *, noise=None, steps=None):
        size = self.check_obs(obs)
        self.batches.append(size)
        cube = obs["state"][:, -1, 2:4] * (1 + self.config.overshoot)
        return cube[:, None].expand(size, self.config.horizon, 2).clone()


if "test-chase" not in POLICIES:
    register_policy("test-chase", ChaseConfig)(ChasePolicy)


def chase_policy() -> ChasePolicy:
    config = ChaseConfig(
        shapes={"state": (6,), "action": (2,)},
        normalization={"state": "identity", "action": "identity"},
        n_obs_steps=2,
        horizon=8,
        n_action_steps=4,
    )
    return ChasePolicy(config, Normalizer(config.normalizer_modes(), {}))


def test_wilson_interval_matches_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.722467, abs=1e-6) and high == pytest.approx(1.0)
    for k in range(0, 21, 4):  # symmetric in successes and failures, and contains k/n
        low, high = wilson_interval(k, 20)
        assert (1 - high, 1 - low) == pytest.approx(wilson_interval(20 - k, 20))
        assert low <= k / 20 <= high
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_episodes_are_exactly_the_seed_range_whatever_num_envs():
    runs = {}
    for num_envs in (1, 2, 3):
        policy = chase_policy()
        runs[num_envs] = evaluate_policy(
            policy, "arm-push", episodes=5, seed=11, num_envs=num_envs, progress=False
        )
        assert set(policy.batches) == {num_envs}
    for figures in runs.values():
        assert [e["seed"] for e in figures["per_episode"]] == [11, 12, 13, 14, 15]
        assert figures["episodes"] == 5 and figures["seed"] == 11
        assert figures["per_episode"] == runs[1]["per_episode"]  # the same episodes, same result
    figures = runs[2]
    per = figures["per_episode"]
    assert figures["success_rate"] == np.mean([e["success"] for e in per])
    assert figures["mean_max_score"] == pytest.approx(np.mean([e["max_score"] for e in per]))
    assert figures["mean_length"] == pytest.approx(np.mean([e["length"] for e in per]))
    low, high = figures["success_rate_ci95"]
    assert (low, high) == wilson_interval(figures["successes"], 5)
    assert all(e["max_score"] >= e["score"] for e in per)
    assert "mean_max_coverage" not in figures  # Push-T only
    assert figures["env_steps"] >= sum(e["length"] for e in per)


def test_videos_of_the_first_episodes(gl, tmp_path):
    figures = evaluate_policy(
        chase_policy(),
        "arm-push",
        episodes=3,
        seed=4,
        num_envs=2,
        videos=2,
        video_dir=tmp_path,
        task_kwargs={"render_size": (64, 96)},
        progress=False,
    )
    assert figures["videos"] == [str(tmp_path / "episode-4.mp4"), str(tmp_path / "episode-5.mp4")]
    for episode, video in zip(figures["per_episode"], figures["videos"], strict=False):
        info = probe_video(video)
        assert (info.height, info.width) == (64, 96)
        assert info.frames == episode["length"] + 1  # the reset, then every step


class _Blind(ToyEnv):
    def render(self):
        raise RuntimeError("no GL here")


def test_a_recorder_without_rendering_records_nothing_and_says_why(tmp_path):
    env = EpisodeRecorder(_Blind(), {3}, tmp_path, fps=10)
    env.reset(seed=3)
    env.step(np.zeros(2, np.float32))
    videos, error = env.video_report()
    assert videos == [] and "no GL here" in error
    assert not list(tmp_path.iterdir())
    env.close()

"""Scripted experts of the built-in tasks: stated success rates, multimodality, the registry."""

from __future__ import annotations

import numpy as np
import pytest

from sim.collect import rollout
from sim.experts import ExpertConfig, ExpertError, expert_config, load_experts, make_expert
from sim.registry import load_tasks, make_task

BUILTIN = sorted(name for name, spec in load_tasks().items() if spec.family == "builtin")
EPISODES = 50
BANDS = {"clean": (0.95, 1.0), "imperfect": (0.5, 0.8)}


def success_rate(task: str, quality: str, episodes: int = EPISODES) -> float:
    env = make_task(task)
    expert = make_expert(task, env, quality=quality)
    wins = [rollout(env, expert, seed)[1] for seed in range(episodes)]
    return float(np.mean(wins))


def test_every_builtin_task_has_a_scripted_expert():
    experts = load_experts()
    for task in BUILTIN:
        assert (task, "scripted") in experts


@pytest.mark.parametrize("quality", sorted(BANDS))
@pytest.mark.parametrize("task", BUILTIN)
def test_expert_success_rate_is_within_its_band(task, quality):
    low, high = BANDS[quality]
    rate = success_rate(task, quality)
    assert low <= rate <= high, f"{task} {quality}: {rate:.2f} not in [{low}, {high}]"


@pytest.mark.parametrize("task", BUILTIN)
def test_expert_is_deterministic_given_the_seed(task):
    env = make_task(task)
    expert = make_expert(task, env, quality="imperfect")
    first, _, _ = rollout(env, expert, 3)
    second, _, _ = rollout(env, expert, 3)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_push_demonstrations_go_round_the_cube_both_ways():
    """The multimodality the task is built for: clean demos pass the cube on either side."""
    env = make_task("arm-push")
    expert = make_expert("arm-push", env, quality="clean")
    sides = []
    for seed in range(40):
        frames, success, _ = rollout(env, expert, seed)
        assert success
        state = frames["state"]
        ee, cube = state[:, :2], state[:, 2:4]
        to_goal = env.unwrapped.target - cube[0]
        u = to_goal / np.linalg.norm(to_goal)
        n = np.array([-u[1], u[0]])
        rel = ee - cube
        # The ee starts between the cube and the target; the step where it first gets level with
        # the cube (on its way to push from behind) tells the side it went round by.
        passing = int(np.argmax(rel @ u <= 0.0))
        assert abs(rel[passing] @ n) > 0.03  # it went round, not through
        sides.append(np.sign(rel[passing] @ n))
    left = np.mean(np.array(sides) > 0)
    assert 0.25 <= left <= 0.75, f"left {left:.2f}: the expert should pick either side"


def test_quality_presets_and_errors():
    assert expert_config("arm-push", "clean") == ExpertConfig()
    assert expert_config("arm-push", "imperfect").careless_prob > 0
    custom = ExpertConfig(noise=0.002)
    assert expert_config("arm-push", custom) is custom
    with pytest.raises(ExpertError, match="did you mean imperfect"):
        expert_config("arm-push", "imperfct")
    with pytest.raises(ExpertError, match="did you mean arm-push"):
        make_expert("arm-pusj", None)
    with pytest.raises(ExpertError, match="no expert 'human'"):
        make_expert("arm-push", None, name="human")
    with pytest.raises(ValueError, match="sloppy_prob"):
        ExpertConfig(sloppy_prob=1.5)

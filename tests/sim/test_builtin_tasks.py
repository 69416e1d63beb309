"""Sweep of every built-in task (``family == "builtin"``), the arm model, and rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sim.registry import TaskError, load_tasks, make_task

BUILTIN = sorted(name for name, spec in load_tasks().items() if spec.family == "builtin")
MODES = ("ee", "joint")


def rollout_states(env: gym.Env, seed: int, actions: list[np.ndarray]) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    states = [obs["state"]]
    for action in actions:
        obs, *_ = env.step(action)
        states.append(obs["state"])
    return np.stack(states)


def test_builtin_tasks_are_registered():
    assert {"arm-push", "arm-pick-place"} <= set(BUILTIN)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", BUILTIN)
def test_reset_and_step_match_the_declared_spaces(name, mode):
    env = make_task(name, action_mode=mode)
    env.action_space.seed(0)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(info) >= {"is_success", "score"}
    meta = env.unwrapped.task_meta
    assert obs["state"].shape == (len(meta.state_names),)
    assert env.action_space.shape == (len(meta.action_names),)
    assert meta.fps == 10.0 and set(meta.cameras) == {"front", "wrist"}
    assert obs["timestamp"].dtype == np.float64 and obs["timestamp"] == 0.0
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    for step in range(30):
        action = zero if step < 10 else env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs["state"].dtype == np.float32 and obs["state"].shape == (len(meta.state_names),)
        assert np.isfinite(obs["state"]).all()
        assert obs["timestamp"] == pytest.approx((step + 1) / meta.fps)
        assert isinstance(info["is_success"], bool) and 0.0 <= info["score"] <= 1.0
        assert isinstance(reward, float) and not truncated
        if terminated:
            obs, _ = env.reset()
    env.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", BUILTIN)
def test_same_seed_same_trajectory_and_seeds_differ(name, mode):
    env_a, env_b = make_task(name, action_mode=mode), make_task(name, action_mode=mode)
    env_a.action_space.seed(1)
    actions = [env_a.action_space.sample() for _ in range(25)]
    a = rollout_states(env_a, 7, actions)
    b = rollout_states(env_b, 7, actions)
    np.testing.assert_array_equal(a, b)
    again = rollout_states(env_a, 7, actions)  # a reused env replays it too
    np.testing.assert_array_equal(a, again)
    firsts = {tuple(env_a.reset(seed=s)[0]["state"].round(6)) for s in range(5)}
    assert len(firsts) == 5


@pytest.mark.parametrize("name", BUILTIN)
def test_bad_inputs_are_refused(name):
    env = make_task(name)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full(env.action_space.shape, np.nan))
    with pytest.raises(TaskError, match="did you mean action_mode"):
        make_task(name, action_mod="ee")
    with pytest.raises(TaskError, match="unknown camera 'top'"):
        make_task(name, cameras=("top",))
    with pytest.raises(TaskError, match="action_mode"):
        make_task(name, action_mode="torque")


@pytest.mark.parametrize("name", BUILTIN)
def test_wild_joint_targets_stay_stable(name):
    env = make_task(name, action_mode="joint")
    env.action_space.seed(2)
    data = env.unwrapped.data
    env.reset(seed=2)
    for _ in range(300):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert np.abs(obs["state"]).max() < 5.0  # no cube launched, nothing blown up
        if terminated or truncated:
            env.reset()
    assert sum(w.number for w in data.warning) == 0


def test_ee_actions_are_tracked():
    env = make_task("arm-pick-place")
    env.reset(seed=0)
    target = np.array([0.4, 0.1, 0.15, 0.0], dtype=np.float32)
    for _ in range(10):
        obs, *_ = env.step(target)
    np.testing.assert_allclose(obs["state"][:3], target[:3], atol=3e-3)


# ---------------------------------------------------------------------------- the arm alone


def test_arm_loads_alone_with_limits():
    from sim.arm import JOINTS, Arm

    arm = Arm.load()
    assert arm.joint_names == JOINTS and len(JOINTS) == 6
    assert np.all(arm.lower < arm.upper) and np.all(arm.velocity_limits > 0)
    assert np.all(arm.lower <= arm.home) and np.all(arm.home <= arm.upper)
    assert arm.model.nu == 8  # six joints and two fingers, all position actuators


def test_arm_ik_reaches_the_workspace_with_the_tool_down():
    from sim.arm import Arm, tool_down

    arm = Arm.load()
    rng = np.random.default_rng(0)
    for _ in range(50):
        target = rng.uniform([0.18, -0.28, 0.02], [0.6, 0.28, 0.3])
        yaw = rng.uniform(-0.5, 0.5)
        q = arm.ik(target, tool_down(yaw), arm.home, iterations=50)
        position, rotation = arm.fk(q)
        np.testing.assert_allclose(position, target, atol=1e-4)
        np.testing.assert_allclose(rotation, tool_down(yaw), atol=1e-3)
        assert np.all(q >= arm.lower) and np.all(q <= arm.upper)


# ---------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("name", BUILTIN)
def test_camera_observations_and_render(gl, name):
    env = make_task(name, cameras=("front", "wrist"), render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for camera in ("front", "wrist"):
        image = obs[f"image.{camera}"]
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert image.std() > 5  # a scene, not a blank frame
    obs, *_ = env.step(env.action_space.sample())
    assert obs["image.front"].shape == (96, 96, 3)
    frame = env.render()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    env.close()
    env.close()  # closing twice is harmless

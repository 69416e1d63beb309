"""Push-T (``sim/tasks/pusht.py``): contract sweep, and agreement with gym-pusht and the real data.

Tests that step the env need the ``pusht`` extra and skip without it; those that compare with
``../shared/data/pusht`` skip without the data (the ``pusht_zarr`` fixture).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.registry import TaskError, load_tasks, make_task

STEPS = 40
REPLAY_POS_TOL = 0.5
"""Pixels. Replaying all 206 recorded episodes from their first state gives a worst error of
0.17 px over a whole episode (median 3e-5 px, the float32 rounding of the data): gym-pusht's
pymunk reproduces the recording; contacts amplify the float32 rounding of the first state."""
REPLAY_ANGLE_TOL = 0.01
"""Radians; the worst measured over all episodes is 2.4e-3."""


@pytest.fixture
def pusht() -> None:
    pytest.importorskip(
        "gym_pusht", reason="Push-T needs the 'pusht' extra: pip install -e '.[pusht]'"
    )


def load_demos(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(states, actions, episode_starts_and_ends)`` of the Push-T replay buffer at ``path``."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    ends = np.asarray(group["meta/episode_ends"][:], dtype=np.int64)
    bounds = np.stack([np.concatenate([[0], ends[:-1]]), ends], axis=1)
    return np.asarray(group["data/state"][:]), np.asarray(group["data/action"][:]), bounds


def state_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Largest position (px) and angle (rad, wrapped) differences between two state arrays."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    angle = (diff[..., 4] + math.pi) % (2 * math.pi) - math.pi
    return float(np.abs(diff[..., :4]).max()), float(np.abs(angle).max())


def replay(env, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, dict]:
    """Reset to ``states[0]``, apply ``actions``; the observed states and the last info."""
    obs, info = env.reset(options={"reset_to_state": states[0]})
    observed = [obs["state"]]
    for action in actions:
        obs, _, _, _, info = env.step(action)
        observed.append(obs["state"])
    return np.stack(observed), info


def test_pusht_is_listed_without_importing_gym_pusht():
    spec = load_tasks()["pusht"]
    assert (spec.family, spec.extra, spec.max_episode_steps) == ("pusht", "pusht", 300)
    code = "import sys; from sim.registry import load_tasks; load_tasks(); print(*sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not {"gym_pusht", "pygame", "pymunk", "cv2"} & set(out.stdout.split())


def test_missing_extra_names_the_install(monkeypatch):
    for module in ("gym_pusht", "gym_pusht.envs", "gym_pusht.envs.pusht"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` raises ModuleNotFoundError
    with pytest.raises(TaskError, match=r"pip install -e '\.\[pusht\]'"):
        make_task("pusht")


@pytest.mark.parametrize("cameras", [(), ("top",)])
def test_reset_and_step_match_the_declared_spaces(pusht, cameras):
    env = make_task("pusht", cameras=cameras)
    env.action_space.seed(0)
    obs, info = env.reset(seed=0)
    meta = env.unwrapped.task_meta
    assert meta.state_names == ("agent_x", "agent_y", "block_x", "block_y", "block_angle")
    assert (meta.fps, meta.cameras, env.action_space.shape) == (10.0, ("top",), (2,))
    assert env.observation_space.contains(obs) and obs["timestamp"] == 0.0
    images = {f"image.{c}" for c in cameras}
    assert set(obs) == {"state", "keypoint", "agent_pos", "timestamp"} | images
    assert isinstance(info["is_success"], bool) and 0.0 <= info["score"] <= 1.0
    for step in range(STEPS):
        action = np.zeros(2, np.float32) if step < STEPS // 2 else env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs), obs
        assert np.isfinite(obs["state"]).all()
        assert obs["timestamp"] == pytest.approx((step + 1) / 10)
        assert info["score"] == pytest.approx(min(info["coverage"] / 0.95, 1.0))
        assert info["is_success"] == (info["coverage"] > 0.95) == terminated
        assert isinstance(reward, float) and not truncated
    if cameras:
        assert obs["image.top"].shape == (96, 96, 3) and obs["image.top"].dtype == np.uint8
        assert obs["image.top"].std() > 0
    assert env.render().shape == (384, 384, 3)
    env.close()


def test_unknown_camera_or_option_is_refused(pusht):
    with pytest.raises(ValueError, match="top"):
        make_task("pusht", cameras=("front",))
    with pytest.raises(TypeError, match="did you mean 'image_size'"):
        make_task("pusht", img_size=64)


def test_same_seed_same_trajectory_and_seeds_differ(pusht):
    actions = np.random.default_rng(0).uniform(0, 512, (STEPS, 2)).astype(np.float32)

    def run(env, seed: int) -> np.ndarray:
        obs, _ = env.reset(seed=seed)
        return np.stack([obs["state"]] + [env.step(a)[0]["state"] for a in actions])

    env_a, env_b = make_task("pusht"), make_task("pusht")
    first = run(env_a, 3)
    np.testing.assert_array_equal(first, run(env_b, 3))
    np.testing.assert_array_equal(first, run(env_a, 3))  # the same env, reset again
    assert not np.array_equal(first[0], run(env_b, 4)[0])


def test_state_is_gym_pusht_state_observation(pusht):
    from gym_pusht.envs.pusht import PushTEnv

    ours, theirs = make_task("pusht"), PushTEnv(obs_type="state")
    obs, _ = ours.reset(seed=7)
    raw, _ = theirs.reset(seed=7)
    for action in np.random.default_rng(1).uniform(0, 512, (STEPS, 2)):
        np.testing.assert_array_equal(obs["state"], raw.astype(np.float32))
        obs, *_ = ours.step(action)
        raw, *_ = theirs.step(action)


def test_reset_to_a_recorded_state_matches_the_data(pusht, pusht_zarr):
    import zarr

    states, _, bounds = load_demos(pusht_zarr)
    assert states.shape[1] == 5 and states[:, 4].min() >= 0 and states[:, 4].max() < 2 * math.pi
    images = zarr.open_group(str(pusht_zarr), mode="r")["data/img"]
    env = make_task("pusht", cameras=("top",))
    for index in (*bounds[:3, 0], 1000, 5000):
        obs, _ = env.reset(options={"reset_to_state": states[index]})
        assert state_error(obs["state"], states[index]) < (1e-3, 1e-5)
        # the data's frames are this renderer's: a few edge pixels differ
        difference = np.abs(obs["image.top"].astype(np.float32) - images[index])
        assert difference.mean() < 1.0 and (difference > 30).mean() < 0.01


@pytest.mark.parametrize("episode", [0, 20, 107])  # 107 is the worst of all 206
def test_replaying_recorded_actions_reproduces_recorded_states(pusht, pusht_zarr, episode):
    states, actions, bounds = load_demos(pusht_zarr)
    start, end = bounds[episode]
    observed, _ = replay(make_task("pusht"), states[start:end], actions[start : end - 1])
    position, angle = state_error(observed, states[start:end])
    assert position < REPLAY_POS_TOL and angle < REPLAY_ANGLE_TOL, (position, angle)


@pytest.mark.slow
def test_every_recorded_episode_replays_and_ends_near_the_target(pusht, pusht_zarr):
    states, actions, bounds = load_demos(pusht_zarr)
    env = make_task("pusht")
    errors, coverages = [], []
    for start, end in bounds:
        observed, _ = replay(env, states[start:end], actions[start : end - 1])
        errors.append(state_error(observed, states[start:end]))
        _, _, _, _, info = env.step(actions[end - 1])  # the demo's last action
        coverages.append(info["coverage"])
    errors = np.array(errors)
    assert errors[:, 0].max() < REPLAY_POS_TOL and errors[:, 1].max() < REPLAY_ANGLE_TOL
    assert np.median(errors[:, 0]) < 1e-3
    assert min(coverages) > 0.85 and np.median(coverages) > 0.88


def test_final_recorded_frame_scores_high(pusht, pusht_zarr):
    states, actions, bounds = load_demos(pusht_zarr)
    env = make_task("pusht")
    for end in bounds[:5, 1]:
        _, info = env.reset(options={"reset_to_state": states[end - 1]})
        assert info["score"] > 0.8 and not info["is_success"]
    start, end = bounds[20]  # a demo whose last action crosses the success threshold
    replay(env, states[start:end], actions[start : end - 1])
    _, reward, terminated, _, info = env.step(actions[end - 1])
    assert info["is_success"] and terminated and info["score"] == reward == 1.0


def test_keypoints_follow_the_block_as_the_data_records_them(pusht_zarr):
    import zarr

    from sim.tasks.pusht import block_keypoints

    group = zarr.open_group(str(pusht_zarr), mode="r")
    states, keypoints = group["data/state"][:], group["data/keypoint"][:]
    pairs = zip(states, keypoints, strict=True)
    errors = np.array([np.abs(block_keypoints(s) - k).max() for s, k in pairs])
    assert np.median(errors) < 0.01
    assert np.quantile(errors, 0.999) < 0.5


def test_keypoint_observation(pusht):
    env = make_task("pusht")
    obs, _ = env.reset(seed=3)
    from sim.tasks.pusht import block_keypoints

    assert env.observation_space["keypoint"].contains(obs["keypoint"])
    np.testing.assert_allclose(obs["keypoint"], block_keypoints(obs["state"]), rtol=1e-6)
    env.close()


def test_train_and_eval_from_the_replay_buffer_as_distributed(pusht, pusht_zarr, tmp_path, capsys):
    """``robopolicy train --task pusht --data <Diffusion Policy's zarr>``: ``agent_pos`` comes
    from ``state``; the checkpoint evaluates with Push-T's ``mean_max_coverage``."""
    import json

    from robopolicy.cli import main

    out = tmp_path / "run"
    small = ["max_steps=3", "batch_size=16", "policy.denoiser.hidden_dims=[16,16,16]"]
    args = ["train", "--task", "pusht", "--data", str(pusht_zarr), "--out", str(out)]
    assert main([*args, "--no-eval", "--json", *small]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    checkpoint = str(out / "checkpoints" / "latest")
    assert main(["eval", checkpoint, "--episodes", "1", "--videos", "0", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["task"] == "pusht" and figures["episodes"] == 1
    assert 0.0 <= figures["mean_max_coverage"] == figures["mean_max_score"] <= 1.0

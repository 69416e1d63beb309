"""Gaussian PPO end to end on a tiny task: it learns, it resumes after a kill, it fine-tunes.

``PointEnv`` is small enough for CI: a point in the plane moves by ``0.1 * action`` per step
towards a random target; reward ``-distance``; the episode terminates (success) within 0.1 of the
target and is truncated after 30 steps. A random policy returns about -25, a good one about -6.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from robopolicy.cli import main
from robopolicy.config import ConfigError, build
from robopolicy.data.store import EpisodeStore
from robopolicy.policies.checkpoint import load_policy, read_card
from robopolicy.policies.gaussian import GaussianPolicy, GaussianPolicyConfig
from robopolicy.rl.ppo import PPOConfig, train
from robopolicy.runlog import read_scalars
from robopolicy.train.checkpoints import LATEST, CheckpointDir
from robopolicy.train.state import load_tree
from sim.registry import TaskMeta
from sim.rollout import SimRollouts

ROOT = Path(__file__).resolve().parents[2]


class PointEnv(gym.Env):
    """See the module docstring (the task contract: ``state``, ``timestamp``, ``score``...)."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(
            state=spaces.Box(-np.inf, np.inf, (4,), np.float32),
            timestamp=spaces.Box(0.0, np.inf, (), np.float64),
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.task_meta = TaskMeta(("x", "y", "goal_x", "goal_y"), ("vx", "vy"), "0.1 m", 10.0)
        self._pos, self._goal, self._t = np.zeros(2), np.zeros(2), 0

    def _obs(self) -> dict[str, np.ndarray]:
        state = np.concatenate([self._pos, self._goal]).astype(np.float32)
        return {"state": state, "timestamp": np.float64(self._t / 10.0)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos, self._goal = self.np_random.uniform(-1, 1, (2, 2))
        self._t = 0
        return self._obs(), {"is_success": False, "score": 0.0}

    def step(self, action):
        self._pos = self._pos + 0.1 * np.clip(np.asarray(action, np.float64), -1, 1)
        self._t += 1
        distance = float(np.linalg.norm(self._pos - self._goal))
        success = distance < 0.1
        info = {"is_success": success, "score": float(success)}
        return self._obs(), -distance, success, False, info


def make_point() -> gym.Env:
    return gym.wrappers.TimeLimit(PointEnv(), max_episode_steps=30)


def point_rollouts() -> SimRollouts:
    return SimRollouts("point", env_fn=make_point, in_process=True)


def small_config(**overrides) -> PPOConfig:
    """Settings that learn the point task in a few seconds."""
    settings = dict(
        total_env_steps=12_000,
        num_envs=8,
        n_steps=64,
        update_epochs=8,
        num_minibatches=8,
        learning_rate=3e-3,
        value_learning_rate=3e-3,
        eval_every=0,
        eval_episodes=16,
        eval_envs=16,
        checkpoint_every=0,
    )
    return build(PPOConfig, **(settings | overrides))


def write_demos(path: Path, episodes: int = 40, speed: float = 0.5) -> Path:
    """A slow scripted expert's episodes (it heads for the goal at ``speed``): suboptimal."""
    store = EpisodeStore.create(path, fps=10.0)
    env = make_point()
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        frames: dict[str, list] = {"state": [], "action": [], "timestamp": []}
        while True:
            pos, goal = obs["state"][:2], obs["state"][2:]
            action = (np.clip((goal - pos) / 0.1, -1, 1) * speed).astype(np.float32)
            frames["state"].append(obs["state"])
            frames["timestamp"].append(obs["timestamp"])
            frames["action"].append(action)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        store.append_episode({k: np.stack(v) for k, v in frames.items()})
    return path


@pytest.mark.slow
def test_ppo_improves_the_return_of_the_initial_policy(tmp_path):
    result = train(small_config(), point_rollouts(), tmp_path / "run", progress=False)
    before, after = result.eval_before["return"], result.eval_after["return"]
    assert before < -25, before  # the initial policy (mean ~ 0) barely moves
    assert after > -9 and after - before > 15, (before, after)
    assert result.eval_after["success_rate"] > 0.8
    assert result.env_steps >= 12_000 and result.iterations == 24
    policy = load_policy(result.checkpoint)
    assert isinstance(policy, GaussianPolicy)
    assert policy.normalizer.modes["state"] == "mean_std"  # the running statistics travel
    assert float(policy.normalizer.stats("state")["std"].min()) > 0.1
    rows = read_scalars(tmp_path / "run" / "scalars.jsonl")
    steps = [row["step"] for row in rows]
    assert steps == sorted(set(steps)) and steps[-1] == result.env_steps
    assert {"loss/approx_kl", "loss/explained_variance", "train/episode_return"} <= set(rows[-1])
    assert (tmp_path / "run" / "curves.png").is_file()
    assert (tmp_path / "run" / "tensorboard").is_dir()


@pytest.mark.slow
def test_action_chunks_with_an_observation_history_learn_too(tmp_path):
    window = GaussianPolicyConfig(n_obs_steps=2, horizon=3, n_action_steps=2)
    config = small_config(policy=window, total_env_steps=10_000)
    result = train(config, point_rollouts(), tmp_path / "run", progress=False)
    before, after = result.eval_before["return"], result.eval_after["return"]
    assert after - before > 10, (before, after)
    policy = load_policy(result.checkpoint)
    assert (policy.config.n_obs_steps, policy.config.horizon, policy.config.n_action_steps) == (
        2,
        3,
        2,
    )


@pytest.mark.slow
def test_behaviour_cloning_then_ppo_beats_the_demonstrations(tmp_path):
    demos = write_demos(tmp_path / "demos")
    config = small_config(bc_data=str(demos), total_env_steps=6_000)
    result = train(config, point_rollouts(), tmp_path / "run", progress=False)
    before, after = result.eval_before["return"], result.eval_after["return"]
    assert before > -20, before  # cloned: far better than an untrained policy (about -32)
    assert after - before > 3, (before, after)  # and PPO improves on the slow demonstrator
    policy = load_policy(result.checkpoint)
    assert policy.normalizer.modes["state"] == "min_max"  # the data's normalizer is kept


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_latest_checkpoint(tmp_path):
    out = tmp_path / "run"
    code = (
        "from tests.rl.test_ppo import small_config, point_rollouts\n"
        "from robopolicy.rl.ppo import train\n"
        f"train(small_config(total_env_steps=10**7, checkpoint_every=1), point_rollouts(), "
        f"{str(out)!r}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.DEVNULL)
    checkpoints = CheckpointDir(out / "checkpoints")
    deadline = time.monotonic() + 90
    while len(checkpoints.steps()) < 2 or max(checkpoints.steps()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoints came"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    latest = checkpoints.link(LATEST)
    state = load_tree(latest / "trainer_state", "state")
    iteration, env_steps = int(state["iteration"]), int(state["env_steps"])
    assert env_steps == 512 * iteration

    with pytest.raises(ConfigError, match="clip_coef"):
        train(small_config(clip_coef=0.1), point_rollouts(), out, progress=False)
    config = small_config(total_env_steps=env_steps + 1024, checkpoint_every=1)
    result = train(config, point_rollouts(), out, progress=False)
    assert result.iterations == iteration + 2 and result.env_steps == env_steps + 1024
    assert result.eval_before == pytest.approx(state["eval_before"])  # the first run's
    steps = [row["step"] for row in read_scalars(out / "scalars.jsonl")]
    assert steps == sorted(set(steps))  # no step twice: rows past the checkpoint were dropped
    assert steps[-2:] == [env_steps + 512, env_steps + 1024]
    assert checkpoints.link(LATEST).name == f"step-{iteration + 2:07d}"
    assert len(checkpoints.steps()) == 2  # keep_checkpoints
    again = train(config, point_rollouts(), out, progress=False)  # done: nothing to do
    assert again.iterations == result.iterations and again.checkpoint == result.checkpoint


@pytest.mark.slow
def test_finetune_command_from_scratch_then_from_its_checkpoint(tmp_path, capsys):
    tiny = ["total_env_steps=256", "num_envs=2", "n_steps=64", "eval_episodes=1", "eval_envs=1"]
    tiny += ["num_minibatches=2", "update_epochs=1"]
    options = ["--algo", "ppo", "--task", "hopper", "--quiet", "--json"]
    assert main(["finetune", "scratch", *tiny, *options, "--out", str(tmp_path / "a")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["env_steps"] == 256 and set(report["eval_after"]) >= {"return", "score"}
    tuned = [report["checkpoint"], *tiny, "clip_coef=0.01"]
    assert main(["finetune", *options, "--out", str(tmp_path / "b"), *tuned]) == 0
    tuned_report = json.loads(capsys.readouterr().out)
    card = read_card(tuned_report["checkpoint"])
    assert card["task"] == "hopper" and card["algorithm"] == "ppo"
    assert card["command"].startswith("robopolicy")
    assert main(["finetune", *options, "--out", str(tmp_path / "c"), *tuned, "clip_coeff=1"]) == 2
    assert "did you mean 'clip_coef'" in capsys.readouterr().err
    assert main(["finetune", "x", "--algo", "ppx", "--task", "hopper", "--out", "y"]) == 2
    assert "did you mean 'ppo'" in capsys.readouterr().err

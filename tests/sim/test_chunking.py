"""The action-chunk wrapper: history padding and shifting, early stop, accumulation, shapes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.chunking import ActionChunkEnv, ChunkConfig
from sim.vector import VectorEnv, VectorEnvConfig
from tests.sim.toy_envs import make_pendulum, make_toy


def toy_chunks(num_envs: int = 3, to: int = 2, ta: int = 4, **cfg) -> ActionChunkEnv:
    """Toy envs with seeds 0, 1, 2 (episode lengths 3, 4, 5), in this process unless told."""
    factory = functools.partial(make_toy, image=True)
    cfg = {"in_process": True, **cfg}
    venv = VectorEnv(factory, VectorEnvConfig(num_envs=num_envs, seed=0, **cfg))
    return ActionChunkEnv(venv, ChunkConfig(n_obs_steps=to, n_action_steps=ta))


def ramp(num_envs: int, length: int) -> np.ndarray:
    """Chunk whose step j has action sum 0.2 * j + 1.4 (so every step succeeds)."""
    per_step = 0.7 + 0.1 * np.arange(length)
    return np.broadcast_to(per_step[None, :, None], (num_envs, length, 2)).copy()


def test_config_and_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="To"):
        ChunkConfig(n_obs_steps=0)
    with pytest.raises(ValueError, match="Ta"):
        ChunkConfig(n_action_steps=0)
    with toy_chunks() as env:
        with pytest.raises(RuntimeError, match="reset"):
            env.step_chunk(ramp(3, 4))
        env.reset()
        for bad in (np.zeros((2, 4, 2)), np.zeros((3, 0, 2)), np.zeros(3)):
            with pytest.raises(ValueError, match="actions must be"):
                env.step_chunk(bad)


def test_history_is_padded_at_reset() -> None:
    with toy_chunks(to=3) as env:
        obs, info = env.reset()
        assert obs["state"].shape == (3, 3, 3) and obs["timestamp"].shape == (3, 3)
        assert obs["image.front"].shape == (3, 3, 4, 5, 3) and obs["image.front"].dtype == np.uint8
        np.testing.assert_array_equal(obs["state"][:, :, 0], [[0] * 3, [1] * 3, [2] * 3])
        assert (obs["state"][:, :, 1:] == 0).all() and (obs["timestamp"] == 0).all()
        np.testing.assert_array_equal(info["seed"], [0, 1, 2])


def test_chunk_shifts_history_stops_ended_envs_and_accumulates() -> None:
    with toy_chunks() as env:
        env.reset()
        out = env.step_chunk(ramp(3, 6))  # Tp = 6 > Ta = 4: only 4 are executed
        assert out.rewards.shape == out.dones.shape == out.executed.shape == (3, 4)
        # env 0 (3 steps) and env 1 (4 steps) end inside the chunk; env 2 (5 steps) runs on
        np.testing.assert_array_equal(out.executed, [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
        np.testing.assert_array_equal(out.dones, [[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
        np.testing.assert_array_equal(out.n_steps, [3, 4, 4])
        np.testing.assert_array_equal(out.terminated, [True, True, False])
        assert not out.truncated.any() and out.done.tolist() == [True, True, False]
        step_reward = 1.4 + 0.2 * np.arange(4) + np.arange(1, 5)  # sum(action) + t
        np.testing.assert_allclose(out.rewards, step_reward * out.executed)
        np.testing.assert_allclose(out.reward, out.rewards.sum(axis=1))
        np.testing.assert_allclose(out.score, [1.0, 1.0, 4 / 5])
        assert out.is_success.all()
        np.testing.assert_array_equal(out.episode["length"], [3, 4, 4])
        np.testing.assert_allclose(out.episode["return"], out.reward)
        np.testing.assert_array_equal(out.episode["seed"], [0, 1, 2])
        # env 2 shifted: its last two steps (t = 3, 4; action sums 1.8, 2.0)
        np.testing.assert_allclose(out.obs["state"][2], [[2, 3, 1.8], [2, 4, 2.0]], rtol=1e-6)
        np.testing.assert_allclose(out.obs["timestamp"][2], [0.3, 0.4])
        # envs 0 and 1 restarted (seeds 0 + 3, 1 + 3): padded first observation
        np.testing.assert_array_equal(out.obs["state"][:2, :, :2], [[[3, 0]] * 2, [[4, 0]] * 2])
        assert (out.obs["timestamp"][:2] == 0).all()
        # final_obs: the history each ended at; equal to obs for the env still running
        np.testing.assert_allclose(out.final_obs["state"][0], [[0, 2, 1.6], [0, 3, 1.8]], rtol=1e-6)
        np.testing.assert_allclose(out.final_obs["state"][1, :, 1], [3, 4])
        np.testing.assert_array_equal(out.final_obs["image.front"][0, -1], np.full((4, 5, 3), 3))
        np.testing.assert_array_equal(out.final_obs["state"][2], out.obs["state"][2])

        # a chunk shorter than Ta is executed whole; env 2 ends on its first step
        out = env.step_chunk(ramp(3, 2))
        np.testing.assert_array_equal(out.executed, [[1, 1], [1, 1], [1, 0]])
        np.testing.assert_allclose(out.obs["state"][0], [[3, 1, 1.4], [3, 2, 1.6]], rtol=1e-6)
        np.testing.assert_allclose(out.final_obs["state"][2, :, 1:], [[4, 2.0], [5, 1.4]])
        np.testing.assert_array_equal(out.obs["state"][2, :, :2], [[5, 0]] * 2)
        assert out.episode["length"][2] == 5 and out.done.tolist() == [False, False, True]


def test_success_is_any_step_and_all_ended_stops_early() -> None:
    with toy_chunks(num_envs=1, ta=8) as env:
        env.reset()
        actions = np.zeros((1, 8, 2))
        actions[0, 0] = 0.7  # only the first step succeeds
        out = env.step_chunk(actions)
        assert out.is_success[0] and out.done[0] and out.executed.shape == (1, 8)
        np.testing.assert_array_equal(out.executed[0], [1, 1, 1, 0, 0, 0, 0, 0])
        np.testing.assert_allclose(out.reward, (1.4 + 1) + 2 + 3)


class StepOnly:
    """A batched env without ``step_sequence``: the wrapper falls back to one step per step."""

    def __init__(self, env: VectorEnv) -> None:
        self.env, self.num_envs = env, env.num_envs
        self.reset, self.step, self.close = env.reset, env.step, env.close


def test_sequence_in_workers_matches_step_by_step_in_process() -> None:
    rng = np.random.default_rng(1)
    chunks = [rng.uniform(-1, 1, (3, 5, 2)) for _ in range(6)]
    results = []
    for cfg, step_only in (
        (dict(in_process=True), True),
        (dict(in_process=True), False),
        (dict(in_process=False, num_workers=2), False),
    ):
        env = toy_chunks(ta=3, **cfg)
        if step_only:
            env = ActionChunkEnv(StepOnly(env.env), env.config)
        with env:
            obs, _ = env.reset(seed=5)
            run = [obs["state"]]
            for chunk in chunks:
                out = env.step_chunk(chunk)
                run += [out.obs["state"], out.final_obs["image.front"], out.rewards, out.dones]
                run += [out.executed, out.score, *out.episode.values()]
            results.append(run)
    for a, b, c in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_pendulum_truncates_inside_a_chunk() -> None:
    factory = functools.partial(make_pendulum, max_episode_steps=12)
    venv = VectorEnv(factory, VectorEnvConfig(num_envs=2, seed=0, in_process=True))
    with ActionChunkEnv(venv, ChunkConfig(n_obs_steps=2, n_action_steps=8)) as env:
        obs, _ = env.reset()
        assert obs["state"].shape == (2, 2, 3) and obs["timestamp"].shape == (2, 2)
        chunk = np.zeros((2, 16, 1), np.float32)  # Tp = 16
        out = env.step_chunk(chunk)
        assert out.n_steps.tolist() == [8, 8] and not out.done.any()
        np.testing.assert_allclose(out.obs["timestamp"], [[0.35, 0.4]] * 2)
        out = env.step_chunk(chunk)
        assert out.n_steps.tolist() == [4, 4] and out.truncated.all() and not out.terminated.any()
        np.testing.assert_allclose(out.final_obs["timestamp"], [[0.55, 0.6]] * 2)
        np.testing.assert_allclose(out.obs["timestamp"], 0.0)
        assert np.isfinite(out.reward).all() and out.episode["length"].tolist() == [12, 12]


def reference_chunks(seed: int, n_envs: int, to: int, ta: int, chunks: list[np.ndarray]):
    """One env at a time, no vectorization: per env, per chunk (history, final history, rewards)."""
    out = []
    for i in range(n_envs):
        env, episode = make_toy(image=True), 0
        first, _ = env.reset(seed=seed + i)
        hist = [first] * to
        per_chunk = []
        for chunk in chunks:
            rewards, final = [], None
            for action in chunk[i, :ta]:
                o, r, term, trunc, _ = env.step(action)
                rewards.append(r)
                hist = [*hist[1:], o]
                if term or trunc:
                    final, episode = hist, episode + 1
                    hist = [env.reset(seed=seed + i + episode * n_envs)[0]] * to
                    break
            per_chunk.append((hist, final or hist, rewards))
        out.append(per_chunk)
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 50),
    n_envs=st.integers(1, 3),
    to=st.integers(1, 3),
    ta=st.integers(1, 6),
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=5),
)
def test_chunks_match_a_one_env_reference(seed, n_envs, to, ta, lengths) -> None:
    rng = np.random.default_rng(seed)
    chunks = [rng.uniform(-1, 1, (n_envs, t, 2)) for t in lengths]
    expected = reference_chunks(seed, n_envs, to, ta, chunks)
    with toy_chunks(num_envs=n_envs, to=to, ta=ta) as env:
        env.reset(seed=seed)
        for c, chunk in enumerate(chunks):
            out = env.step_chunk(chunk)
            assert out.rewards.shape == (n_envs, min(ta, chunk.shape[1]))
            for i in range(n_envs):
                hist, final, rewards = expected[i][c]
                k = len(rewards)
                assert out.executed[i].tolist() == [True] * k + [False] * (out.rewards.shape[1] - k)
                np.testing.assert_allclose(out.rewards[i, :k], rewards)
                assert out.dones[i].sum() == out.done[i] and out.dones[i, k - 1] == out.done[i]
                for key in ("state", "timestamp", "image.front"):
                    np.testing.assert_array_equal(out.obs[key][i], [h[key] for h in hist])
                    np.testing.assert_array_equal(out.final_obs[key][i], [h[key] for h in final])

"""The RolloutBatch layout of the simulated collector, checked against the chunk wrapper itself."""

from __future__ import annotations

import functools

import numpy as np
import torch

from robopolicy.rl.rollout import Act, RolloutBatch, concat_envs
from sim.chunking import ActionChunkEnv, ChunkConfig
from sim.rollout import SimRollouts
from sim.vector import VectorEnv, VectorEnvConfig
from tests.sim.toy_envs import make_toy

# toy episodes last 3 + seed % 3 steps; a time limit of 4 truncates the 5-step ones
TOY = functools.partial(make_toy, max_episode_steps=4)


def act(obs: dict[str, torch.Tensor]) -> Act:
    """Deterministic chunks (N, 3, 2) that depend on the observation; two extras."""
    state = obs["state"][:, -1]  # (N, 3): seed, t, last action sum
    base = 0.1 * state[:, :1] + 0.01 * state[:, 1:2]
    actions = (base[:, :, None] + 0.05 * torch.arange(3.0)[None, :, None]).expand(-1, 3, 2)
    return Act(actions.contiguous(), {"seed": state[:, 0], "chunk": actions.clone()})


def test_collector_matches_stepping_the_chunk_env_by_hand():
    rollouts = SimRollouts("toy", env_fn=TOY, in_process=True)
    collector = rollouts.collector(num_envs=3, n_obs_steps=2, n_action_steps=3, seed=0)
    batch = collector.collect(act, 5)
    collector.close()

    env = ActionChunkEnv(
        VectorEnv(TOY, VectorEnvConfig(num_envs=3, seed=0, in_process=True)), ChunkConfig(2, 3)
    )
    obs, _ = env.reset(seed=0)
    finals, returns = [], []
    for t in range(5):
        torch.testing.assert_close(batch.obs["state"][t], torch.from_numpy(obs["state"]))
        torch.testing.assert_close(batch.obs["timestamp"][t], torch.from_numpy(obs["timestamp"]))
        chunk = act({k: torch.from_numpy(v) for k, v in obs.items()}).actions
        torch.testing.assert_close(batch.actions[t], chunk)
        out = env.step_chunk(chunk.numpy())
        n = out.executed.shape[1]
        np.testing.assert_array_equal(batch.executed[t, :, :n].numpy(), out.executed)
        np.testing.assert_allclose(batch.rewards[t, :, :n].numpy(), out.rewards, rtol=1e-6)
        np.testing.assert_array_equal(batch.dones[t, :, :n].numpy(), out.dones)
        assert not batch.executed[t, :, n:].any() and not batch.rewards[t, :, n:].any()
        np.testing.assert_array_equal(batch.terminated[t].numpy(), out.terminated)
        np.testing.assert_array_equal(batch.truncated[t].numpy(), out.truncated & ~out.terminated)
        for i in np.flatnonzero(out.truncated & ~out.terminated):
            finals.append(out.final_obs["state"][i])
        returns += list(out.episode["return"][out.done])
        obs = out.obs
    env.close()
    torch.testing.assert_close(batch.next_obs["state"], torch.from_numpy(obs["state"]))
    assert batch.truncated.any() and batch.terminated.any()  # both kinds of ending happened
    np.testing.assert_array_equal(batch.final_obs["state"].numpy(), np.stack(finals))
    np.testing.assert_allclose(batch.episodes["return"].numpy(), returns)
    assert batch.extras["chunk"].shape == (5, 3, 3, 2) and batch.extras["seed"].shape == (5, 3)
    assert batch.env_steps == int(batch.executed.sum()) and batch.num_envs == 3
    assert set(batch.episodes) == {"return", "length", "success", "score", "seed"}


def test_collection_continues_across_calls_and_concat_keeps_the_final_obs_order():
    rollouts = SimRollouts("toy", env_fn=TOY, in_process=True)
    whole = rollouts.collector(num_envs=2, n_obs_steps=1, n_action_steps=3, seed=0)
    one = whole.collect(act, 6)
    whole.close()
    parts = rollouts.collector(num_envs=2, n_obs_steps=1, n_action_steps=3, seed=0)
    first, second = parts.collect(act, 3), parts.collect(act, 3)
    parts.close()
    torch.testing.assert_close(second.obs["state"], one.obs["state"][3:])
    torch.testing.assert_close(first.next_obs["state"], second.obs["state"][0])

    # groups of envs collected apart (seeds 0-1 and 2-3) join into one batch of 4 envs
    other = SimRollouts("toy", env_fn=TOY, in_process=True).collector(
        num_envs=2, n_obs_steps=1, n_action_steps=3, seed=2
    )
    b = other.collect(act, 6)
    other.close()
    joined = concat_envs([one, b])
    assert isinstance(joined, RolloutBatch) and joined.num_envs == 4
    where = joined.truncated.nonzero()
    assert len(where) == len(joined.final_obs["state"]) >= 2
    # each final observation is its env's: state[0] is the episode seed, which has env = seed % 4
    seeds = joined.final_obs["state"][:, -1, 0].long()
    groups = torch.where(where[:, 1] < 2, seeds % 2, 2 + (seeds - 2) % 2)
    torch.testing.assert_close(groups, where[:, 1])

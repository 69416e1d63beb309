"""The vector env: SAME_STEP autoreset, seed schedule, in-process == workers, errors, shutdown."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim.registry import TaskError
from sim.vector import VectorEnv, VectorEnvConfig, VectorEnvError, make_vector_task
from tests.sim.toy_envs import make_pendulum, make_toy

ROOT = Path(__file__).resolve().parents[2]
ONES = np.full((3, 2), 0.7)  # toy reward = 1.4 + t, is_success (1.4 > 1)


def rollout(venv: VectorEnv, steps: int, seed: int) -> list[np.ndarray]:
    """Flattened per-step record of obs, rewards, flags and final obs, with a partial-step mask."""
    obs, _ = venv.reset(seed=seed)
    record = [obs["state"].copy()]
    rng = np.random.default_rng(0)
    for k in range(steps):
        actions = rng.uniform(-1, 1, (venv.num_envs, 2))
        active = np.arange(venv.num_envs) != k % 4  # every 4th step skips one env
        obs, reward, term, trunc, info = venv.step(actions, active=active)
        record += [obs["state"], reward, term, trunc, info["final_obs"]["state"], info["score"]]
        record += [info["episode"]["return"], info["episode"]["seed"]]
    return record


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if alive(p)}


@pytest.fixture(scope="module")
def workers() -> VectorEnv:
    """Three toy envs in two worker processes, shared by the tests of this module."""
    venv = VectorEnv(make_toy, VectorEnvConfig(num_envs=3, seed=0, in_process=False, num_workers=2))
    yield venv
    venv.close()


def test_config_is_validated() -> None:
    for bad in (
        dict(num_envs=0),
        dict(seed=-1),
        dict(num_envs=2, num_workers=3),
        dict(start_method="fork"),
        dict(timeout_s=0),
    ):
        with pytest.raises(ValueError):
            VectorEnvConfig(**bad)


def test_same_step_autoreset_final_obs_and_seeds() -> None:
    with VectorEnv(make_toy, VectorEnvConfig(num_envs=3, seed=10, in_process=True)) as venv:
        obs, info = venv.reset()
        assert set(obs) == {"state", "timestamp"}
        assert obs["state"].shape == (3, 3) and obs["state"].dtype == np.float32
        assert obs["timestamp"].shape == (3,) and obs["timestamp"].dtype == np.float64
        np.testing.assert_array_equal(info["seed"], [10, 11, 12])  # base + i
        # seeds 10, 11, 12 -> episode lengths 3 + seed % 3 = 4, 5, 3
        for t in range(1, 4):
            obs, reward, term, trunc, info = venv.step(ONES)
            np.testing.assert_allclose(reward, 1.4 + t)
            if t == 1:
                assert info["final_obs"] is obs  # nothing ended: the same arrays
        np.testing.assert_array_equal(term, [False, False, True])
        assert not trunc.any() and info["is_success"].all()
        np.testing.assert_allclose(info["score"], [3 / 4, 3 / 5, 1.0])
        # env 2 ended: obs is its next episode's first (seed 12 + 1 * N = 15), final_obs the end
        np.testing.assert_array_equal(obs["state"][2], [15, 0, 0])
        np.testing.assert_allclose(info["final_obs"]["state"][2], [12, 3, 1.4], rtol=1e-6)
        np.testing.assert_array_equal(info["final_obs"]["state"][:2], obs["state"][:2])
        assert info["final_obs"]["timestamp"][2] == pytest.approx(0.3) and obs["timestamp"][2] == 0
        ep = info["episode"]
        np.testing.assert_array_equal(ep["seed"], [10, 11, 12])
        np.testing.assert_allclose(ep["return"][2], 2.4 + 3.4 + 4.4)
        assert ep["length"][2] == 3 and ep["success"][2] and ep["max_score"][2] == 1.0
        assert info["env_infos"][2]["score"] == 1.0
        np.testing.assert_array_equal(venv.episode_seeds, [10, 11, 15])
        obs, *_, info = venv.step(ONES)
        np.testing.assert_array_equal(obs["state"][:, 0], [13, 11, 15])  # env 0 ended: 10 + 3
        assert info["final_obs"] is not obs and info["episode"]["length"][2] == 1
        # reset() without a seed moves every env to its next episode; with one restarts
        np.testing.assert_array_equal(venv.reset()[1]["seed"], [16, 14, 18])
        np.testing.assert_array_equal(venv.reset(seed=10)[1]["seed"], [10, 11, 12])


def test_partial_steps_leave_inactive_envs_alone() -> None:
    with VectorEnv(make_toy, VectorEnvConfig(num_envs=2, seed=0, in_process=True)) as venv:
        venv.reset()
        obs, reward, *_, info = venv.step(ONES[:2], active=[True, False])
        np.testing.assert_array_equal(obs["state"][:, 1], [1, 0])
        np.testing.assert_array_equal(reward, [2.4, 0.0])
        assert info["env_infos"][1] == {} and info["episode"]["length"].tolist() == [1, 0]


def test_seeding_reproducible_and_workers_match_in_process(workers: VectorEnv) -> None:
    assert workers.task_meta.fps == 10.0 and workers.single_action_space.shape == (2,)
    first, again = rollout(workers, 14, seed=3), rollout(workers, 14, seed=3)
    with VectorEnv(make_toy, VectorEnvConfig(num_envs=3, seed=0, in_process=True)) as local:
        reference = rollout(local, 14, seed=3)
    for a, b, c in zip(first, again, reference, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    different = rollout(workers, 14, seed=4)
    assert not np.array_equal(first[0], different[0])
    # an episode of the schedule replays alone from its seed
    seed = int(workers.episode_seeds[1])
    single, _ = make_toy().reset(seed=seed)
    np.testing.assert_array_equal(workers.call("_seed", indices=[1]), [seed])
    assert single["state"][0] == seed


def test_async_split_and_call(workers: VectorEnv) -> None:
    workers.reset(seed=0)
    workers.step_async(ONES)
    with pytest.raises(RuntimeError, match="in flight"):
        workers.step_async(ONES)
    _, reward, *_ = workers.step_wait()
    np.testing.assert_allclose(reward, 2.4)
    assert workers.call("_t") == [1, 1, 1]
    assert [m.fps for m in workers.call("task_meta", indices=[2, 0])] == [10.0, 10.0]
    with pytest.raises(ValueError, match="actions must be"):
        workers.step(np.zeros((2, 2)))


def test_pendulum_truncation_in_workers() -> None:
    factory = functools.partial(make_pendulum, max_episode_steps=5)
    cfg = VectorEnvConfig(num_envs=2, seed=7, in_process=False)
    with VectorEnv(factory, cfg) as venv, VectorEnv(factory, VectorEnvConfig(2, 7)) as local:
        runs = []
        for env in (venv, local):
            obs, _ = env.reset()
            states = [obs["state"]]
            for _ in range(5):
                obs, reward, term, trunc, info = env.step(np.full((2, 1), 0.5, np.float32))
                states.append(obs["state"])
            runs.append(np.stack(states))
            assert trunc.all() and not term.any()
            assert info["episode"]["length"].tolist() == [5, 5]
            np.testing.assert_allclose(info["final_obs"]["timestamp"], 0.25)
            np.testing.assert_allclose(obs["timestamp"], 0.0)
            assert np.isfinite(reward).all() and obs["state"].shape == (2, 3)
        np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize("in_process", [True, False])
def test_worker_exception_names_the_env(in_process: bool) -> None:
    factory = functools.partial(make_toy, fail_seed=2)
    venv = VectorEnv(factory, VectorEnvConfig(num_envs=3, seed=0, in_process=in_process))
    pids = set(venv.worker_pids)
    assert len(pids) == (0 if in_process else 2)
    venv.reset()
    venv.step(ONES)
    with pytest.raises(VectorEnvError, match="env 2: RuntimeError: toy failure") as caught:
        venv.step(ONES)
    assert caught.value.index == 2
    assert "Traceback" in caught.value.remote_traceback
    assert "in step" in caught.value.remote_traceback and "toy_envs.py" in str(caught.value)
    with pytest.raises(RuntimeError, match="closed"):
        venv.reset()
    assert not wait_gone(pids)


def test_dead_worker_and_close() -> None:
    venv = VectorEnv(make_toy, VectorEnvConfig(num_envs=2, seed=0, in_process=False))
    venv.reset()
    pids = venv.worker_pids
    assert len(pids) == 2 and all(alive(p) for p in pids)
    os.kill(pids[1], signal.SIGKILL)
    with pytest.raises(VectorEnvError, match="env 1: worker died"):
        venv.step(ONES[:2])
    assert not wait_gone(set(pids))
    venv.close()  # idempotent


def test_unknown_task_fails_before_any_worker() -> None:
    with pytest.raises(TaskError, match="unknown task"):
        make_vector_task("no-such-task", num_envs=2)


PARENT = """
import sys, time
from functools import partial
from sim.vector import VectorEnv, VectorEnvConfig
from tests.sim.toy_envs import make_toy
if __name__ == "__main__":
    venv = VectorEnv(partial(make_toy, step_sleep_s=float(sys.argv[1])),
                     VectorEnvConfig(num_envs=2, in_process=False))
    venv.reset()
    venv.step_async([[0.0, 0.0]] * 2)
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("step_sleep_s", [0.0, 60.0])
def test_no_orphans_when_the_parent_is_killed(step_sleep_s: float) -> None:
    """SIGKILL the parent while workers wait for a command, or while they are inside a step."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(step_sleep_s)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout.readline().strip() == "ready"
        pids = descendants(parent.pid)
        assert len(pids) >= 3  # the forkserver and two workers (and maybe a resource tracker)
    finally:
        parent.kill()
        parent.wait()
    assert not wait_gone(pids), "processes left behind by a killed parent"


def test_spawn_start_method_matches() -> None:
    cfg = VectorEnvConfig(num_envs=2, seed=0, in_process=False, start_method="spawn")
    local_cfg = VectorEnvConfig(num_envs=2, seed=0, in_process=True)
    with VectorEnv(make_toy, cfg) as spawned, VectorEnv(make_toy, local_cfg) as local:
        assert len(spawned.worker_pids) == 2 and local.worker_pids == []
        for a, b in zip(rollout(spawned, 8, 1), rollout(local, 8, 1), strict=True):
            np.testing.assert_array_equal(a, b)

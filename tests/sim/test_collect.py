"""``robopolicy collect`` into the episode store, resuming, and ``robopolicy tasks``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sim.collect
from robopolicy.cli import main
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError
from sim.collect import CollectConfig, collect_demos


def test_collect_writes_episodes_with_keys_attrs_and_meta(tmp_path):
    out = tmp_path / "push"
    report = collect_demos(CollectConfig("arm-push", out, episodes=3, seed=10), progress=False)
    assert report.episodes == 3 and report.attempts == 3 and report.new_episodes == 3
    store = EpisodeStore.open(out)
    assert sorted(store.keys) == ["action", "state", "timestamp"]
    episode = store.episode(0)
    length = episode["state"].shape[0]
    assert episode["state"].shape == (length, 6) and episode["state"].dtype == np.float32
    assert episode["action"].shape == (length, 2) and episode["action"].dtype == np.float32
    np.testing.assert_allclose(episode["timestamp"], np.arange(length) / 10.0, atol=1e-9)
    attrs = store.attrs
    assert attrs["fps"] == 10.0 and attrs["tasks"] == ["arm-push"]
    assert attrs["features"]["state"]["names"][:2] == ["ee_x", "ee_y"]
    assert attrs["features"]["action"]["units"].startswith("m")
    np.testing.assert_array_equal(store.episode_meta("seed"), [10, 11, 12])
    assert store.episode_meta("success").dtype == bool
    assert store.episode_meta("score").shape == (3,)
    assert report.successes == int(store.episode_meta("success").sum())


def test_resume_continues_the_seeds_and_matches_one_run(tmp_path):
    whole = tmp_path / "whole"
    parts = tmp_path / "parts"
    collect_demos(CollectConfig("arm-pick-place", whole, episodes=4), progress=False)
    collect_demos(CollectConfig("arm-pick-place", parts, episodes=2), progress=False)
    report = collect_demos(CollectConfig("arm-pick-place", parts, episodes=4), progress=False)
    assert report.new_episodes == 2 and report.episodes == 4
    a, b = EpisodeStore.open(whole), EpisodeStore.open(parts)
    np.testing.assert_array_equal(b.episode_meta("seed"), [0, 1, 2, 3])
    for index in range(4):
        for key, value in a.episode(index).items():
            np.testing.assert_array_equal(b.episode(index)[key], value)
    done = collect_demos(CollectConfig("arm-pick-place", parts, episodes=3), progress=False)
    assert done.attempts == 0 and done.episodes == 4  # already there: nothing to do


def test_an_interrupted_run_resumes_after_the_committed_episodes(tmp_path, monkeypatch):
    out = tmp_path / "push"
    real_rollout = sim.collect.rollout
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_rollout(*args, **kwargs)

    monkeypatch.setattr(sim.collect, "rollout", interrupted)
    with pytest.raises(KeyboardInterrupt):
        collect_demos(CollectConfig("arm-push", out, episodes=5), progress=False)
    monkeypatch.setattr(sim.collect, "rollout", real_rollout)
    assert EpisodeStore.open(out).n_episodes == 2
    collect_demos(CollectConfig("arm-push", out, episodes=5), progress=False)
    np.testing.assert_array_equal(EpisodeStore.open(out).episode_meta("seed"), np.arange(5))


def test_resume_refuses_a_different_collection(tmp_path):
    out = tmp_path / "push"
    collect_demos(CollectConfig("arm-push", out, episodes=1), progress=False)
    for changed in ({"seed": 5}, {"quality": "clean"}, {"task": "arm-pick-place"}):
        options = {"task": "arm-push", "out": out, "episodes": 2, **changed}
        with pytest.raises(DataError, match="cannot resume"):
            collect_demos(CollectConfig(**options), progress=False)
    other = tmp_path / "other"
    EpisodeStore.create(other, fps=10.0)
    with pytest.raises(DataError, match="not made by `robopolicy collect`"):
        collect_demos(CollectConfig("arm-push", other, episodes=1), progress=False)


def test_only_success_keeps_successful_episodes(tmp_path):
    out = tmp_path / "push"
    config = CollectConfig("arm-push", out, episodes=4, only_success=True)
    report = collect_demos(config, progress=False)
    store = EpisodeStore.open(out)
    assert store.n_episodes == 4 and store.episode_meta("success").all()
    assert report.attempts >= 4
    seeds = store.episode_meta("seed")
    assert np.all(np.diff(seeds) > 0) and seeds[-1] == report.attempts - 1


def test_collect_records_camera_images(gl, tmp_path):
    out = tmp_path / "images"
    collect_demos(
        CollectConfig("arm-push", out, episodes=1, cameras=("front", "wrist")), progress=False
    )
    store = EpisodeStore.open(out)
    assert sorted(store.keys) == ["action", "image.front", "image.wrist", "state", "timestamp"]
    episode = store.episode(0)
    length = episode["state"].shape[0]
    assert episode["image.wrist"].shape == (length, 96, 96, 3)
    assert episode["image.front"].dtype == np.uint8


def test_cli_tasks_json_lists_the_builtin_tasks(capsys):
    assert main(["tasks", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    by_name = {task["name"]: task for task in tasks}
    assert {"arm-push", "arm-pick-place"} <= set(by_name)
    push = by_name["arm-push"]
    assert push["family"] == "builtin" and push["max_episode_steps"] > 0 and push["extra"] is None


def test_cli_collect_json_reports_the_success_rate(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["collect", "--task", "arm-push", "--episodes", "2", "--seed", "3", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 2 and report["attempts"] == 2
    assert report["success_rate"] == report["successes"] / 2
    assert main([*args[:-2], "--out", str(tmp_path / "x"), "--quality", "sloppy"]) == 2
    assert "unknown quality 'sloppy'" in capsys.readouterr().err

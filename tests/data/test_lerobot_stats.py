"""LeRobot export statistics, checked against a reference written here from lerobot 0.6.1's rules.

Per episode (``compute_episode_stats``): numeric features reduce over time; cameras over evenly
sampled frames and their pixels per channel, in [0, 1], shaped (3, 1, 1), ``count`` being the
number of sampled frames. The dataset (``aggregate_stats``): counts add, min of mins, max of
maxes, count-weighted mean, pooled variance, and each quantile the count-weighted mean of the
episodes' quantiles. Nothing here calls robopolicy's statistics code except the last test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robopolicy.data.formats.base import DatasetInfo
from robopolicy.data.formats.lerobot.stats import image_stats, sample_indices
from tests.data.lerobot_fixtures import FPS
from tests.data.test_lerobot import lerobot, native_episodes

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_KEYS = {"min", "max", "mean", "std", "count", *QUANTILES}
LEROBOT_NAMES = {
    "state": "observation.state",
    "keypoint": "observation.keypoint",
    "n_contacts": "observation.n_contacts",
    "effort": "observation.effort",
    "action": "action",
    "image.front": "observation.images.front",
    "image.wrist": "observation.images.wrist",
}


def episode_reference(values: np.ndarray, *, camera: bool) -> dict[str, np.ndarray]:
    """One feature's statistics over one episode, as lerobot 0.6.1 defines them."""
    if camera:
        length = len(values)
        count = length if length < 100 else max(100, min(int(length**0.75), 10_000))
        picked = values[np.round(np.linspace(0, length - 1, count)).astype(int)]
        x = picked.reshape(-1, 3).astype(np.float64) / 255.0
    else:
        x = values.reshape(len(values), *values.shape[1:] or (1,)).astype(np.float64)
        count = len(values)
    stats = {
        "min": x.min(0),
        "max": x.max(0),
        "mean": x.mean(0),
        "std": x.std(0),
        "count": np.array([count]),
        **{name: np.quantile(x, q, axis=0) for name, q in QUANTILES.items()},
    }
    if camera:
        stats = {k: v if k == "count" else v.reshape(3, 1, 1) for k, v in stats.items()}
    return stats


def dataset_reference(episodes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """lerobot 0.6.1's ``aggregate_feature_stats``, written out: a count-weighted mean of the
    episodes' means and quantiles, the pooled variance, min of mins and max of maxes."""
    counts = np.array([float(e["count"][0]) for e in episodes])
    total = counts.sum()

    def weighted(values: list[np.ndarray]) -> np.ndarray:
        return sum(c * v for c, v in zip(counts, values, strict=True)) / total

    mean = weighted([e["mean"] for e in episodes])
    variance = weighted([e["std"] ** 2 + (e["mean"] - mean) ** 2 for e in episodes])
    return {
        "min": np.min([e["min"] for e in episodes], axis=0),
        "max": np.max([e["max"] for e in episodes], axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(total)]),
        **{name: weighted([e[name] for e in episodes]) for name in QUANTILES},
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    source = native_episodes(4)
    root = tmp_path_factory.mktemp("stats") / "lr"
    lerobot().write(root, DatasetInfo(fps=FPS, n_episodes=len(source)), iter(source), quiet=True)
    return root, source


def test_dataset_stats_are_lerobot_aggregates_of_episode_stats(
    exported: tuple[Path, list[Any]],
) -> None:
    root, source = exported
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    stats = json.loads((root / "meta/stats.json").read_text())
    for native, name in LEROBOT_NAMES.items():
        references = []
        for row, episode in zip(rows, source, strict=True):
            want = episode_reference(episode.frames[native], camera=native.startswith("image."))
            got = {stat: np.asarray(row[f"stats/{name}/{stat}"]) for stat in STAT_KEYS}
            for stat, value in want.items():
                assert got[stat].shape == value.shape, (name, stat)
                np.testing.assert_allclose(got[stat], value, rtol=1e-12, atol=1e-14)
            references.append(want)
        want = dataset_reference(references)
        assert set(stats[name]) == STAT_KEYS, name
        for stat, value in want.items():
            got = np.asarray(stats[name][stat])
            assert got.shape == value.shape, (name, stat)
            np.testing.assert_allclose(got, value, rtol=1e-12, atol=1e-14, err_msg=f"{name} {stat}")

    # a count-weighted mean, not the envelope of the episodes' quantiles nor a pooled quantile
    low = np.min([row["stats/observation.state/q01"] for row in rows], axis=0)
    high = np.max([row["stats/observation.state/q99"] for row in rows], axis=0)
    assert np.all(np.asarray(stats["observation.state"]["q01"]) > low)
    assert np.all(np.asarray(stats["observation.state"]["q99"]) < high)
    everything = np.concatenate([episode.frames["state"] for episode in source])
    pooled = np.quantile(everything.astype(np.float64), 0.5, axis=0)
    assert not np.allclose(stats["observation.state"]["q50"], pooled, rtol=1e-6)


def test_integer_min_and_max_stay_integers(exported: tuple[Path, list[Any]]) -> None:
    root, source = exported
    stats = json.loads((root / "meta/stats.json").read_text())
    for name in ("observation.n_contacts", "index", "frame_index", "episode_index", "task_index"):
        for stat in ("min", "max"):
            assert all(type(v) is int for v in stats[name][stat]), (name, stat)
        assert all(type(v) is float for v in stats[name]["mean"]), name
    assert stats["index"]["max"] == [sum(len(ep.frames["state"]) for ep in source) - 1]
    assert all(type(v) is float for v in stats["observation.state"]["min"])
    schema = pq.read_schema(root / "meta/episodes/chunk-000/file-000.parquet")
    assert schema.field("stats/observation.n_contacts/max").type.value_type == pa.int64()
    assert schema.field("stats/observation.state/max").type.value_type == pa.float64()


def test_image_stats_are_exact_per_channel_statistics() -> None:
    frames = np.random.default_rng(1).integers(0, 256, size=(150, 20, 30, 3), dtype=np.uint8)
    frames[..., 2] = 9
    stats = image_stats(frames)
    picked = frames[sample_indices(150)].reshape(-1, 3) / 255.0
    assert stats["count"].tolist() == [len(sample_indices(150))] and 100 <= stats["count"][0] < 150
    expected = {"min": picked.min(0), "max": picked.max(0), "mean": picked.mean(0),
                "std": picked.std(0), "q10": np.quantile(picked, 0.1, axis=0),
                "q99": np.quantile(picked, 0.99, axis=0)}  # fmt: skip
    for name, values in expected.items():
        assert stats[name].shape == (3, 1, 1)
        np.testing.assert_allclose(stats[name].reshape(-1), values, rtol=1e-12, atol=1e-12)

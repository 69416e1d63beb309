"""Feature statistics as LeRobot stores them, per episode and for the whole dataset.

Each feature gets ``min``, ``max``, ``mean``, ``std``, ``count`` and the quantiles ``q01``,
``q10``, ``q50``, ``q90``, ``q99``. Numeric features reduce over time: a (T,) column gives shape
(1,) stats, a (T, *shape) column that shape (lerobot 0.6.1 pools all but the last axis, giving
(2,) for a (T, 9, 2) column). Integer columns keep integer ``min`` and ``max``, as lerobot up to
0.5 wrote them (0.6.1 writes floats; its normalizer reads either as float32).
Camera features reduce over sampled frames and pixels per channel, scaled to [0, 1], with shape
(3, 1, 1); their ``count`` is the number of sampled frames. Per-episode quantiles are the
samples' exact (numpy, linear) quantiles, where lerobot 0.6.1 estimates them from a 5000-bin
histogram of the same samples.

Dataset statistics combine the episodes' as lerobot 0.6.1 (``aggregate_stats``) does: counts add,
``min`` and ``max`` are taken over episodes, ``mean`` is the count-weighted mean of the episodes'
means, ``std`` pools the variances (the count-weighted mean of ``std**2 + (mean_e - mean)**2``),
and each quantile is the count-weighted mean of the episodes' quantiles (not a quantile of all
frames).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from robopolicy.data.formats.lerobot.layout import STAT_QUANTILES

Stats = dict[str, np.ndarray]
QUANTILE_NAMES = tuple(f"q{round(q * 100):02d}" for q in STAT_QUANTILES)


def numeric_stats(values: np.ndarray) -> Stats:
    """Statistics of a (T, *shape) numeric feature over time (min and max of integers as int64)."""
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    x = values.astype(np.float64)
    extremes = values.astype(np.int64) if values.dtype.kind in "iu" else x
    stats = {
        "min": extremes.min(axis=0),
        "max": extremes.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([x.shape[0]], dtype=np.int64),
    }
    quantiles = np.quantile(x, STAT_QUANTILES, axis=0)
    stats.update(zip(QUANTILE_NAMES, quantiles, strict=True))
    return stats


def sample_indices(length: int) -> np.ndarray:
    """Frames LeRobot samples for image statistics: all of a short episode, ~T**0.75 of a long
    one (between 100 and 10,000), evenly spread."""
    count = length if length < 100 else max(100, min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, count)).astype(np.int64)


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel statistics of (T, H, W, C) uint8 frames in [0, 1], shaped (C, 1, 1).

    Computed exactly from each channel's histogram of the 256 levels (same values as sorting the
    pixels, at a fraction of the cost).
    """
    picked = frames[sample_indices(frames.shape[0])]
    height, width = picked.shape[1:3]
    if max(height, width) >= 300:  # LeRobot thins large images to about 150 pixels across
        step = int(width / 150) if width > height else int(height / 150)
        picked = picked[:, ::step, ::step]
    pixels = picked.reshape(-1, picked.shape[-1])
    levels = np.arange(256, dtype=np.float64)
    per_channel = []
    for channel in range(pixels.shape[1]):
        counts = np.bincount(pixels[:, channel], minlength=256).astype(np.float64)
        total = counts.sum()
        mean = (counts * levels).sum() / total
        present = np.flatnonzero(counts)
        cumulative = np.cumsum(counts)
        position = np.asarray(STAT_QUANTILES) * (total - 1)
        below = np.floor(position)
        low = np.searchsorted(cumulative, below, side="right")
        high = np.searchsorted(cumulative, np.minimum(below + 1, total - 1), side="right")
        per_channel.append([
            present[0], present[-1], mean,
            np.sqrt((counts * (levels - mean) ** 2).sum() / total),
            *(low + (position - below) * (high - low)),
        ])  # fmt: skip
    values = np.asarray(per_channel, dtype=np.float64).T / 255.0
    names = ("min", "max", "mean", "std", *QUANTILE_NAMES)
    stats = {name: row.reshape(-1, 1, 1) for name, row in zip(names, values, strict=True)}
    stats["count"] = np.array([picked.shape[0]], dtype=np.int64)
    return {name: stats[name] for name in ("min", "max", "mean", "std", "count", *QUANTILE_NAMES)}


def aggregate(episodes: Sequence[Mapping[str, Stats]]) -> dict[str, Stats]:
    """Dataset statistics from per-episode statistics (every feature found in any episode)."""
    names = list(dict.fromkeys(name for stats in episodes for name in stats))
    return {
        name: _aggregate_feature([stats[name] for stats in episodes if name in stats])
        for name in names
    }


def _aggregate_feature(parts: list[Stats]) -> Stats:
    """One feature's dataset statistics from its per-episode ones (see the module docstring)."""
    counts = np.array([p["count"][0] for p in parts], dtype=np.int64)
    total = counts.sum()
    weights = counts.reshape(-1, *([1] * np.ndim(parts[0]["mean"])))

    def weighted_mean(values: np.ndarray) -> np.ndarray:
        return (values * weights).sum(axis=0) / total

    means = np.stack([p["mean"] for p in parts])
    mean = weighted_mean(means)
    merged = {
        "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
        "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(
            weighted_mean(np.stack([p["std"] ** 2 for p in parts]) + (means - mean) ** 2)
        ),
        "count": np.array([total], dtype=np.int64),
    }
    for quantile in QUANTILE_NAMES:
        if all(quantile in p for p in parts):
            merged[quantile] = weighted_mean(np.stack([p[quantile] for p in parts]))
    return merged


def to_json(stats: Mapping[str, Stats]) -> dict[str, dict[str, list]]:
    """Statistics as nested lists, the way ``meta/stats.json`` holds them."""
    return {name: {k: np.asarray(v).tolist() for k, v in s.items()} for name, s in stats.items()}

"""Feature statistics as LeRobot stores them, per episode and for the whole dataset.

Each feature gets ``min``, ``max``, ``mean``, ``std``, ``count`` and the quantiles ``q01`` ...
``q99``. Numeric features reduce over time: a (T,) column gives shape (1,) stats, a (T, D)
column shape (D,). Camera features reduce over sampled frames and pixels per channel, scaled to
[0, 1], with shape (3, 1, 1); their ``count`` is the number of sampled frames. Dataset statistics
combine episodes: counts add, means are count-weighted, variances combine exactly, min and max
are taken over episodes, and quantiles keep the outer envelope (the lowest of the episodes'
lower quantiles, the highest of their upper ones), as LeRobot does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from robopolicy.data.formats.lerobot.layout import STAT_QUANTILES

Stats = dict[str, np.ndarray]
QUANTILE_NAMES = tuple(f"q{round(q * 100):02d}" for q in STAT_QUANTILES)


def _summary(x: np.ndarray, count: int) -> Stats:
    """Statistics of ``x`` over its first axis (float64 samples)."""
    stats = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([count], dtype=np.int64),
    }
    quantiles = np.quantile(x, STAT_QUANTILES, axis=0)
    stats.update(zip(QUANTILE_NAMES, quantiles, strict=True))
    return stats


def numeric_stats(values: np.ndarray) -> Stats:
    """Statistics of a (T, *shape) numeric feature over time."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    return _summary(x, x.shape[0])


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
    result = {}
    for name in names:
        parts = [stats[name] for stats in episodes if name in stats]
        counts = np.array([float(p["count"][0]) for p in parts])
        total = counts.sum()
        weights = counts.reshape(-1, *([1] * np.ndim(parts[0]["mean"])))
        means = np.stack([p["mean"] for p in parts])
        mean = (means * weights).sum(axis=0) / total
        variances = np.stack([p["std"] ** 2 for p in parts]) + (means - mean) ** 2
        merged = {
            "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
            "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
            "mean": mean,
            "std": np.sqrt((variances * weights).sum(axis=0) / total),
            "count": np.array([int(total)], dtype=np.int64),
        }
        for q, quantile in zip(STAT_QUANTILES, QUANTILE_NAMES, strict=True):
            if all(quantile in p for p in parts):
                stacked = np.stack([p[quantile] for p in parts])
                merged[quantile] = stacked.min(axis=0) if q <= 0.5 else stacked.max(axis=0)
        result[name] = merged
    return result


def to_json(stats: Mapping[str, Stats]) -> dict[str, dict[str, list]]:
    """Statistics as nested lists, the way ``meta/stats.json`` holds them."""
    return {name: {k: np.asarray(v).tolist() for k, v in s.items()} for name, s in stats.items()}

"""Summaries of a dataset: episodes, frames, fps, and each key's shape, dtype and statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robopolicy.data.formats.base import detect_format

_BLOCK_VALUES = 1 << 24


class RunningStats:
    """Per-feature min, max, mean and std, reduced over time and every axis but the last.

    Each update reduces its batch to (count, mean, sum of squared deviations) in float64 and
    merges it with Chan et al.'s pairwise formula, which stays accurate over millions of frames.
    """

    def __init__(self) -> None:
        self.count = 0
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def update(self, frames: np.ndarray) -> None:
        x = np.asarray(frames)
        x = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)
        step = max(1, _BLOCK_VALUES // max(1, x.shape[1]))  # float64 copies stay under 128 MiB
        for start in range(0, x.shape[0], step):
            self._update(x[start : start + step])

    def _update(self, x: np.ndarray) -> None:
        n = x.shape[0]
        if not n:
            return
        # one contiguous row per feature makes every reduction below a fast inner loop
        rows = np.ascontiguousarray(x.T)
        lo, hi = rows.min(axis=1).astype(np.float64), rows.max(axis=1).astype(np.float64)
        mean = rows.mean(axis=1, dtype=np.float64)
        centered = rows.astype(np.float64)
        centered -= mean[:, None]
        m2 = np.einsum("ij,ij->i", centered, centered)
        if self.min is None:
            self.min, self.max, self._mean, self._m2, self.count = lo, hi, mean, m2, n
            return
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
        self.count = total

    def result(self) -> dict[str, Any]:
        if self.min is None:
            return {"count": 0}
        return {
            "count": self.count,
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "mean": self._mean.tolist(),
            "std": np.sqrt(self._m2 / self.count).tolist(),
        }


def dataset_info(path: str | Path, *, quiet: bool = False) -> dict[str, Any]:
    """Describe the dataset at ``path`` in any supported format, as a JSON-ready dict."""
    path = Path(path)
    fmt = detect_format(path)
    reader = fmt.open(path)
    try:
        keys: dict[str, dict[str, Any]] = {}
        running: dict[str, RunningStats] = {}
        frames = 0
        for index in tqdm(range(reader.info.n_episodes), desc="reading", unit="ep", disable=quiet):
            episode = reader.read_episode(index)
            for key, value in episode.frames.items():
                keys.setdefault(key, {"shape": list(value.shape[1:]), "dtype": str(value.dtype)})
                running.setdefault(key, RunningStats()).update(value)
            frames += len(next(iter(episode.frames.values())))
        for key, acc in running.items():
            keys[key].update(acc.result())
        for key, feature in reader.info.features.items():
            if key in keys:
                described = {k: v for k, v in feature.items() if k in ("names", "units", "sources")}
                keys[key].update(described)
        return {
            "path": str(path),
            "format": fmt.name,
            "episodes": reader.info.n_episodes,
            "frames": frames,
            "fps": reader.info.fps,
            "keys": keys,
        }
    finally:
        reader.close()

"""Summaries of a dataset: episodes, frames, fps, and each key's shape, dtype and statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robopolicy.data.formats.base import detect_format


class RunningStats:
    """Per-feature min, max, mean and std, reduced over time and every axis but the last."""

    def __init__(self) -> None:
        self.count = 0
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self._shift: np.ndarray | None = None

    def update(self, frames: np.ndarray) -> None:
        x = np.asarray(frames, dtype=np.float64)
        x = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)
        if not x.shape[0]:
            return
        lo, hi = x.min(axis=0), x.max(axis=0)
        if self.min is None:
            # sums are taken about the first frame's minimum to keep them well conditioned
            self._shift = lo
            self.min, self.max = lo, hi
            self._sum, self._sumsq = np.zeros_like(lo), np.zeros_like(lo)
        else:
            self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)
        shifted = x - self._shift
        self._sum += shifted.sum(axis=0)
        self._sumsq += np.square(shifted).sum(axis=0)
        self.count += x.shape[0]

    def result(self) -> dict[str, Any]:
        if self.min is None:
            return {"count": 0}
        mean = self._sum / self.count
        var = np.maximum(self._sumsq / self.count - mean**2, 0.0)
        return {
            "count": self.count,
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "mean": (mean + self._shift).tolist(),
            "std": np.sqrt(var).tolist(),
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
                keys[key].update({k: v for k, v in feature.items() if k in ("names", "units")})
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

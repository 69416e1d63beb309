"""Train/validation split by whole episodes, seeded, so no window of a validation episode trains.

The choice follows Diffusion Policy's: ``round(E * val_ratio)`` validation episodes (at least one
when ``val_ratio > 0``, and always at least one training episode) drawn without replacement by
``numpy.random.default_rng(seed)``; then, if ``max_train_episodes`` is set, that many training
episodes are kept, drawn by a fresh generator with the same seed. The same ``(E, val_ratio,
seed)`` therefore picks the same validation episodes as Diffusion Policy does.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class EpisodeSplit:
    """Boolean episode masks; ``train`` and ``val`` never overlap."""

    train: np.ndarray
    """(E,) bool, episodes to train on."""
    val: np.ndarray
    """(E,) bool, held-out episodes."""

    @property
    def train_episodes(self) -> np.ndarray:
        return np.flatnonzero(self.train)

    @property
    def val_episodes(self) -> np.ndarray:
        return np.flatnonzero(self.val)


def split_episodes(
    n_episodes: int,
    val_ratio: float = 0.0,
    seed: int = 0,
    max_train_episodes: int | None = None,
) -> EpisodeSplit:
    """Split ``n_episodes`` episodes into training and validation sets.

    Args:
        n_episodes: episodes in the store, at least 1.
        val_ratio: fraction of episodes held out, in ``[0, 1)``.
        seed: seed of the draw; the same seed always gives the same split.
        max_train_episodes: keep at most this many training episodes (None: all). Dropped
            episodes are in neither set.
    """
    if n_episodes < 1:
        raise ValueError(f"need at least one episode to split, got {n_episodes}")
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    if max_train_episodes is not None and max_train_episodes < 1:
        raise ValueError(f"max_train_episodes must be >= 1 or None, got {max_train_episodes}")
    val = np.zeros(n_episodes, dtype=bool)
    if val_ratio > 0:
        n_val = min(max(1, round(n_episodes * val_ratio)), n_episodes - 1)
        val[np.random.default_rng(seed).choice(n_episodes, size=n_val, replace=False)] = True
    train = ~val
    if max_train_episodes is not None and train.sum() > max_train_episodes:
        candidates = np.flatnonzero(train)
        keep = np.random.default_rng(seed).choice(
            candidates.size, size=max_train_episodes, replace=False
        )
        train = np.zeros(n_episodes, dtype=bool)
        train[candidates[keep]] = True
    return EpisodeSplit(train=train, val=val)

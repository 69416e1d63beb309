"""``EpisodeWriter``: streams the episode being recorded into an episode store.

Camera frames go to disk as they come (an image key's chunk is one frame, so writing a frame is
compressing it and writing one file); the numeric keys (state, action, timestamp, ...) are small
and stay in memory until the episode is committed. Nothing written is visible to readers before
:meth:`EpisodeWriter.commit`, which is one atomic step of the store; :meth:`EpisodeWriter.discard`
drops it. The recorder calls it from its worker thread only; tests wrap it to inject faults
(a full disk: ``OSError(errno.ENOSPC)``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robopolicy.data.store import EpisodeStore
from robopolicy.data.validate import check_episode
from robopolicy.errors import DataError


class EpisodeWriter:
    """One episode at a time into ``store``; ``image_keys`` are streamed, the rest buffered."""

    def __init__(self, store: EpisodeStore, image_keys: tuple[str, ...]) -> None:
        self.store = store
        self.image_keys = frozenset(image_keys)
        self.length = 0
        """Frames written into the episode in flight."""
        self._numeric: dict[str, list[np.ndarray]] = {}

    def add(self, frame: Mapping[str, np.ndarray]) -> None:
        """Append one frame (key -> per-frame array) to the episode in flight."""
        if self.length and sorted(frame) != self._keys():
            raise DataError(
                self.store.path,
                f"frame {self.length} has keys {sorted(frame)}, earlier frames {self._keys()}",
            )
        missing = self.image_keys - frame.keys()
        if missing:
            raise DataError(self.store.path, f"frame {self.length} lacks {sorted(missing)}")
        for key, value in frame.items():
            if key in self.image_keys:
                self.store.write_uncommitted(key, self.length, np.asarray(value)[None])
        for key, value in frame.items():
            if key not in self.image_keys:
                self._numeric.setdefault(key, []).append(np.asarray(value))
        self.length += 1

    def commit(self, episode_meta: Mapping[str, float | int]) -> int:
        """Store the episode in flight atomically and return its index."""
        numeric = {key: np.stack(values) for key, values in self._numeric.items()}
        if numeric:
            check_episode(self.store.path, numeric, episode=self.store.n_episodes)
        for key, values in numeric.items():
            self.store.write_uncommitted(key, 0, values)
        index = self.store.commit_uncommitted(self.length, episode_meta=episode_meta)
        self._reset()
        return index

    def discard(self) -> None:
        """Forget the episode in flight; its frames on disk are dropped."""
        self._reset()
        self.store.discard_uncommitted()

    def _keys(self) -> list[str]:
        return sorted(self.image_keys | self._numeric.keys())

    def _reset(self) -> None:
        self.length = 0
        self._numeric = {}

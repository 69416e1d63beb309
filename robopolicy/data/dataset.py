"""The training-side view of an episode store: padded windows of observations and actions.

A sample is ``{"obs": {key: (To, ...)}, "action": (Tp, Da)}`` in raw units (normalization lives
inside the policy, see ``docs/DESIGN.md``); step ``To - 1`` is "now" (see
:mod:`robopolicy.data.sampler` for the window layout and padding). Indexing with a list or array
of B window numbers returns the batch ``{"obs": {key: (B, To, ...)}, "action": (B, Tp, Da)}``
directly, one fancy index per key; :func:`batch_loader` builds a ``DataLoader`` that uses it.

Loading: every needed key is read into memory once. Low-dimensional keys become float32. Image
keys become uint8 ``(T, H, W, C)``: uint8 arrays are kept, integer or float arrays holding 0–255
values (Push-T's ``img`` is float32) are converted, losslessly when the values are integral;
non-integral floats are rounded (with a warning), and floats that all lie in [0, 1] or values
outside [0, 255] are refused with a :class:`~robopolicy.errors.DataError`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from robopolicy.data.features import FeatureInfo
from robopolicy.data.normalize import DEFAULT_EPS, Normalizer
from robopolicy.data.sampler import WindowIndex, gather, make_windows
from robopolicy.data.split import EpisodeSplit, split_episodes
from robopolicy.data.store import EpisodeStore
from robopolicy.errors import DataError

log = logging.getLogger(__name__)
_IMAGE_BLOCK_BYTES = 1 << 27  # float frames converted to uint8 per block while loading

Sample = dict[str, Any]


@dataclasses.dataclass
class SequenceDatasetConfig:
    """Which store, which keys and which window shape a :class:`SequenceDataset` serves."""

    path: str | Path
    """The episode store (a zarr directory)."""
    obs_keys: Sequence[str] = ("state",)
    """Low-dimensional observation keys, each returned as float32 ``(To, *shape)``."""
    image_keys: Sequence[str] = ()
    """Camera keys, each returned as uint8 ``(To, H, W, C)``."""
    action_key: str = "action"
    """The action key, returned as float32 ``(Tp, Da)``."""
    n_obs_steps: int = 2
    """To: observation steps, ending at "now"."""
    horizon: int = 16
    """Tp: predicted action steps, the window length (starts with the To observation steps)."""
    n_action_steps: int = 8
    """Ta: executed action steps, from "now"; sets the end padding (``Ta - 1``)."""
    val_ratio: float = 0.0
    """Fraction of episodes held out for validation, in [0, 1)."""
    seed: int = 42
    """Seed of the train/validation split."""
    max_train_episodes: int | None = None
    """Train on at most this many episodes (None: all not held out)."""
    derived_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Low-dimensional keys the store may lack, each a slice of another key's last axis, e.g.
    ``{"agent_pos": "state[:2]"}`` (Push-T's replay buffer keeps the agent's position as the
    first two numbers of ``state``). A key the store has is read as stored."""

    def __post_init__(self) -> None:
        self.derived_keys = dict(self.derived_keys)
        for key, spec in self.derived_keys.items():
            parse_derived(key, spec)
        self.obs_keys, self.image_keys = tuple(self.obs_keys), tuple(self.image_keys)
        keys = [*self.obs_keys, *self.image_keys]
        if not keys:
            raise ValueError("give at least one observation key (obs_keys or image_keys)")
        if len(set(keys)) != len(keys):
            raise ValueError(f"observation keys repeat: obs_keys={keys}")
        for name in ("n_obs_steps", "horizon", "n_action_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_obs_steps > self.horizon:
            raise ValueError(f"n_obs_steps ({self.n_obs_steps}) > horizon ({self.horizon})")
        if self.n_action_steps > self.horizon - self.n_obs_steps + 1:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be <= horizon - n_obs_steps + 1 "
                f"({self.horizon - self.n_obs_steps + 1}) so executed actions lie in the window"
            )
        if not 0.0 <= self.val_ratio < 1.0:
            raise ValueError(f"val_ratio must be in [0, 1), got {self.val_ratio}")
        if self.max_train_episodes is not None and self.max_train_episodes < 1:
            raise ValueError(f"max_train_episodes must be >= 1, got {self.max_train_episodes}")

    @property
    def pad_before(self) -> int:
        return self.n_obs_steps - 1

    @property
    def pad_after(self) -> int:
        return self.n_action_steps - 1


class SequenceDataset(Dataset):
    """Windows of the training episodes of a store, held in memory."""

    def __init__(self, config: SequenceDatasetConfig) -> None:
        self.config = config
        store = EpisodeStore.open(config.path)
        self.path = store.path
        derived = {k: parse_derived(k, v) for k, v in config.derived_keys.items()}
        sources = {k: derived[k][0] for k in config.obs_keys if k in derived}
        for key in (*config.obs_keys, *config.image_keys, config.action_key):
            if key not in store.keys and sources.get(key) not in store.keys:
                raise DataError(self.path, f"no such key (have {store.keys})", key=key)
        self.episode_ends = store.episode_ends
        self.split: EpisodeSplit = split_episodes(
            store.n_episodes, config.val_ratio, config.seed, config.max_train_episodes
        )
        self.windows = self._windows(self.split.train)
        if not len(self.windows):
            shortest = config.horizon - config.pad_before - config.pad_after
            raise DataError(
                self.path,
                f"no training episode has the {shortest} frames a window of horizon "
                f"{config.horizon} needs (longest: {store.episode_lengths.max(initial=0)})",
            )
        self.arrays: dict[str, np.ndarray] = {}
        for key in (*config.obs_keys, config.action_key):
            if key in store.keys or key not in derived:
                self.arrays[key] = _load_lowdim(store, key)
            else:
                source, part = derived[key]
                self.arrays[key] = _derive(store, key, source, part)
        self.arrays[config.action_key] = self.arrays[config.action_key].reshape(store.n_frames, -1)
        for key in config.image_keys:
            self.arrays[key] = _load_images(store, key)
        self.fps = store.fps
        """Frames per second the store was recorded at (None: it does not say)."""
        self.features = {
            key: _describe(store, key, derived)
            for key in (*config.obs_keys, *config.image_keys, config.action_key)
        }
        """Key -> the names, units and sources the store records for it."""

    def _windows(self, mask: np.ndarray) -> WindowIndex:
        c = self.config
        return make_windows(
            self.episode_ends,
            c.horizon,
            pad_before=c.pad_before,
            pad_after=c.pad_after,
            episode_mask=mask,
        )

    def get_validation_dataset(self) -> SequenceDataset:
        """The same store and arrays (shared, not copied), windowed over the held-out episodes."""
        val = copy.copy(self)
        val.windows = self._windows(self.split.val)
        return val

    def get_normalizer(self, modes: Mapping[str, str], *, eps: float = DEFAULT_EPS) -> Normalizer:
        """Fit a normalizer for ``modes`` (key -> mode) over every frame of the store.

        Statistics cover all episodes, as Diffusion Policy's do, so the training and validation
        datasets share one normalizer whatever the split.
        """
        return Normalizer.fit(self.arrays, modes, eps=eps, source=self.path)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int | Sequence[int] | np.ndarray | torch.Tensor) -> Sample:
        """One window (an int) or a batch of windows (a sequence or 1-D array of ints)."""
        rows = np.asarray(index, dtype=np.int64)
        n = len(self.windows)
        if rows.ndim > 1 or (rows.size and (rows.min() < -n or rows.max() >= n)):
            raise IndexError(f"window index {index} out of range for {n} windows")
        rows = rows % max(n, 1)
        frames = self.windows.frame_indices(rows)
        obs_frames = frames[..., : self.config.n_obs_steps]
        keys = (*self.config.obs_keys, *self.config.image_keys)
        return {
            "obs": {key: torch.from_numpy(gather(self.arrays[key], obs_frames)) for key in keys},
            "action": torch.from_numpy(gather(self.arrays[self.config.action_key], frames)),
        }

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SequenceDataset({str(self.path)!r}, windows={len(self)}, To={c.n_obs_steps}, "
            f"Tp={c.horizon}, Ta={c.n_action_steps}, keys={list(self.arrays)})"
        )


def batch_loader(
    dataset: SequenceDataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
    **kwargs: object,
) -> DataLoader:
    """A ``DataLoader`` of whole batches: each is gathered by one fancy index per key.

    Extra keyword arguments (``pin_memory``, ``persistent_workers``, ...) go to ``DataLoader``.
    """
    base = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    sampler = BatchSampler(base, batch_size, drop_last)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers, **kwargs)


def parse_derived(key: str, spec: str) -> tuple[str, slice]:
    """``"state[:2]"`` -> ``("state", slice(None, 2))``; ValueError naming ``key`` otherwise."""
    match = re.fullmatch(r"([\w./-]+)\[(-?\d*):(-?\d*)\]", spec.strip())
    if match is None:
        raise ValueError(f"derived key {key!r}: {spec!r} is not SOURCE[start:stop]")
    source, start, stop = match.groups()
    if source == key:
        raise ValueError(f"derived key {key!r} cannot come from itself")
    return source, slice(int(start) if start else None, int(stop) if stop else None)


def _derive(store: EpisodeStore, key: str, source: str, part: slice) -> np.ndarray:
    """``key`` as ``part`` of the last axis of ``source``; DataError when that is empty."""
    array = _load_lowdim(store, source)
    if array.ndim < 2:
        raise DataError(store.path, f"{source!r} has no axis to slice for {key!r}", key=key)
    out = np.ascontiguousarray(array[..., part])
    if out.shape[-1] == 0:
        raise DataError(
            store.path,
            f"{source}[{part.start}:{part.stop}] of shape {array.shape} is empty",
            key=key,
        )
    return out


def _describe(
    store: EpisodeStore, key: str, derived: Mapping[str, tuple[str, slice]]
) -> FeatureInfo:
    """What ``store`` records of ``key``; of a derived key, its part of its source's record
    (nothing for a source of more than one axis)."""
    if key in store.keys or key not in derived:
        return store.feature(key)
    source, part = derived[key]
    shape = store.spec(source).shape
    if len(shape) != 1:
        return FeatureInfo(None, None, None)
    return store.feature(source).sliced(part, shape[0])


def _load_lowdim(store: EpisodeStore, key: str) -> np.ndarray:
    array = store.frames(0, store.n_frames, [key])[key]
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(store.path, f"dtype {array.dtype} is not numeric", key=key)
    return np.ascontiguousarray(array, dtype=np.float32)


def _load_images(store: EpisodeStore, key: str) -> np.ndarray:
    spec = store.spec(key)
    if len(spec.shape) != 3:
        raise DataError(
            store.path, f"frames of shape {spec.shape} are not (H, W, C) images", key=key
        )
    n = store.n_frames
    if spec.dtype == np.uint8:
        return np.ascontiguousarray(store.frames(0, n, [key])[key])
    if not (np.issubdtype(spec.dtype, np.integer) or np.issubdtype(spec.dtype, np.floating)):
        raise DataError(store.path, f"image dtype {spec.dtype} is not numeric", key=key)
    out = np.empty((n, *spec.shape), dtype=np.uint8)
    chunk_bytes = spec.chunk_frames * spec.dtype.itemsize * int(np.prod(spec.shape))
    step = spec.chunk_frames * max(1, _IMAGE_BLOCK_BYTES // chunk_bytes)  # whole zarr chunks
    integral, peak = True, 0.0
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = store.frames(start, stop, [key])[key]
        for sub in range(start, stop, 16):  # pieces that stay in cache: ~10x faster than whole
            src = block[sub - start : sub - start + 16]
            dst = out[sub : sub + len(src)]
            lo, hi = src.min(), src.max()
            if not (lo >= -0.5 and hi < 255.5):  # also false for NaN
                raise DataError(store.path, f"image values outside [0, 255]: {lo}..{hi}", key=key)
            peak = max(peak, float(hi))
            dst[...] = src
            if integral and not np.array_equal(dst, src):
                integral = False
            if not integral:
                dst[...] = np.rint(src)
    if not integral:
        if peak <= 1.0:
            raise DataError(
                store.path, "float images in [0, 1]; store them as uint8 0–255", key=key
            )
        log.warning("%s [%s]: non-integral image values rounded to uint8", store.path, key)
    return out

"""The native episode store: a zarr group in diffusion_policy's replay-buffer layout.

Layout (zarr format 2, so diffusion_policy's ``ReplayBuffer`` reads it as it is)::

    <root>/.zattrs                 fps, features (names, units, sources), tasks, source, version
    <root>/data/<key>              (T_total, *shape) arrays, episodes concatenated over time
    <root>/meta/episode_ends       (E,) int64 cumulative end index of each episode
    <root>/meta/<name>             (E,) optional per-episode values (e.g. task_index)

Crash safety: zarr writes each file through a temporary file and ``os.replace``, so every file is
either old or new. An append writes the frames first, then the per-episode values, then commits by
growing ``meta/episode_ends``: its new chunk is written while the array's shape still hides it, and
the shape change — one atomic file — is the commit. A process killed at any moment leaves the
committed episodes intact; frames past the last committed end are ignored by readers and trimmed
when the store is next opened for appending. A recorder streams an episode the same way:
``write_uncommitted`` while recording, then ``commit_uncommitted`` or ``discard_uncommitted``.

Opening checks the store before decoding anything (:mod:`robopolicy.data.store_checks`): only
allowlisted codecs, declared sizes within :func:`~robopolicy.data.limits.read_limits`, and a
chunk file for every chunk of the committed rows, so a deleted chunk is an error rather than
zeros. Every chunk is written, even one of zeros (store version 2); version-1 stores left those
out, and read only with ``ROBOPOLICY_LEGACY_ZERO_CHUNKS=1``, absent chunks as zeros.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from robopolicy.config import ConfigError, from_dict
from robopolicy.data import store_checks as checks
from robopolicy.data.array_spec import ArraySpec, is_image_shape
from robopolicy.data.features import FeatureInfo, Source, as_json
from robopolicy.data.limits import check_episodes, read_limits
from robopolicy.data.paths import check_name
from robopolicy.data.validate import check_episode
from robopolicy.errors import DataError

__all__ = ["EPISODE_ENDS", "STORE_VERSION", "ArraySpec", "EpisodeStore", "is_image_shape"]
log = logging.getLogger(__name__)

STORE_VERSION = 2
LEGACY_ZERO_CHUNKS = "ROBOPOLICY_LEGACY_ZERO_CHUNKS"
"""Set to 1 to read a version-1 store's absent chunks as zeros (they were all-zero chunks)."""
_WRITE_EVERY_CHUNK = {"write_empty_chunks": True}
EPISODE_ENDS = "episode_ends"
_EPISODE_ENDS_CHUNK = 1024


class EpisodeStore:
    """Episodes of per-frame arrays in one zarr group. Open with :meth:`create` or :meth:`open`."""

    def __init__(
        self,
        path: Path,
        group: zarr.Group,
        writable: bool,
        layouts: dict[str, checks.ArrayLayout] | None = None,
    ) -> None:
        self.path = path
        self._group = group
        self._writable = writable
        self._layouts = layouts or {}
        legacy = group.attrs.get("robopolicy_store_version") == 1
        self._missing_ok = legacy and os.environ.get(LEGACY_ZERO_CHUNKS) == "1"
        self._ends = self._read_episode_ends()
        if self._layouts:
            self._check_sizes_and_chunks()

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        fps: float | None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> EpisodeStore:
        """Create an empty store at ``path`` recorded at ``fps`` frames/s (None: unknown)."""
        path = Path(path)
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise DataError(path, f"fps must be a positive number, got {fps!r}")
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise DataError(path, "already exists; choose another path or pass overwrite")
        group = zarr.open_group(path, mode="w", zarr_format=2)
        group.attrs.update(
            {
                "robopolicy_store_version": STORE_VERSION,
                "fps": None if fps is None else float(fps),
                "features": {},
                **dict(attrs or {}),
            }
        )
        group.create_group("data")
        meta = group.create_group("meta")
        meta.create_array(
            EPISODE_ENDS,
            shape=(0,),
            chunks=(_EPISODE_ENDS_CHUNK,),
            dtype="<i8",
            fill_value=0,
            compressors=None,
        )
        return cls(path, group, writable=True)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> EpisodeStore:
        """Open an existing store: ``mode="r"`` to read, ``"a"`` to append episodes."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        path = Path(path)
        if not path.is_dir():
            raise DataError(path, "no such episode store (expected a zarr directory)")
        layouts = checks.read_layouts(path, read_limits())  # before zarr parses any of it
        try:
            group = zarr.open_group(
                path, mode="r" if mode == "r" else "r+", zarr_format=2, use_consolidated=False
            )
            for name in ("data", "meta"):
                if name not in group:
                    raise DataError(path, f"missing group '{name}'", key=name)
        except DataError:
            raise
        except Exception as exc:  # zarr raises many types for unreadable metadata
            raise DataError(path, f"not a readable zarr group ({exc})") from exc
        store = cls(path, group, writable=mode == "a", layouts=layouts)
        if mode == "a":
            store._trim_uncommitted()
        return store

    def _read_episode_ends(self) -> np.ndarray:
        key = f"meta/{EPISODE_ENDS}"
        try:
            arr = self._group[key]
        except KeyError as exc:
            raise DataError(self.path, "missing array", key=key) from exc
        if key in self._layouts:
            limits = read_limits()
            checks.check_count(self.path, arr.shape[0], limits, "max_episodes", "episodes", key=key)
            self._check_chunks(key, arr.shape[0])
        ends = np.asarray(self._read(key, arr, 0, arr.shape[0]), dtype=np.int64)
        if ends.ndim != 1 or (ends.size and (ends[0] <= 0 or np.any(np.diff(ends) <= 0))):
            raise DataError(self.path, "episode ends must be positive and increasing", key=key)
        total = int(ends[-1]) if ends.size else 0
        for name, arr in self._data_arrays():
            if arr.shape[0] < total:
                raise DataError(
                    self.path,
                    f"has {arr.shape[0]} frames but episode ends reach {total} (truncated store?)",
                    key=f"data/{name}",
                )
        return ends

    def _check_sizes_and_chunks(self) -> None:
        """Episode sizes within the read limits, and a chunk file for every committed row."""
        data = {k: v for k, v in self._layouts.items() if k.startswith("data/")}
        sizes = {key: layout.frame_bytes for key, layout in data.items()}
        check_episodes(self.path, self.episode_lengths, sizes, read_limits(), key="data")
        for key in self._layouts:
            if key != f"meta/{EPISODE_ENDS}":
                self._check_chunks(key, self.n_frames if key in data else self.n_episodes)

    def _check_chunks(self, key: str, rows: int) -> None:
        layout = self._layouts[key]
        rows = min(rows, layout.shape[0])  # a short array is reported by name elsewhere
        try:
            absent = checks.check_chunks_exist(self.path, layout, rows, missing_ok=self._missing_ok)
        except DataError as exc:
            if self._group.attrs.get("robopolicy_store_version") != 1:
                raise
            hint = (
                "; a version-1 store left chunks of zeros out: read it with "
                f"{LEGACY_ZERO_CHUNKS}=1 and convert it to a new store"
            )
            raise DataError(exc.path, exc.reason + hint, key=exc.key) from None
        if absent:
            log.warning("%s [%s]: %d absent chunks read as zeros", self.path, key, absent)

    def _read(self, key: str, arr: zarr.Array, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of ``arr``, its chunk headers checked first when opened from
        disk; a DataError naming the key when a chunk is damaged."""
        try:
            if key in self._layouts:
                checks.check_chunk_headers(
                    self.path, self._layouts[key], start, stop, missing_ok=self._missing_ok
                )
            return arr[start:stop]
        except DataError:
            raise
        except Exception as exc:  # corrupt chunk files: zarr and numcodecs raise many types
            raise DataError(
                self.path, f"rows [{start}, {stop}) unreadable ({exc})", key=key
            ) from exc

    def _data_arrays(self) -> Iterable[tuple[str, zarr.Array]]:
        return sorted(self._group["data"].arrays())

    def _trim_uncommitted(self) -> None:
        """Drop frames and per-episode values past the last commit (left by a killed writer)."""
        for pattern in ("**/*.partial", "**/.*.partial"):
            for leftover in self.path.glob(pattern):
                leftover.unlink(missing_ok=True)
        for _, arr in self._data_arrays():
            if arr.shape[0] != self.n_frames:
                arr.resize((self.n_frames, *arr.shape[1:]))
        for name, arr in self._group["meta"].arrays():
            if name != EPISODE_ENDS and arr.shape[0] != self.n_episodes:
                arr.resize((self.n_episodes, *arr.shape[1:]))

    # ------------------------------------------------------------------ description

    @property
    def attrs(self) -> dict[str, Any]:
        """A copy of the store's attributes (fps, features, tasks, source, ...)."""
        return dict(self._group.attrs)

    @property
    def fps(self) -> float | None:
        fps = self._group.attrs.get("fps")
        return None if fps is None else float(fps)

    @property
    def keys(self) -> list[str]:
        return [name for name, _ in self._data_arrays()]

    @property
    def episode_meta_keys(self) -> list[str]:
        return sorted(n for n, _ in self._group["meta"].arrays() if n != EPISODE_ENDS)

    @property
    def n_episodes(self) -> int:
        return int(self._ends.size)

    @property
    def n_frames(self) -> int:
        return int(self._ends[-1]) if self._ends.size else 0

    @property
    def episode_ends(self) -> np.ndarray:
        return self._ends.copy()

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self._ends, prepend=0)

    def spec(self, key: str) -> ArraySpec:
        arr = self._array(key)
        compressors = arr.compressors
        return ArraySpec(
            arr.dtype,
            arr.shape[1:],
            arr.chunks[0],
            compressors[0] if compressors else None,
            tuple(arr.filters),
        )

    def array(self, key: str) -> zarr.Array:
        """The raw zarr array of ``key`` (may hold uncommitted frames past :attr:`n_frames`)."""
        return self._array(key)

    def set_attrs(self, **values: Any) -> None:
        """Update store attributes (written atomically as one file)."""
        self._require_writable()
        self._group.attrs.update(values)

    def set_feature(
        self,
        key: str,
        *,
        names: list[str] | None = None,
        units: str | None = None,
        sources: Sequence[Source | Mapping[str, Any]] | None = None,
    ) -> None:
        """Record a key's per-value names, units and sources in the ``features`` attribute
        (:mod:`robopolicy.data.features`; sources as :class:`Source` or as stored)."""
        features = dict(self._group.attrs.get("features", {}))
        entry = dict(features.get(key, {}))
        if names is not None:
            entry["names"] = list(names)
        if units is not None:
            entry["units"] = units
        if sources is not None:
            try:
                typed = [s if isinstance(s, Source) else from_dict(Source, s) for s in sources]
            except ConfigError as exc:
                raise DataError(self.path, str(exc), key=f"features.{key}") from None
            entry["sources"] = as_json(typed)
        features[key] = entry
        self.set_attrs(features=features)

    def feature(self, key: str) -> FeatureInfo:
        """What the store records of ``key``: names, units, sources (None where it does not
        say); a DataError naming the key when its sources do not fit its frames."""
        features = self._group.attrs.get("features")
        entry = features.get(key) if isinstance(features, Mapping) else None
        size = math.prod(self.spec(key).shape)
        return FeatureInfo.parse(entry, size=size, where=self.path, key=key)

    # ------------------------------------------------------------------ reading

    def episode_slice(self, index: int) -> slice:
        if not -self.n_episodes <= index < self.n_episodes:
            raise IndexError(f"episode {index} out of range (store has {self.n_episodes})")
        index %= self.n_episodes
        start = int(self._ends[index - 1]) if index else 0
        return slice(start, int(self._ends[index]))

    def episode(self, index: int, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """All frames of one episode, key -> (T, *shape)."""
        s = self.episode_slice(index)
        return self.frames(s.start, s.stop, keys)

    def frames(
        self, start: int, stop: int, keys: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Frames ``[start, stop)`` in store-wide time, across episode boundaries if asked."""
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(f"window [{start}, {stop}) outside [0, {self.n_frames})")
        return {
            key: self._read(f"data/{key}", self._array(key), start, stop)
            for key in (self.keys if keys is None else keys)
        }

    def episode_meta(self, name: str) -> np.ndarray:
        """Per-episode values of ``meta/<name>`` for the committed episodes."""
        return np.asarray(self._read(f"meta/{name}", self._group["meta"][name], 0, self.n_episodes))

    def _array(self, key: str) -> zarr.Array:
        try:
            return self._group["data"][key]
        except KeyError:
            raise DataError(self.path, f"no such key (have {self.keys})", key=key) from None

    # ------------------------------------------------------------------ writing

    def append_episode(
        self,
        frames: Mapping[str, np.ndarray],
        *,
        episode_meta: Mapping[str, float | int] | None = None,
        specs: Mapping[str, ArraySpec] | None = None,
    ) -> int:
        """Validate and append one episode atomically; return its index.

        Args:
            frames: key -> (T, *shape) array; the first episode fixes the keys, dtypes and shapes.
            episode_meta: per-episode numbers stored in ``meta/<name>``.
            specs: layout for keys not stored yet (defaults from :meth:`ArraySpec.default`).
        """
        self._require_writable()
        frames = {k: np.asarray(v) for k, v in frames.items()}
        length = check_episode(self.path, frames, episode=self.n_episodes)
        self._check_keys(frames)
        for key, value in frames.items():
            self.write_uncommitted(key, 0, value, spec=(specs or {}).get(key))
        return self.commit_uncommitted(length, episode_meta=episode_meta)

    def write_uncommitted(
        self, key: str, offset: int, values: np.ndarray, *, spec: ArraySpec | None = None
    ) -> None:
        """Write ``values`` (n, *shape) at frames ``[n_frames + offset, ... + n)`` of ``key``.

        The frames stay invisible to readers until :meth:`commit_uncommitted`, so an episode can
        be streamed to disk while it is recorded. ``spec`` lays out a key not stored yet.
        """
        self._require_writable()
        values = np.asarray(values)
        arr = self._ensure_array(key, values, spec)
        if values.shape[1:] != arr.shape[1:] or values.dtype != arr.dtype:
            raise DataError(
                self.path,
                f"frame shape/dtype {values.shape[1:]}/{values.dtype} differs from the "
                f"store's {arr.shape[1:]}/{arr.dtype}",
                key=key,
            )
        start = self.n_frames + offset
        stop = start + values.shape[0]
        if arr.shape[0] < stop:
            arr.resize((stop, *arr.shape[1:]))
        arr[start:stop] = values

    def commit_uncommitted(
        self, length: int, *, episode_meta: Mapping[str, float | int] | None = None
    ) -> int:
        """Commit the first ``length`` uncommitted frames of every key as one episode; return
        its index. Every key must hold them; the per-episode values go to ``meta/<name>``."""
        self._require_writable()
        start = self.n_frames
        if length < 1:
            raise DataError(self.path, f"episode {self.n_episodes} is empty")
        for key, arr in self._data_arrays():
            if arr.shape[0] < start + length:
                raise DataError(
                    self.path,
                    f"episode {self.n_episodes} has {arr.shape[0] - start} of {length} frames",
                    key=key,
                )
            if arr.shape[0] > start + length:
                arr.resize((start + length, *arr.shape[1:]))
        meta = self._group["meta"]
        for name, value in (episode_meta or {}).items():
            if name == EPISODE_ENDS:
                raise DataError(self.path, "reserved per-episode name", key=name)
            if name not in meta:
                if self.n_episodes:
                    raise DataError(self.path, "new per-episode value after episode 0", key=name)
                meta.create_array(
                    name,
                    shape=(0,),
                    chunks=(_EPISODE_ENDS_CHUNK,),
                    dtype=np.asarray(value).dtype,
                    compressors=None,
                )
            arr = meta[name].with_config(_WRITE_EVERY_CHUNK)
            arr.resize((self.n_episodes + 1,))
            arr[self.n_episodes] = value
        self._commit(start + length)
        return self.n_episodes - 1

    def discard_uncommitted(self) -> None:
        """Drop every frame and per-episode value past the last commit."""
        self._require_writable()
        self._trim_uncommitted()

    def _check_keys(self, frames: Mapping[str, np.ndarray]) -> None:
        if not self.n_episodes:
            return
        have, got = set(self.keys), set(frames)
        if have != got:
            raise DataError(
                self.path,
                f"episode keys {sorted(got)} differ from the store's {sorted(have)}",
            )
        for key, value in frames.items():
            spec = self.spec(key)
            if value.shape[1:] != spec.shape or value.dtype != spec.dtype:
                raise DataError(
                    self.path,
                    f"frame shape/dtype {value.shape[1:]}/{value.dtype} differs from the "
                    f"store's {spec.shape}/{spec.dtype}",
                    key=key,
                )

    def _ensure_array(self, key: str, value: np.ndarray, spec: ArraySpec | None) -> zarr.Array:
        data = self._group["data"]
        check_name(key, where=self.path, field=key)  # a key is a directory of the store
        if key in data:
            return data[key].with_config(_WRITE_EVERY_CHUNK)
        spec = spec or ArraySpec.default(value.dtype, value.shape[1:])
        spec.check_codecs(self.path, key)
        return data.create_array(
            key,
            shape=(0, *spec.shape),
            chunks=(spec.chunk_frames, *spec.shape),
            dtype=spec.dtype,
            compressors=spec.compressor,
            filters=spec.filters or None,
            fill_value=0,
            config=_WRITE_EVERY_CHUNK,
        )

    def _commit(self, end: int) -> None:
        """Append ``end`` to episode_ends: write the chunk first, then the shape (the commit)."""
        arr = self._group["meta"][EPISODE_ENDS]
        n = self.n_episodes
        hidden = zarr.Array(
            zarr.AsyncArray(
                metadata=dataclasses.replace(arr.metadata, shape=(n + 1,)),
                store_path=arr.store_path,
                config=_WRITE_EVERY_CHUNK,
            )
        )
        hidden[n] = end
        arr.resize((n + 1,))
        self._ends = np.append(self._ends, np.int64(end))

    def _require_writable(self) -> None:
        if not self._writable:
            raise DataError(self.path, "store is open read-only")

    def __repr__(self) -> str:
        return (
            f"EpisodeStore({str(self.path)!r}, episodes={self.n_episodes}, "
            f"frames={self.n_frames}, keys={self.keys})"
        )

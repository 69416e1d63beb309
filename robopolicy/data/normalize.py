"""Per-key normalizers: statistics computed once from the data, carried in the policy checkpoint.

Each key has a mode and, unless its mode is ``identity``, float32 statistics ``min``, ``max``,
``mean`` and ``std`` over every axis but the last (one value per feature; per channel for
``(H, W, C)`` images). Normalizing is ``(x - shift) * scale + bias`` along the last axis (the
data's own min or mean is subtracted first, which keeps precision for values far from zero):

- ``min_max``: the data's ``[min, max]`` maps onto ``[-1, 1]`` (shift min, bias -1). A
  dimension whose range is below ``eps`` (constant in the data) is not scaled: it is shifted so
  the constant sits at 0, and a value that differs from it at run time stays as far from 0 as it
  is from the constant, in raw units, instead of being blown up by a tiny range (Diffusion
  Policy's ``range_eps`` rule).
- ``mean_std``: ``(x - mean) / std``, with the same rule: a dimension whose std is below ``eps``
  is only centred (scale 1).
- ``identity``: unchanged (integers and uint8 images become float32).

Saved without pickle: the statistics as safetensors tensors named ``<key>/<stat>``, the modes and
``eps`` as JSON — a directory holds ``normalizer.safetensors`` and ``normalizer.json``; the bytes
form is one safetensors blob carrying the JSON in its metadata. Loading gives back bit-identical
statistics, so normalized values are exactly the same after a round trip.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import safetensors.torch
import torch

from robopolicy.data.info import RunningStats
from robopolicy.errors import DataError

MODES = ("identity", "min_max", "mean_std")
STATS = ("min", "max", "mean", "std")
DEFAULT_EPS = 1e-4
TENSORS_FILE = "normalizer.safetensors"
CONFIG_FILE = "normalizer.json"
_FORMAT = "robopolicy.normalizer"
_VERSION = 1
_CHUNK_ELEMENTS = 1 << 23  # values per streamed chunk when fitting

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


class Normalizer:
    """Affine per-key maps between raw units and the network's normalized units."""

    def __init__(
        self,
        modes: Mapping[str, str],
        stats: Mapping[str, Mapping[str, Any]],
        *,
        eps: float = DEFAULT_EPS,
    ) -> None:
        """Build from ``modes`` (key -> mode) and ``stats`` (key -> {min, max, mean, std})."""
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = float(eps)
        self._modes: dict[str, str] = {}
        self._stats: dict[str, dict[str, torch.Tensor]] = {}
        self._affine: dict[str, tuple[torch.Tensor, ...]] = {}
        self._affine_np: dict[str, tuple[np.ndarray, ...]] = {}
        for key, mode in modes.items():
            if mode not in MODES:
                raise ValueError(f"normalizer mode {mode!r} for key {key!r} is not one of {MODES}")
            self._modes[key] = mode
            if mode == "identity":
                continue
            if key not in stats:
                raise ValueError(f"no statistics for key {key!r} (mode {mode!r})")
            self._stats[key] = _checked_stats(key, stats[key])
            self._affine_np[key] = _affine(mode, self._stats[key], self.eps)
            self._affine[key] = tuple(torch.from_numpy(a) for a in self._affine_np[key])

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        arrays: Mapping[str, Any],
        modes: Mapping[str, str],
        *,
        eps: float = DEFAULT_EPS,
        source: object = "normalizer",
    ) -> Normalizer:
        """Compute statistics of each key from ``(T, ...)`` arrays (numpy or zarr), streaming.

        Args:
            arrays: key -> array; only keys in ``modes`` are read, ``identity`` keys never.
            modes: key -> mode.
            eps: see the module docstring.
            source: the file named in errors (e.g. the store path).
        """
        stats = {}
        for key, mode in modes.items():
            if mode == "identity" or mode not in MODES:
                continue
            if key not in arrays:
                raise DataError(
                    source, f"no such key to normalize (have {sorted(arrays)})", key=key
                )
            array = arrays[key]
            step = max(1, _CHUNK_ELEMENTS // max(1, int(np.prod(array.shape[1:]))))
            running = RunningStats()
            for start in range(0, array.shape[0], step):
                running.update(np.asarray(array[start : start + step]))
            result = running.result()
            if not result["count"]:
                raise DataError(source, "no frames to compute statistics from", key=key)
            values = np.array([result[name] for name in STATS])
            if not np.all(np.isfinite(values)):
                raise DataError(source, "statistics are not finite (NaN or inf in data)", key=key)
            stats[key] = {name: np.asarray(result[name], dtype=np.float32) for name in STATS}
        return cls(modes, stats, eps=eps)

    # ------------------------------------------------------------------ description

    @property
    def modes(self) -> dict[str, str]:
        return dict(self._modes)

    @property
    def keys(self) -> list[str]:
        return list(self._modes)

    @property
    def device(self) -> torch.device:
        first = next(iter(self._affine.values()), None)
        return torch.device("cpu") if first is None else first[0].device

    def stats(self, key: str) -> dict[str, torch.Tensor]:
        """The statistics of ``key`` (empty for ``identity`` keys)."""
        self._check_key(key)
        return dict(self._stats.get(key, {}))

    def _check_key(self, key: str) -> None:
        if key not in self._modes:
            raise KeyError(f"no normalizer for key {key!r} (have {sorted(self._modes)})")

    # ------------------------------------------------------------------ use

    def normalize(self, x: ArrayT, key: str) -> ArrayT:
        """Raw units -> normalized, for a tensor or numpy array whose last axis is the feature."""
        return self._apply(x, key, forward=True)

    def unnormalize(self, x: ArrayT, key: str) -> ArrayT:
        """Normalized -> raw units (the inverse of :meth:`normalize`)."""
        return self._apply(x, key, forward=False)

    def normalize_dict(self, data: Mapping[str, ArrayT]) -> dict[str, ArrayT]:
        """:meth:`normalize` every entry of ``data``; every key must have a normalizer."""
        return {key: self.normalize(value, key) for key, value in data.items()}

    def unnormalize_dict(self, data: Mapping[str, ArrayT]) -> dict[str, ArrayT]:
        """:meth:`unnormalize` every entry of ``data``."""
        return {key: self.unnormalize(value, key) for key, value in data.items()}

    def _apply(self, x: ArrayT, key: str, *, forward: bool) -> ArrayT:
        self._check_key(key)
        is_tensor = isinstance(x, torch.Tensor)
        if is_tensor:
            x = x if torch.is_floating_point(x) else x.to(torch.float32)
        else:
            x = np.asarray(x)
            x = x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)
        if self._modes[key] == "identity":
            return x
        shift, scale, bias = self._affine[key] if is_tensor else self._affine_np[key]
        if scale.shape[0] != 1 and (x.ndim == 0 or x.shape[-1] != scale.shape[0]):
            raise ValueError(
                f"key {key!r}: last axis of shape {tuple(x.shape)} should be {scale.shape[0]}"
            )
        return (x - shift) * scale + bias if forward else (x - bias) / scale + shift

    def to(self, device: torch.device | str) -> Normalizer:
        """Move the statistics to ``device`` (in place); returns ``self``."""
        for key, stats in self._stats.items():
            self._stats[key] = {name: value.to(device) for name, value in stats.items()}
        for key, arrays in self._affine.items():
            self._affine[key] = tuple(a.to(device) for a in arrays)
        return self

    # ------------------------------------------------------------------ saving

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Statistics as flat CPU tensors named ``<key>/<stat>``."""
        return {
            f"{key}/{name}": value.detach().cpu().contiguous()
            for key, stats in self._stats.items()
            for name, value in stats.items()
        }

    def config(self) -> dict[str, Any]:
        """The JSON half: format, version, eps and modes."""
        return {"format": _FORMAT, "version": _VERSION, "eps": self.eps, "modes": self.modes}

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], config: Mapping[str, Any]
    ) -> Normalizer:
        """Rebuild from :meth:`state_dict` and :meth:`config` output."""
        if config.get("format") != _FORMAT or config.get("version") != _VERSION:
            raise ValueError(f"not a {_FORMAT} v{_VERSION} config: {dict(config)}")
        stats: dict[str, dict[str, torch.Tensor]] = {}
        for name, value in state.items():
            key, _, stat = name.rpartition("/")
            stats.setdefault(key, {})[stat] = value
        return cls(config["modes"], stats, eps=config["eps"])

    def save(self, directory: str | Path) -> None:
        """Write ``normalizer.safetensors`` and ``normalizer.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_file(self.state_dict(), directory / TENSORS_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Normalizer:
        """Read what :meth:`save` wrote."""
        directory = Path(directory)
        try:
            config = json.loads((directory / CONFIG_FILE).read_text())
            state = safetensors.torch.load_file(directory / TENSORS_FILE)
            return cls.from_state_dict(state, config)
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            RecursionError,
            safetensors.SafetensorError,
        ) as exc:
            raise DataError(directory, f"unreadable normalizer ({exc})") from exc

    def to_bytes(self) -> bytes:
        """One safetensors blob; the JSON config rides in its metadata."""
        return safetensors.torch.save(
            self.state_dict(), metadata={_FORMAT: json.dumps(self.config())}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Normalizer:
        """Read what :meth:`to_bytes` wrote."""
        (header_len,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
        if _FORMAT not in metadata:
            raise ValueError("safetensors blob carries no normalizer config")
        return cls.from_state_dict(safetensors.torch.load(data), json.loads(metadata[_FORMAT]))

    def __repr__(self) -> str:
        return f"Normalizer({self.modes}, eps={self.eps})"


def _checked_stats(key: str, stats: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    missing = [name for name in STATS if name not in stats]
    if missing:
        raise ValueError(f"statistics of key {key!r} lack {missing}")
    out = {}
    for name in STATS:
        value = torch.as_tensor(np.asarray(stats[name], dtype=np.float32)).reshape(-1).clone()
        if not torch.isfinite(value).all():
            raise ValueError(f"statistic {name!r} of key {key!r} is not finite: {value.tolist()}")
        out[name] = value
    if len({value.shape for value in out.values()}) != 1:
        raise ValueError(f"statistics of key {key!r} differ in shape")
    return out


def _affine(mode: str, stats: Mapping[str, torch.Tensor], eps: float) -> tuple[np.ndarray, ...]:
    """float32 ``(shift, scale, bias)`` with ``normalized = (raw - shift) * scale + bias``."""
    lo, hi, mean, std = (stats[name].numpy().astype(np.float64) for name in STATS)
    if mode == "min_max":
        flat = hi - lo < eps
        shift = np.where(flat, (lo + hi) / 2, lo)
        scale = np.where(flat, 1.0, 2.0 / np.where(flat, 1.0, hi - lo))
        bias = np.where(flat, 0.0, -1.0)
    else:
        flat = std < eps
        shift, scale, bias = mean, 1.0 / np.where(flat, 1.0, std), np.zeros_like(mean)
    return tuple(np.asarray(a, dtype=np.float32) for a in (shift, scale, bias))

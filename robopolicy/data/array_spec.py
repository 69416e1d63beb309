"""How one key of an episode store is laid out on disk: dtype, chunking and codecs."""

from __future__ import annotations

import dataclasses
import math

import numcodecs
import numpy as np

from robopolicy.data.store_checks import COMPRESSORS, FILTERS, check_codec

_CHUNK_BYTES = 1 << 20
_MAX_CHUNK_FRAMES = 16384


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """True for per-frame shapes that look like images: (H, W, C) with C in 1, 3, 4."""
    return len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] >= 8 and shape[1] >= 8


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """How one key is laid out on disk."""

    dtype: np.dtype
    """Element type, kept exactly as given."""
    shape: tuple[int, ...]
    """Shape of one frame (the array is ``(T, *shape)``)."""
    chunk_frames: int
    """Frames per chunk along time; images use 1 so a frame decodes on its own."""
    compressor: numcodecs.abc.Codec | None
    """numcodecs compressor, or None for raw bytes."""
    filters: tuple[numcodecs.abc.Codec, ...] = ()
    """numcodecs filters applied before the compressor; the defaults add a CRC32 per chunk, so a
    truncated or bit-flipped chunk fails loudly instead of decoding to garbage."""

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "filters", tuple(self.filters))

    @classmethod
    def default(cls, dtype: np.dtype, shape: tuple[int, ...]) -> ArraySpec:
        """Images: one frame per chunk, zstd with byte shuffle; other arrays: ~1 MiB chunks with
        bit shuffle. Both carry a CRC32 of every chunk."""
        checked = (numcodecs.CRC32(),)
        if is_image_shape(shape):
            blosc = numcodecs.Blosc("zstd", 5, numcodecs.Blosc.SHUFFLE)
            return cls(dtype, shape, 1, blosc, checked)
        frame_bytes = max(1, np.dtype(dtype).itemsize * math.prod(shape))
        frames = int(np.clip(_CHUNK_BYTES // frame_bytes, 1, _MAX_CHUNK_FRAMES))
        blosc = numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE)
        return cls(dtype, shape, frames, blosc, checked)

    def check_codecs(self, where: object, key: str) -> None:
        """DataError naming ``where`` and the key's codec field unless every codec is one the
        store reads back (:data:`~robopolicy.data.store_checks.COMPRESSORS`, ``FILTERS``)."""
        if self.compressor is not None:
            check_codec(where, self.compressor.get_config(), f"{key}.compressor", COMPRESSORS)
        for codec in self.filters:
            check_codec(where, codec.get_config(), f"{key}.filters", FILTERS)

"""The wire: msgpack messages with numpy arrays, in length-prefixed frames. No torch, no pickle.

A frame is an 8-byte header, ``b"RPW1"`` then the body length as a big-endian uint32, then the
body: one msgpack value (in practice a map with ``str`` keys). A numpy array travels as msgpack
extension type :data:`ARRAY_EXT` whose payload is the msgpack array ``[dtype, shape, data]``:
``dtype`` one of :data:`DTYPES` (numpy ``dtype.str`` spellings, explicitly little-endian),
``shape`` a list of non-negative ints, ``data`` the C-order bytes (``prod(shape) * itemsize``).

Decoding is strict; every refusal is a :class:`WireError` with a ``code``: an oversized frame or
message (``too_large``), a header without the magic (``frame``), bytes that are not one msgpack
value (``malformed``), an extension type other than :data:`ARRAY_EXT` (``ext``), a dtype outside
the allowlist (``dtype``), a shape that does not match the bytes or exceeds the caps
(``shape``), nesting deeper than :attr:`WireLimits.max_depth` (``depth``), a value of a type the
wire does not carry, such as a msgpack timestamp or a non-``str`` map key (``type``). Nothing is
ever unpickled: object, string, void, complex and datetime dtypes are refused both ways.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import struct
from typing import Any

import msgpack
import numpy as np

MAGIC = b"RPW1"
HEADER = struct.Struct(">4sI")
ARRAY_EXT = 1
DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]
)
"""Allowed array dtypes: bool, int8-64, uint8-64, float16/32/64, little-endian."""
LEAF_TYPES = (str, bytes, int, float, bool, type(None), np.ndarray)


class WireError(ValueError):
    """A message or frame the wire refuses; ``code`` says why (see the module docstring)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class WireLimits:
    """Caps applied to every frame and message, on both sides."""

    max_message_bytes: int = 64 << 20
    """Largest frame body (bytes); the header is checked before the body is read."""
    max_array_elements: int = 16 << 20
    """Most elements in one array."""
    max_ndim: int = 8
    """Most dimensions of one array."""
    max_depth: int = 8
    """Deepest nesting of maps and lists (the top-level map is depth 1)."""
    max_container_len: int = 4096
    """Most entries in one map or list."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"{field.name} must be >= 1, got {getattr(self, field.name)}")
        if self.max_message_bytes > 0xFFFFFFFF:
            raise ValueError("max_message_bytes must fit the 4-byte frame length")


DEFAULT_LIMITS = WireLimits()


def encode(message: Any, limits: WireLimits = DEFAULT_LIMITS) -> bytes:
    """msgpack bytes of ``message``; numpy arrays and scalars become :data:`ARRAY_EXT`."""
    try:
        body = msgpack.packb(message, default=_pack_default, use_bin_type=True)
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError("type", f"cannot encode: {exc}") from None
    if len(body) > limits.max_message_bytes:
        raise WireError("too_large", f"{len(body)} bytes > {limits.max_message_bytes}")
    return body


def decode(body: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Any:
    """The message in ``body``, every array checked; raises :class:`WireError`."""
    if len(body) > limits.max_message_bytes:
        raise WireError("too_large", f"{len(body)} bytes > {limits.max_message_bytes}")
    n = limits.max_container_len
    try:
        message = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=lambda code, data: _unpack_array(code, data, limits),
            max_array_len=n,
            max_map_len=n,
            max_bin_len=limits.max_message_bytes,
            max_str_len=limits.max_message_bytes,
            max_ext_len=limits.max_message_bytes,
        )
    except WireError:
        raise
    except msgpack.StackError:
        raise WireError("depth", "nesting too deep") from None
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        raise WireError("malformed", f"not one msgpack value ({type(exc).__name__})") from None
    _check_tree(message, 1, limits)
    return message


def frame(body: bytes) -> bytes:
    """``body`` with its 8-byte header."""
    return HEADER.pack(MAGIC, len(body)) + body


def body_length(header: bytes, limits: WireLimits = DEFAULT_LIMITS) -> int:
    """The body length announced by an 8-byte ``header``, refused before any body is read."""
    magic, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise WireError("frame", "bad frame magic")
    if length > limits.max_message_bytes:
        raise WireError("too_large", f"frame of {length} bytes > {limits.max_message_bytes}")
    return length


def send_message(sock: socket.socket, message: Any, limits: WireLimits = DEFAULT_LIMITS) -> None:
    """Encode, frame and send ``message`` on a blocking socket."""
    sock.sendall(frame(encode(message, limits)))


def recv_message(sock: socket.socket, limits: WireLimits = DEFAULT_LIMITS) -> Any:
    """Read one frame from a blocking socket and decode it (``socket.timeout`` passes through;
    ``ConnectionError`` when the peer closes)."""
    length = body_length(_recv_exactly(sock, HEADER.size), limits)
    return decode(_recv_exactly(sock, length), limits)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ConnectionError("connection closed by peer")
        got += n
    return bytes(buffer)


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        obj = np.asarray(obj)
    if not isinstance(obj, np.ndarray):
        raise WireError("type", f"{type(obj).__name__} does not travel on the wire")
    dtype = obj.dtype.newbyteorder("<") if obj.dtype.byteorder == ">" else obj.dtype
    if dtype.str not in DTYPES:
        raise WireError("dtype", f"dtype {obj.dtype} is not allowed (numeric dtypes only)")
    data = np.ascontiguousarray(obj, dtype=dtype).tobytes()
    payload = msgpack.packb([dtype.str, list(obj.shape), data], use_bin_type=True)
    return msgpack.ExtType(ARRAY_EXT, payload)


def _unpack_array(code: int, payload: bytes, limits: WireLimits) -> np.ndarray:
    if code != ARRAY_EXT:
        raise WireError("ext", f"unknown extension type {code}")
    try:
        fields = msgpack.unpackb(payload, raw=False, max_array_len=64, max_map_len=0, max_ext_len=0)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise WireError("malformed", f"unreadable array header ({type(exc).__name__})") from None
    if not (isinstance(fields, list) and len(fields) == 3):
        raise WireError("type", "an array is [dtype, shape, data]")
    dtype, shape, data = fields
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError("dtype", f"array dtype {str(dtype)[:16]!r} is not allowed")
    if not (isinstance(shape, list) and len(shape) <= limits.max_ndim):
        raise WireError("shape", f"array shape must be a list of at most {limits.max_ndim} ints")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise WireError("shape", "array dimensions must be non-negative ints")
    size = math.prod(shape)
    if size > limits.max_array_elements:
        raise WireError("too_large", f"array of {size} elements > {limits.max_array_elements}")
    if not isinstance(data, bytes) or len(data) != size * np.dtype(dtype).itemsize:
        raise WireError("shape", f"array data is not {size} x {dtype} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _check_tree(value: Any, depth: int, limits: WireLimits) -> None:
    if isinstance(value, dict | list) and depth > limits.max_depth:
        raise WireError("depth", f"nesting deeper than {limits.max_depth}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise WireError("type", "map keys must be strings")
            _check_tree(item, depth + 1, limits)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, depth + 1, limits)
    elif not isinstance(value, LEAF_TYPES):
        raise WireError("type", f"{type(value).__name__} does not travel on the wire")

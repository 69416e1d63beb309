"""The wire: msgpack messages with numpy arrays, in length-prefixed frames. No torch, no pickle.

A frame is an 8-byte header, ``b"RPW1"`` then the body length as a big-endian uint32, then the
body: one msgpack value (in practice a map with ``str`` keys). A numpy array travels as msgpack
extension type :data:`ARRAY_EXT` whose payload is the msgpack array ``[dtype, shape, data]``:
``dtype`` one of :data:`DTYPES` (numpy ``dtype.str`` spellings, explicitly little-endian),
``shape`` a list of non-negative ints, ``data`` the C-order bytes (``prod(shape) * itemsize``).

Decoding is strict and bounded: :func:`scan` walks the body's msgpack headers without building
anything, so a body holding more than :attr:`WireLimits.max_objects` values, nesting deeper than
:attr:`WireLimits.max_depth` or a foreign type is refused after at most ``max_objects`` steps,
before any allocation (a 4 MB body of empty maps would otherwise become 4 M dicts); it also
returns the top-level ``token``, so a server authenticates before it decodes. Every refusal is
a :class:`WireError` with a ``code``: an oversized frame, message or object count
(``too_large``), a header without the magic (``frame``), bytes that are not one msgpack value
or a container over :attr:`WireLimits.max_container_len` (``malformed``), an extension type
other than :data:`ARRAY_EXT` (``ext``), a dtype outside the allowlist (``dtype``), a shape
that does not match the bytes or exceeds the caps (``shape``), nesting too deep (``depth``), a
value the wire does not carry, such as a msgpack timestamp or a non-``str`` map key
(``type``). Nothing is ever unpickled: object, string, void, complex and datetime dtypes are
refused both ways.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from typing import Any, NamedTuple

import msgpack
import numpy as np

MAGIC = b"RPW1"
HEADER = struct.Struct(">4sI")
ARRAY_EXT = 1
TIMESTAMP_EXT = 0xFF  # msgpack's timestamp extension (-1), as the unsigned type byte
DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]
)
"""Allowed array dtypes: bool, int8-64, uint8-64, float16/32/64, little-endian."""
ENCODE_BUFFER = 16 << 10
"""msgpack's packer starts with 256 KiB, an mmap and munmap per message (~20 us); this is
enough for a typical request and grows as needed."""


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
    max_objects: int = 4096
    """Most msgpack values in one message (every map, list, key, scalar and array counts 1)."""

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
        body = msgpack.packb(
            message, default=_pack_default, use_bin_type=True, buf_size=ENCODE_BUFFER
        )
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError("type", f"cannot encode: {exc}") from None
    if len(body) > limits.max_message_bytes:
        raise WireError("too_large", f"{len(body)} bytes > {limits.max_message_bytes}")
    return body


def decode(body: Any, limits: WireLimits = DEFAULT_LIMITS, *, scanned: bool = False) -> Any:
    """The message in ``body`` (bytes-like), every array checked; raises :class:`WireError`.
    ``scanned``: :func:`scan` already passed this body with these limits. A body of at most
    ``max_objects`` bytes cannot hold more values than that, so it is decoded at once and its
    tree checked after (cheaper than the scan); a larger one is scanned first."""
    if len(body) > limits.max_message_bytes:
        raise WireError("too_large", f"{len(body)} bytes > {limits.max_message_bytes}")
    small = not scanned and len(body) <= limits.max_objects
    if not (small or scanned):
        scan(body, limits)
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
    if small:
        _check_tree(message, 1, limits.max_depth)
    return message


def frame(body: bytes) -> bytes:
    """``body`` with its 8-byte header."""
    return HEADER.pack(MAGIC, len(body)) + body


def body_length(header: Any, limits: WireLimits = DEFAULT_LIMITS) -> int:
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


def _recv_exactly(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ConnectionError("connection closed by peer")
        got += n
    return buffer


# ---------------------------------------------------------------------- the bounded scan

_SCALAR, _STR, _BIN, _EXT, _ARRAY, _MAP, _BAD = range(7)


def _first_bytes() -> tuple[tuple[int, int, int], ...]:
    """For each msgpack first byte: (kind, width of its length field, inline length)."""
    table = [(_BAD, 0, 0)] * 256  # 0xc1 is never used
    for b in [*range(0x00, 0x80), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3]:
        table[b] = (_SCALAR, 0, 0)  # fixints, nil, false, true
    for n in range(16):
        table[0x80 + n], table[0x90 + n] = (_MAP, 0, n), (_ARRAY, 0, n)
    for n in range(32):
        table[0xA0 + n] = (_STR, 0, n)
    for b, size in zip(range(0xCA, 0xD4), (4, 8, 1, 2, 4, 8, 1, 2, 4, 8), strict=True):
        table[b] = (_SCALAR, 0, size)  # float32/64, uint8-64, int8-64
    for first, kind in ((0xC4, _BIN), (0xC7, _EXT), (0xD9, _STR)):
        for i, width in enumerate((1, 2, 4)):
            table[first + i] = (kind, width, 0)
    for b, size in zip(range(0xD4, 0xD9), (1, 2, 4, 8, 16), strict=True):
        table[b] = (_EXT, 0, size)  # fixext
    table[0xDC], table[0xDD] = (_ARRAY, 2, 0), (_ARRAY, 4, 0)
    table[0xDE], table[0xDF] = (_MAP, 2, 0), (_MAP, 4, 0)
    return tuple(table)


_FIRST = _first_bytes()
_KEYS = "map keys must be strings"


class Scanned(NamedTuple):
    """What :func:`scan` reads from the top-level map without decoding the body."""

    token: bytes | None
    """The ``token`` field's raw UTF-8 bytes, when it is a string."""
    id: int | None
    """The ``id`` field, when it is an int."""


def scan(body: Any, limits: WireLimits = DEFAULT_LIMITS) -> Scanned:
    """Check ``body``'s structure without decoding it, and read the top-level ``token`` and
    ``id``. Bounded: at most ``max_objects + max_container_len`` steps, nothing allocated but a
    stack of ``max_depth`` entries. Raises :class:`WireError`."""
    if len(body) > limits.max_message_bytes:
        raise WireError("too_large", f"{len(body)} bytes > {limits.max_message_bytes}")
    end, table = len(body), _FIRST
    max_objects, max_depth, max_len = limits.max_objects, limits.max_depth, limits.max_container_len
    pos = objects = 0
    stack: list[tuple[int, bool]] = []  # (values left, is a map) of the enclosing containers
    left, in_map = 1, False  # values left in the current container (a map counts its keys)
    token = request_id = field = None
    while True:
        if not left:
            if not stack:
                break
            left, in_map = stack.pop()
            continue
        is_key = in_map and not left & 1
        left -= 1
        objects += 1
        if pos >= end:
            raise WireError("malformed", "not one msgpack value (truncated)")
        first = body[pos]
        kind, width, size = table[first]
        pos += 1
        if width:
            size = int.from_bytes(body[pos : pos + width], "big")
            pos += width
        if kind <= _BIN:  # a scalar, str or bin: skip its bytes
            if len(stack) == 1 and in_map:  # an entry of the top-level map
                if is_key:
                    if kind != _STR:
                        raise WireError("type" if kind == _BIN else "malformed", _KEYS)
                    field = bytes(body[pos : pos + size]) if size <= 5 else None
                elif field == b"token" and kind == _STR:
                    token = bytes(body[pos : pos + size])
                elif field == b"id" and kind == _SCALAR:
                    request_id = _int_at(body, first, pos, size)
            elif is_key and kind != _STR:
                raise WireError("type" if kind == _BIN else "malformed", _KEYS)
            pos += size
            continue
        # A leaf loop is at most one container long: counting here bounds the work.
        if is_key:
            raise WireError("malformed", _KEYS)
        if objects > max_objects:
            raise WireError("too_large", f"more than {max_objects} values")
        if kind == _EXT:
            code = body[pos] if pos < end else ARRAY_EXT
            if code == TIMESTAMP_EXT:
                raise WireError("type", "a msgpack timestamp does not travel on the wire")
            if code != ARRAY_EXT:
                raise WireError("ext", f"unknown extension type {code}")
            pos += 1 + size
        elif kind == _BAD:
            raise WireError("malformed", "not one msgpack value (byte 0xc1)")
        else:  # a map or a list opens a level
            if len(stack) >= max_depth:
                raise WireError("depth", f"nesting deeper than {max_depth}")
            if size > max_len:
                raise WireError("malformed", f"{size} entries > {max_len}")
            stack.append((left, in_map))
            left, in_map = (2 * size, True) if kind == _MAP else (size, False)
    if objects > max_objects:
        raise WireError("too_large", f"more than {max_objects} values")
    if pos != end:
        raise WireError("malformed", "not one msgpack value (truncated or trailing bytes)")
    return Scanned(token, request_id)


def _int_at(body: Any, first: int, pos: int, size: int) -> int | None:
    """The integer whose msgpack first byte is ``first`` and payload ``body[pos:pos+size]``."""
    if first < 0x80:
        return first
    if first >= 0xE0:
        return first - 0x100
    if 0xCC <= first <= 0xD3:
        return int.from_bytes(body[pos : pos + size], "big", signed=first >= 0xD0)
    return None  # nil, a bool or a float


# ---------------------------------------------------------------------- arrays


def _pack_default(obj: Any) -> Any:
    if type(obj) is not np.ndarray:
        if isinstance(obj, np.generic):
            obj = np.asarray(obj)
        elif not isinstance(obj, np.ndarray):
            raise WireError("type", f"{type(obj).__name__} does not travel on the wire")
    code = obj.dtype.str
    if code not in DTYPES:
        if obj.dtype.byteorder != ">" or obj.dtype.newbyteorder("<").str not in DTYPES:
            raise WireError("dtype", f"dtype {obj.dtype} is not allowed (numeric dtypes only)")
        obj = obj.astype(obj.dtype.newbyteorder("<"))
        code = obj.dtype.str
    data = obj.tobytes()  # C order, whatever the strides
    payload = msgpack.packb([code, list(obj.shape), data], buf_size=len(data) + 64)
    return tuple.__new__(msgpack.ExtType, (ARRAY_EXT, payload))  # ExtType() re-checks both


_NUMPY_DTYPES = {code: np.dtype(code) for code in DTYPES}


def _unpack_array(code: int, payload: bytes, limits: WireLimits) -> np.ndarray:
    if code != ARRAY_EXT:
        raise WireError("ext", f"unknown extension type {code}")
    try:
        fields = msgpack.unpackb(payload, raw=False, max_array_len=64, max_map_len=0, max_ext_len=0)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise WireError("malformed", f"unreadable array header ({type(exc).__name__})") from None
    if type(fields) is not list or len(fields) != 3:
        raise WireError("type", "an array is [dtype, shape, data]")
    name, shape, data = fields
    dtype = _NUMPY_DTYPES.get(name) if type(name) is str else None
    if dtype is None:
        raise WireError("dtype", f"array dtype {str(name)[:16]!r} is not allowed")
    if type(shape) is not list or len(shape) > limits.max_ndim:
        raise WireError("shape", f"array shape must be a list of at most {limits.max_ndim} ints")
    size = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise WireError("shape", "array dimensions must be non-negative ints")
        size *= dim
    if size > limits.max_array_elements:
        raise WireError("too_large", f"array of {size} elements > {limits.max_array_elements}")
    if type(data) is not bytes or len(data) != size * dtype.itemsize:
        raise WireError("shape", f"array data is not {size} x {name} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


_CONTAINERS = (dict, list)
LEAF_TYPES = (str, bytes, int, float, bool, type(None), np.ndarray)


def _check_tree(value: Any, depth: int, max_depth: int) -> None:
    """What :func:`scan` checks, on a decoded message: depth, ``str`` keys, leaf types."""
    if type(value) is dict:
        if depth > max_depth:
            raise WireError("depth", f"nesting deeper than {max_depth}")
        for key, item in value.items():
            if type(key) is not str:
                raise WireError("type", _KEYS)
            if type(item) in _CONTAINERS:
                _check_tree(item, depth + 1, max_depth)
            elif not isinstance(item, LEAF_TYPES):
                raise WireError("type", f"{type(item).__name__} does not travel on the wire")
    elif type(value) is list:
        if depth > max_depth:
            raise WireError("depth", f"nesting deeper than {max_depth}")
        for item in value:
            if type(item) in _CONTAINERS:
                _check_tree(item, depth + 1, max_depth)
            elif not isinstance(item, LEAF_TYPES):
                raise WireError("type", f"{type(item).__name__} does not travel on the wire")
    elif not isinstance(value, LEAF_TYPES):
        raise WireError("type", f"{type(value).__name__} does not travel on the wire")

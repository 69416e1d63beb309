"""The wire: every allowed dtype round-trips bit for bit; everything else is refused by code."""

from __future__ import annotations

import pickle
import time

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from robopolicy.serve import hostile
from robopolicy.serve.wire import (
    ARRAY_EXT,
    DTYPES,
    MAGIC,
    WireError,
    WireLimits,
    body_length,
    decode,
    encode,
    frame,
    scan,
)


def ext(dtype: object, shape: object, data: object) -> msgpack.ExtType:
    return msgpack.ExtType(ARRAY_EXT, msgpack.packb([dtype, shape, data]))


def refused(body: bytes, code: str, limits: WireLimits | None = None) -> None:
    with pytest.raises(WireError) as info:
        decode(body, limits or WireLimits())
    assert info.value.code == code, info.value


@settings(max_examples=25, deadline=None)
@given(
    array=st.sampled_from(sorted(DTYPES)).flatmap(
        lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=4, max_side=5))
    )
)
def test_every_allowed_dtype_round_trips_exactly(array: np.ndarray) -> None:
    message = {"a": array, "nested": [{"b": array[..., None]}], "n": 3, "s": "x", "f": 0.5}
    back = decode(encode(message))
    for got, want in ((back["a"], array), (back["nested"][0]["b"], array[..., None])):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()  # bit for bit, NaN payloads included
        assert got.flags.writeable
    assert (back["n"], back["s"], back["f"]) == (3, "x", 0.5)


def test_non_native_and_strided_arrays_travel_little_endian() -> None:
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    back = decode(encode({"x": big, "t": big.T, "g": np.float32(2.5), "h": np.float64(1.5)}))
    assert back["x"].dtype.str == "<f4" and np.array_equal(back["x"], big)
    assert np.array_equal(back["t"], big.T)
    assert back["g"].shape == () and back["g"].dtype == np.float32
    assert back["h"] == 1.5  # numpy float64 is a Python float: it travels as one


@pytest.mark.parametrize(
    "value",
    [
        np.array([object()], dtype=object),
        np.array(["text"]),
        np.array([1 + 2j]),
        np.zeros(2, dtype="V4"),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
    ],
)
def test_encode_refuses_non_numeric_dtypes(value: np.ndarray) -> None:
    with pytest.raises(WireError) as info:
        encode({"x": value})
    assert info.value.code == "dtype"


def test_encode_refuses_other_objects_and_oversized_messages() -> None:
    with pytest.raises(WireError) as info:
        encode({"x": {1, 2}})
    assert info.value.code == "type"
    with pytest.raises(WireError) as info:
        encode({"x": np.zeros(1000)}, WireLimits(max_message_bytes=100))
    assert info.value.code == "too_large"


REFUSED = [
    (pickle.dumps({"x": np.zeros(2)}), "malformed"),  # a pickle is never unpickled
    (msgpack.packb({"x": ext("|O", [1], pickle.dumps(object()))}), "dtype"),
    (msgpack.packb({"x": ext("<U4", [1], b"a\0\0\0b\0\0\0c\0\0\0d\0\0\0")}), "dtype"),
    (msgpack.packb({"x": ext(">f4", [1], b"\0\0\0\0")}), "dtype"),
    (msgpack.packb({"x": ext("float32", [1], b"\0\0\0\0")}), "dtype"),
    (msgpack.packb({"x": ext("<f4", [3], b"\0" * 8)}), "shape"),  # 12 bytes declared
    (msgpack.packb({"x": ext("<f4", [-1], b"")}), "shape"),
    (msgpack.packb({"x": ext("<f4", [True], b"\0\0\0\0")}), "shape"),
    (msgpack.packb({"x": ext("<f4", [1.0], b"\0\0\0\0")}), "shape"),
    (msgpack.packb({"x": ext("<f4", [1] * 9, b"\0\0\0\0")}), "shape"),
    (msgpack.packb({"x": ext("<f4", [2**40], b"")}), "too_large"),
    (msgpack.packb({"x": ext("|u1", [2**31, 2**31], b"")}), "too_large"),
    (msgpack.packb({"x": ext("<f4", "1", b"\0\0\0\0")}), "shape"),
    (msgpack.packb({"x": ext("<f4", [1], "text")}), "shape"),
    (msgpack.packb({"x": msgpack.ExtType(ARRAY_EXT, b"\xc1")}), "malformed"),
    (msgpack.packb({"x": msgpack.ExtType(ARRAY_EXT, msgpack.packb({"d": 1}))}), "malformed"),
    (msgpack.packb({"x": msgpack.ExtType(ARRAY_EXT, msgpack.packb(["<f4", [1]]))}), "type"),
    (msgpack.packb({"x": msgpack.ExtType(7, b"")}), "ext"),
    (msgpack.packb({"x": msgpack.Timestamp(1, 0)}), "type"),
    (msgpack.packb({b"raw": 1}), "type"),
    (msgpack.packb({1: 1}), "malformed"),
    (msgpack.packb({"x": [[[[[[[[[[1]]]]]]]]]]}), "depth"),
    (b"\x91" * 100_000 + b"\xc0", "depth"),
    (b"\x92\x01", "malformed"),  # truncated
    (msgpack.packb({"x": 1}) + b"\x00", "malformed"),  # trailing bytes
    (b"\xa2\xff\xfe", "malformed"),  # invalid UTF-8
    (b"\xdd\xff\xff\xff\xff", "malformed"),  # a list claiming 4 G entries
    (b"\xc1", "malformed"),  # a byte msgpack never uses
]
"""Bodies the decoder refuses, with the code it gives (the scanner must give the same)."""


@pytest.mark.parametrize(("body", "code"), REFUSED)
def test_decode_refuses(body: bytes, code: str) -> None:
    refused(body, code)


def test_decode_enforces_the_limits() -> None:
    refused(b"\x00" * 200, "too_large", WireLimits(max_message_bytes=100))
    refused(msgpack.packb({"x": list(range(50))}), "malformed", WireLimits(max_container_len=10))
    ok = encode({"x": np.zeros(100, np.uint8)})
    refused(ok, "too_large", WireLimits(max_array_elements=99))


def test_frame_header_is_checked_before_the_body() -> None:
    assert body_length(frame(b"abc")[:8]) == 3
    with pytest.raises(WireError) as info:
        body_length(b"GET / HT")
    assert info.value.code == "frame"
    with pytest.raises(WireError) as info:
        body_length(MAGIC + b"\xff\xff\xff\xff")
    assert info.value.code == "too_large"


@pytest.mark.parametrize(("body", "code"), REFUSED)
def test_scanning_first_refuses_the_same_bodies(body: bytes, code: str) -> None:
    """A body over ``max_objects`` bytes is scanned, then decoded; a smaller one is decoded,
    then its tree checked: both paths refuse alike."""
    with pytest.raises(WireError) as info:
        scan(body)
        decode(body, scanned=True)
    assert info.value.code == code, info.value
    refused(body, code)


def test_an_object_count_bomb_is_refused_after_bounded_work() -> None:
    body = hostile.object_bomb(4_200_000)[8:]  # 4.2 MB, one empty map per byte
    start = time.perf_counter()
    for check in (scan, decode):
        with pytest.raises(WireError) as info:
            check(body)
        assert info.value.code == "too_large" and "4096 values" in info.value.message
    assert time.perf_counter() - start < 0.2  # unbounded, decoding took 2.8 s and 283 MB


def test_scan_reads_the_token_and_id_without_decoding() -> None:
    body = encode({"id": 2**40, "token": "a-token", "obs": {"token": "inner", "id": 3}})
    assert scan(body) == (b"a-token", 2**40)
    assert scan(encode({"obs": {"token": "inner"}, "id": "7"})) == (None, None)

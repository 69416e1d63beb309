"""Hostile clients against ``robopolicy serve``; it answers or closes, never dies.

A few thousand messages: framed garbage, truncated bodies, flipped bytes and requests with wrong
fields, types, shapes, dtypes, NaN, huge arrays, missing or extra keys must each get an error
reply (a code from the protocol, never a traceback) on a connection that has earned its slot
and stays usable; unframed garbage, oversized headers and frames cut short must get the
connection closed. Afterwards the server still answers a valid request exactly. Seeded, so a
failure replays.

Then the attacks of :mod:`robopolicy.serve.hostile` (R19): slow-loris sockets beyond every slot,
abandoned 64 MiB bodies, object-count bombs and clients that never read their replies. Through
each a valid client is timed: every request answered within 1 s; and the server's RSS must come
back to within 10% of what it was before.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from robopolicy.serve import PolicyClient, hostile, messages
from robopolicy.serve.wire import ARRAY_EXT, MAGIC, decode, encode, frame
from tests.serve.conftest import FIXTURES

CODES = {
    messages.MALFORMED,
    messages.BAD_REQUEST,
    messages.INVALID_INPUT,
    messages.INTERNAL,
    messages.OVERLOADED,
    messages.EXPIRED,  # a flipped byte can make timeout_ms tiny
}
N_REPLIED, N_CLOSED = 3000, 300


def valid(rng: np.random.Generator, batch: int = 1) -> dict[str, Any]:
    request: dict[str, Any] = {
        "type": "infer",
        "id": int(rng.integers(0, 2**62)),
        "timeout_ms": 2000.0,
        "obs": {"state": rng.normal(size=(batch, 2, 3)).astype(np.float32)},
    }
    if rng.random() < 0.5:
        request["noise"] = rng.normal(size=(batch, 4, 2)).astype(np.float32)
    return request


def raw_ext(dtype: Any, shape: Any, data: Any) -> msgpack.ExtType:
    return msgpack.ExtType(ARRAY_EXT, msgpack.packb([dtype, shape, data]))


def odd_values(rng: np.random.Generator) -> list[Any]:
    return [
        None, True, -1, 2**64 - 1, 1.5, float("nan"), float("inf"), "x" * 300, b"\x00\x01",
        [], [1, [2, [3]]], {"a": 1}, np.zeros(3, np.int8), np.zeros((0, 2, 3), np.float32),
        msgpack.ExtType(9, b"boo"), msgpack.Timestamp(1, 2), raw_ext("|O", [1], b"\x80\x04."),
        raw_ext("<f4", [2**40], b""), raw_ext("<f8", [3], b"\x00"), [[[[[[[[[[0]]]]]]]]]],
        rng.normal(size=(2, 2, 3)).astype(np.float16),
    ]  # fmt: skip


def mutated(rng: np.random.Generator) -> dict[str, Any]:
    """A request with one thing wrong (or, rarely, right) with it."""
    request = valid(rng, batch=int(rng.integers(1, 4)))
    state = request["obs"]["state"]
    odd = odd_values(rng)
    pick = int(rng.integers(0, 12))
    if pick == 0:
        request.pop(str(rng.choice(sorted(request))))
    elif pick == 1:
        request[str(rng.choice(["extra", "obs2", "__class__", "token2"]))] = 1
    elif pick == 2:
        request[str(rng.choice(sorted(request)))] = odd[int(rng.integers(len(odd)))]
    elif pick == 3:
        request["obs"]["state"] = odd[int(rng.integers(len(odd)))]
    elif pick == 4:
        request["obs"][str(rng.choice(["image.front", "timestamp", "State"]))] = state
    elif pick == 5:
        request["obs"] = {}
    elif pick == 6:
        dtype = rng.choice(["int8", "uint8", "int64", "uint64", "bool", "float16", "float64"])
        request["obs"]["state"] = state.astype(str(dtype))
    elif pick == 7:
        shape = list(state.shape)
        shape[int(rng.integers(0, 3))] += int(rng.choice([-1, 1, 5]))
        request["obs"]["state"] = np.zeros([max(d, 0) for d in shape], np.float32)
    elif pick == 8:
        state.flat[int(rng.integers(state.size))] = rng.choice([np.nan, np.inf, -np.inf])
    elif pick == 9:
        request["steps"] = odd[int(rng.integers(len(odd)))] if rng.random() < 0.5 else 10**6
    elif pick == 10:
        request["noise"] = rng.normal(size=(1, 4, int(rng.integers(1, 4)))).astype(np.float32)
    else:
        request["type"] = str(rng.choice(["INFER", "shutdown", "eval", ""]))
    return request


def replied_case(rng: np.random.Generator) -> bytes:
    """A well-framed body that must get a reply."""
    kind = rng.random()
    if kind < 0.15:
        return rng.bytes(int(rng.integers(0, 200)))
    if kind < 0.25:
        body = encode(valid(rng))
        return body[: int(rng.integers(0, len(body)))]
    if kind < 0.35:
        body = bytearray(encode(valid(rng)))
        for _ in range(int(rng.integers(1, 4))):
            body[int(rng.integers(len(body)))] = int(rng.integers(256))
        return bytes(body)
    if kind < 0.4:
        return encode(odd_values(rng)[int(rng.integers(21))])
    return encode(mutated(rng))


def closed_case(rng: np.random.Generator) -> bytes:
    """Bytes after which the server must close the connection."""
    kind = int(rng.integers(0, 3))
    if kind == 0:  # not our framing at all
        junk = rng.bytes(int(rng.integers(8, 300)))
        return junk if junk[:4] != MAGIC else b"GET / HTTP/1.1\r\n\r\n"
    if kind == 1:  # a header announcing more than the cap
        return MAGIC + int(rng.integers((64 << 20) + 1, 2**32)).to_bytes(4, "big")
    body = encode(valid(rng))  # a frame cut short, then the sender hangs up
    return frame(body)[: int(rng.integers(1, 8 + len(body)))]


def read_reply(sock: socket.socket, buffer: bytearray) -> Any:
    while True:
        if len(buffer) >= 8:
            length = int.from_bytes(buffer[4:8], "big")
            if len(buffer) >= 8 + length:
                body = bytes(buffer[8 : 8 + length])
                del buffer[: 8 + length]
                return decode(body)
        chunk = sock.recv(1 << 16)
        assert chunk, "the server closed a connection that sent a well-framed message"
        buffer += chunk


def expect_close(host: str, port: int, data: bytes) -> None:
    """Send ``data``; the server must close the connection (a recv timeout fails the test)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(1 << 16):
                pass  # a too_large error frame may come first
        except ConnectionResetError:
            pass


def test_hostile_messages_get_errors_or_closed_connections(server) -> None:
    rng = np.random.default_rng(20240601)
    outcomes: Counter[str] = Counter()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    buffer = bytearray()
    sock.sendall(hostile.HEALTH)  # a first good request earns the connection its slot
    assert read_reply(sock, buffer)["type"] == "health"
    for _ in range(N_REPLIED):
        sock.sendall(frame(replied_case(rng)))
        reply = read_reply(sock, buffer)
        assert reply["type"] in ("error", "infer"), reply
        if reply["type"] == "error":
            assert reply["code"] in CODES and "Traceback" not in reply["message"], reply
        outcomes[reply.get("code", "infer")] += 1
    huge = {**valid(rng), "obs": {"state": np.zeros((1 << 20, 2, 3), np.float32)}}  # 24 MiB
    sock.sendall(frame(encode(huge)))
    reply = read_reply(sock, buffer)
    assert reply["code"] == "invalid_input" and "batch 1048576" in reply["message"], reply
    sock.close()
    for _ in range(N_CLOSED):
        expect_close(server.host, server.port, closed_case(rng))
    assert server.proc.poll() is None, server.stderr()
    assert "connection handler failed" not in server.stderr()
    expected = json.loads((FIXTURES / "expected.json").read_text())
    with PolicyClient(server.host, server.port) as client:
        state = np.asarray(expected["obs"], np.float32)
        noise = np.asarray(expected["noise"], np.float32)
        actions, _ = client.infer({"state": state}, noise=noise, timeout_s=5)
        stats = client.health()["stats"]
    want = np.asarray(expected["diffusion_mlp"]["sample"], np.float32)
    np.testing.assert_allclose(actions, want, rtol=1.3e-6, atol=1e-5)  # as test_stored_checkpoints
    assert outcomes["malformed"] > 100 and outcomes["bad_request"] > 100, outcomes
    assert outcomes["invalid_input"] > 100, outcomes
    assert stats.get("closed_bad_frame", 0) >= 150, stats


def under_attack(server, attack: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``attack`` with a valid client timed throughout; check it and the server's RSS."""
    obs = {"state": np.zeros((1, 2, 3), np.float32)}
    result = hostile.measure(server.host, server.port, server.pid, attack, obs)
    valid = result["valid"]
    assert valid["failures"] == 0 and valid["max_ms"] < 1000, result
    assert valid["requests"] >= 10, result
    assert result["rss_after"] <= 1.10 * result["rss_before"], result
    assert server.proc.poll() is None, server.stderr()
    return result


def test_slow_loris_beyond_every_slot(server) -> None:
    result = under_attack(server, lambda: hostile.slow_loris(server.host, server.port, sockets=80))
    assert result["closed_by_server"] == 80, result
    earned = under_attack(
        server, lambda: hostile.slow_loris(server.host, server.port, sockets=20, earned=True)
    )
    assert earned["closed_by_server"] == 20, earned


def test_abandoned_partial_bodies_leave_no_memory(server) -> None:
    result = under_attack(
        server,
        lambda: hostile.partial_bodies(server.host, server.port, frames=8, parallel=4),
    )
    assert result["mib_sent"] >= 8 * 48, result


def test_object_count_bombs_are_refused_at_once(server) -> None:
    result = under_attack(server, lambda: hostile.object_bombs(server.host, server.port, frames=10))
    assert result["answered"] == result["frames"], result


def test_clients_that_never_read_their_replies(server) -> None:
    attack = lambda: hostile.unread_replies(server.host, server.port, rcvbuf=8192)  # noqa: E731
    result = under_attack(server, attack)
    with PolicyClient(server.host, server.port) as client:
        assert client.health()["stats"]["paused_unread_replies"] >= 4, result

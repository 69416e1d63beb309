"""Issue 18's holes in the server, each reproduced: slot lockout, memory kept after abandoned
frames, decoding before authentication, unread replies, float overflow, lost ``too_large``
replies and a token on the command line. In-process servers with short timeouts, a policy that
computes nothing; ``test_fuzz.py`` runs the attacks against ``robopolicy serve`` itself."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from robopolicy.inference.serving import Engine
from robopolicy.serve import PolicyClient, ServerError
from robopolicy.serve import hostile as h
from robopolicy.serve.config import ServerConfig, read_token
from robopolicy.serve.server import PolicyServer
from robopolicy.serve.wire import MAGIC, encode, frame, recv_message
from tests.serve.conftest import LAUNCH

OBS = {"state": np.zeros((1, 2, 3), np.float32)}
TOKEN = "a-long-shared-token"


class ZeroEngine(Engine):
    """To 2, Tp 4, Da 2; actions are zeros."""

    def metadata(self) -> dict[str, Any]:
        obs = {"state": {"shape": [2, 3], "dtype": "float32"}}
        window = {"n_obs_steps": 2, "horizon": 4, "n_action_steps": 2, "action_dim": 2}
        return {"protocol": 1, "name": "zero", "policy_type": "zero", "obs": obs, **window}

    def run(self, obs: dict[str, np.ndarray], noise: Any, steps: Any) -> np.ndarray:
        return np.zeros((len(obs["state"]), 4, 2), np.float32)


@contextlib.contextmanager
def serving(**config: Any) -> Iterator[PolicyServer]:
    server = PolicyServer(ZeroEngine(), ServerConfig(port=0, **config))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request(kind: str = "health", **fields: Any) -> bytes:
    return frame(encode({"type": kind, "id": 7, "timeout_ms": 1000.0, **fields}))


def reply_of(sock: socket.socket, timeout: float = 5.0) -> dict[str, Any]:
    """The next reply on ``sock``, read to its last byte and not past it (the next reply may
    already be in the socket)."""
    sock.settimeout(timeout)
    return recv_message(sock)


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    until = time.monotonic() + timeout
    while not condition() and time.monotonic() < until:
        time.sleep(0.02)
    return bool(condition())


# ------------------------------------------------------------------ 2. connection slots


def test_a_partial_header_is_cut_at_the_header_deadline() -> None:
    with serving(header_timeout_s=0.3) as server, h.connect(*server.address) as sock:
        sock.sendall(MAGIC[:3])
        start = time.monotonic()
        assert h.closed_by_peer(sock, wait=3.0)
        assert time.monotonic() - start < 1.5
        assert server.counts()["closed_header_timeout"] == 1


def test_unearned_connections_cannot_lock_out_a_valid_client() -> None:
    with serving(max_connections=8) as server:
        loris = [h.connect(*server.address) for _ in range(20)]
        for sock in loris:
            sock.sendall(MAGIC[:2])
        start = time.monotonic()
        with PolicyClient(*server.address) as client:
            assert client.infer(OBS, timeout_s=1.0)[0].shape == (1, 4, 2)
        assert time.monotonic() - start < 1.0
        assert server.counts()["evicted_unearned"] >= 12
        for sock in loris:
            sock.close()


def test_health_answers_while_every_slot_is_earned() -> None:
    with serving(max_connections=4, health_slots=2) as server:
        holders = [PolicyClient(*server.address) for _ in range(4)]
        for client in holders:
            client.health()  # earned, then idle
        with PolicyClient(*server.address) as late:
            assert late.health(timeout_s=1.0)["connections"] == 5
        with PolicyClient(*server.address) as late, pytest.raises(ServerError) as info:
            late.infer(OBS, timeout_s=1.0)
        assert info.value.code == "overloaded" and "slot" in info.value.message
        assert holders[0].infer(OBS, timeout_s=1.0)[0].shape == (1, 4, 2)
        assert server.counts()["reserve_slots"] == 2
        for client in holders:
            client.close()


def test_one_peer_cannot_hold_every_slot() -> None:
    with serving(max_connections=8, max_connections_per_peer=3) as server:
        other = [h.connect(*server.address, source="127.0.0.2") for _ in range(3)]
        for sock in other:
            sock.sendall(request())
            assert reply_of(sock)["type"] == "health"  # three earned slots from 127.0.0.2
        with h.connect(*server.address, source="127.0.0.2") as fourth:
            fourth.sendall(request("infer", obs=OBS))
            assert reply_of(fourth)["code"] == "overloaded"
            assert h.closed_by_peer(fourth, wait=3.0)
        with PolicyClient(*server.address) as client:  # 127.0.0.1 still has slots
            assert client.infer(OBS, timeout_s=1.0)[0].shape == (1, 4, 2)
        for sock in other:
            sock.close()


@pytest.mark.parametrize(
    "body",
    [
        encode({"type": "health", "id": 7, "timeout_ms": 1000.0}),  # no token
        encode({"type": "health", "id": 7, "timeout_ms": 1000.0, "token": "wrong-token!"}),
        encode({"type": "health", "id": 7, "token": TOKEN, "extra": 1}),  # token, bad envelope
        b"\x92\x01",  # truncated: cannot be authenticated
    ],
)
def test_with_a_token_a_frame_that_does_not_authenticate_closes_the_connection(
    body: bytes,
) -> None:
    with serving(host="0.0.0.0", token=TOKEN) as server:
        with h.connect("127.0.0.1", server.address[1]) as sock:
            sock.sendall(frame(body))
            assert reply_of(sock)["type"] == "error"
            assert h.closed_by_peer(sock, wait=3.0)
        with PolicyClient("127.0.0.1", server.address[1], token=TOKEN) as client:
            assert client.health()["status"] == "ok"


def test_a_malformed_first_frame_closes_but_an_earned_connection_gets_replies() -> None:
    with serving() as server:
        with h.connect(*server.address) as sock:
            sock.sendall(frame(b"\xc1"))
            assert reply_of(sock)["code"] == "malformed"
            assert h.closed_by_peer(sock, wait=3.0)
        with h.connect(*server.address) as sock:
            sock.sendall(request())
            assert reply_of(sock)["type"] == "health"
            sock.sendall(frame(b"\xc1") + request())
            assert reply_of(sock)["code"] == "malformed"
            assert reply_of(sock)["type"] == "health"


def test_idle_connections_time_out_and_the_client_reconnects() -> None:
    with serving(idle_timeout_s=0.3, hello_timeout_s=0.3) as server:
        with h.connect(*server.address) as silent:
            assert h.closed_by_peer(silent, wait=3.0)  # never sent a frame
        with PolicyClient(*server.address) as client:
            client.health()
            assert wait_until(lambda: server.counts().get("closed_idle", 0) == 1)
            assert client.infer(OBS, timeout_s=1.0)[0].shape == (1, 4, 2)  # reconnected
        assert server.counts()["closed_hello_timeout"] == 1


# ------------------------------------------------------------------ 3. abandoned frames


def test_an_abandoned_large_frame_gives_its_buffer_back() -> None:
    with serving() as server:
        with h.connect(*server.address) as sock:
            sock.sendall(MAGIC + (16 << 20).to_bytes(4, "big") + b"\0" * (12 << 20))
            assert wait_until(lambda: server._receiving == 16 << 20)
        assert wait_until(lambda: server._receiving == 0 and not server._conns)
        gone = [c for c in server._conns if c._big is not None]
        assert not gone


def test_large_frames_past_the_receiving_budget_get_overloaded() -> None:
    with serving(max_receiving_bytes=20 << 20) as server:
        socks = [h.connect(*server.address) for _ in range(3)]
        for sock in socks:
            sock.sendall(MAGIC + (8 << 20).to_bytes(4, "big") + b"\0" * 1024)
        assert reply_of(socks[2])["code"] == "overloaded"
        assert server.counts()["closed_receiving_budget"] == 1
        for sock in socks:
            sock.close()


# ------------------------------------------------------------------ 4. decoding before auth


def test_an_object_count_bomb_is_refused_without_stalling_the_server() -> None:
    with serving() as server, PolicyClient(*server.address) as client:
        client.health()
        with h.connect(*server.address, timeout=10) as sock:
            sock.sendall(h.object_bomb())
            start = time.monotonic()
            reply = reply_of(sock)
            refused_in = time.monotonic() - start
            assert reply["code"] == "malformed" and "values" in reply["message"]
            assert client.health(timeout_s=1.0)["status"] == "ok"
        assert refused_in < 0.5


def test_the_token_is_checked_before_the_body_is_decoded() -> None:
    undecodable = {"type": "health", "id": 7, "timeout_ms": 1e3, "token": "wrong-token!"}
    body = bytearray(encode({**undecodable, "x": "\u00e9\u00e9"}))
    body[-4:] = b"\xff\xfe\xff\xfe"  # not UTF-8: decoding would fail
    with serving(host="0.0.0.0", token=TOKEN) as server:
        with h.connect("127.0.0.1", server.address[1]) as sock:
            sock.sendall(frame(bytes(body)))
            reply = reply_of(sock)
        assert reply["code"] == "unauthorized" and reply["id"] == 7, reply


# ------------------------------------------------------------------ 5. unread replies


def test_a_client_that_reads_no_replies_stops_being_read_then_is_cut() -> None:
    with serving(write_buffer_high=64 << 10, reply_timeout_s=0.5) as server:
        with PolicyClient(*server.address) as client:
            result = h.unread_replies(*server.address, connections=2, seconds=3.0, rcvbuf=8192)
            assert client.infer(OBS, timeout_s=1.0)[0].shape == (1, 4, 2)
        counts = server.counts()
    assert counts["paused_unread_replies"] >= 2, counts
    assert counts["closed_unread_replies"] == 2, (counts, result)


# ------------------------------------------------------------------ 10. overflow, too_large


def test_a_float64_overflowing_float32_is_invalid_input() -> None:
    state = np.full((1, 2, 3), 1e39, np.float64)
    with serving() as server, pytest.raises(ServerError) as info:
        PolicyClient(*server.address).infer({"state": state}, timeout_s=1.0)
    assert info.value.code == "invalid_input" and "obs['state'] has NaN or inf" in str(info.value)


def test_the_too_large_reply_reaches_a_client_still_sending() -> None:
    with serving() as server, h.connect(*server.address) as sock:
        sock.sendall(MAGIC + (65 << 20).to_bytes(4, "big"))
        with contextlib.suppress(OSError):
            sock.sendall(b"\0" * (4 << 20))  # the server drains this, then closes
        assert reply_of(sock)["code"] == "too_large"


# ------------------------------------------------------------------ 11. the token's source


def test_serve_help_steers_the_token_off_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LAUNCH, "serve", "--help"], capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    text = " ".join(result.stdout.split())
    assert "--token-file" in text and "$ROBOPOLICY_SERVE_TOKEN" in text and "ps" in text


def test_read_token_prefers_a_file_and_warns_about_the_flag(tmp_path, caplog) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    assert read_token(None, str(path), "from-the-environment") == TOKEN
    assert read_token(None, None, "from-the-environment") == "from-the-environment"
    with caplog.at_level(logging.WARNING):
        assert read_token(TOKEN, None, None) == TOKEN
    assert "visible" in caplog.text
    path.write_text("\n")
    for flag, file in ((TOKEN, str(path)), (None, str(path)), (None, str(tmp_path / "none"))):
        with pytest.raises(ValueError):
            read_token(flag, file, None)


def test_a_client_that_resets_mid_reply_costs_only_its_connection() -> None:
    """Replies to a peer that has reset fail on send; the server must drop that connection and
    go on (a lock taken twice there once froze the whole server)."""
    with serving() as server:
        for _ in range(5):
            sock = h.connect(*server.address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(h.HEALTH * 2000)
            sock.close()  # a reset, with requests still unanswered
        with PolicyClient(*server.address) as client:
            assert client.health(timeout_s=2.0)["status"] == "ok"
            assert client.infer(OBS, timeout_s=2.0)[0].shape == (1, 4, 2)

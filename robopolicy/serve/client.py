"""PolicyClient: ask a policy server for action chunks. Imports numpy and msgpack, never torch.

One blocking TCP connection, opened on first use and reopened after a failure. Every request
gets a fresh id and a deadline (``timeout_s``, sent as ``timeout_ms``); a reply is taken only
when its id is the request's, so a late reply to a request that timed out is read and dropped,
never taken for the next one. Frames are reassembled in a buffer kept across calls, so a
timeout in the middle of a frame never desynchronises the stream. Not thread-safe: use one
client per thread.

    with PolicyClient("127.0.0.1", 8765) as client:
        actions, info = client.infer({"state": state}, timeout_s=0.1)   # (B, Tp, Da)
"""

from __future__ import annotations

import itertools
import math
import select
import socket
import time
from typing import Any

import numpy as np

from robopolicy.serve.wire import (
    DEFAULT_LIMITS,
    HEADER,
    WireError,
    WireLimits,
    body_length,
    decode,
    encode,
    frame,
)

READ_BUFFER = 64 << 10
_POLL = hasattr(select, "poll")  # not on Windows
"""Bytes of the read buffer (a larger reply gets a buffer of its size)."""


class ServerError(RuntimeError):
    """The server answered with an error reply (``code`` as in ``protocol.md``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class PolicyClient:
    """A connection to a :class:`~robopolicy.serve.server.PolicyServer`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        token: str | None = None,
        connect_timeout_s: float = 2.0,
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        self.host, self.port, self.token = host, port, token
        self.connect_timeout_s = connect_timeout_s
        self.limits = limits
        self.ignored_replies = 0
        """Replies read and dropped because their id was not the awaited one."""
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._new_buffer()

    # ------------------------------------------------------------------ connection

    def connect(self, timeout_s: float | None = None) -> None:
        """Open the connection now (otherwise the first request does it)."""
        self.close()
        timeout = self.connect_timeout_s if timeout_s is None else timeout_s
        sock = socket.create_connection((self.host, self.port), timeout=max(timeout, 1e-3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)  # waits are polls with the request's deadline (no ioctl each)
        self._sock = sock
        self._readable = _Poller(sock, write=False)
        self._new_buffer()

    def _new_buffer(self) -> None:
        self._buf = bytearray(READ_BUFFER)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # unread bytes are _buf[_start:_end]

    def close(self) -> None:
        """Close the connection (idempotent); the next request reconnects."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def infer(
        self,
        obs: dict[str, np.ndarray],
        *,
        timeout_s: float,
        noise: np.ndarray | None = None,
        steps: int | None = None,
        prefix: np.ndarray | None = None,
        frozen: int | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Actions (B, Tp, Da) for ``obs`` (each (B, To, ...); ``"timestamp"`` (B, To) optional)
        and an info dict: ``id``, ``timing`` (server ``queue_ms``, ``inference_ms``, ``batch``),
        ``start`` (index of the first action to execute), ``period``, ``due`` (B,) when obs had
        timestamps, ``round_trip_ms``. ``prefix`` (B, L, Da) and ``frozen``: real-time chunking,
        where metadata says ``inpaint`` (``protocol.md``). Raises ``TimeoutError``,
        :class:`ServerError`, ``ConnectionError``."""
        message: dict[str, Any] = {
            "type": "infer",
            "obs": {str(k): np.asarray(v) for k, v in obs.items()},
        }
        if noise is not None:
            message["noise"] = np.asarray(noise)
        if steps is not None:
            message["steps"] = int(steps)
        if prefix is not None:
            message["prefix"] = np.asarray(prefix)
        if frozen is not None:
            message["frozen"] = int(frozen)
        reply = self._call(message, timeout_s)
        actions = reply.pop("actions", None)
        if not isinstance(actions, np.ndarray) or actions.ndim != 3:
            self.close()
            raise ConnectionError("the server's infer reply has no (B, Tp, Da) actions")
        reply.pop("type", None)
        return actions, reply

    def health(self, *, timeout_s: float = 1.0) -> dict[str, Any]:
        """The server's health reply (``status``, ``queued``, ``stats``, ...)."""
        return self._call({"type": "health"}, timeout_s)

    def metadata(self, *, timeout_s: float = 2.0) -> dict[str, Any]:
        """What the policy wants and gives: policy type, To/Tp/Ta, obs spec, action dim, fps."""
        return self._call({"type": "metadata"}, timeout_s)

    def _call(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        start = time.monotonic()
        deadline = start + timeout_s
        reply: dict[str, Any] = {}
        for attempt in (0, 1):
            reused = self._sock is not None
            if not reused:
                self._connect_until(deadline)
            request_id = next(self._ids)
            message.update(id=request_id, timeout_ms=1e3 * max(deadline - time.monotonic(), 1e-3))
            if self.token is not None:
                message["token"] = self.token
            data = frame(encode(message, self.limits))
            try:
                self._send(data, deadline)
                reply = self._await(request_id, deadline)
                break
            except ConnectionError:
                self.close()
                if attempt or not reused or time.monotonic() >= deadline:
                    raise  # a fresh connection failed, or no time left to retry
        if reply.get("type") == "error":
            code, text = str(reply.get("code")), str(reply.get("message"))
            if code == "unauthorized":
                self.close()
            raise ServerError(code, text)
        reply["round_trip_ms"] = 1e3 * (time.monotonic() - start)
        return reply

    def _connect_until(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no time left to connect")
        try:
            self.connect(min(left, self.connect_timeout_s))
        except TimeoutError:
            raise TimeoutError(f"connecting to {self.host}:{self.port} timed out") from None

    def _send(self, data: bytes, deadline: float) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        view, sent = memoryview(data), 0
        while sent < len(view):
            try:
                sent += sock.send(view[sent:] if sent else view)
            except (BlockingIOError, InterruptedError):
                if not _Poller(sock, write=True).wait(deadline):
                    self.close()  # part of a frame may be out: the stream cannot be trusted
                    raise TimeoutError("sending the request timed out") from None
            except OSError as exc:
                raise ConnectionError(f"send failed: {exc}") from exc

    def _await(self, request_id: int, deadline: float) -> dict[str, Any]:
        """The reply with ``request_id``; replies to other ids are dropped and counted."""
        while True:
            reply = self._next_message(deadline)
            if (
                isinstance(reply, dict)
                and type(reply.get("id")) is int
                and reply["id"] == request_id
            ):
                return reply
            self.ignored_replies += 1

    def _next_message(self, deadline: float) -> Any:
        """The next frame's message: its header is checked before its body is waited for, and
        nothing is consumed until the whole frame is here (a timeout keeps the stream's place)."""
        try:
            self._fill(HEADER.size, deadline)
            length = body_length(self._view[self._start : self._start + HEADER.size], self.limits)
            self._fill(HEADER.size + length, deadline)
            start = self._start + HEADER.size
            self._start = start + length
            return decode(self._view[start : self._start], self.limits)
        except WireError as exc:
            raise ConnectionError(f"bad reply from the server ({exc})") from None

    def _fill(self, size: int, deadline: float) -> None:
        """Read until ``size`` bytes wait in the buffer (grown for a large frame)."""
        have = self._end - self._start
        if not have and len(self._buf) > READ_BUFFER >= size:
            self._new_buffer()  # give back a large reply's buffer
        elif len(self._buf) - self._start < size:  # move what is here to the front (or grow)
            buf = self._buf if len(self._buf) >= size else bytearray(size)
            buf[:have] = self._buf[self._start : self._end]
            self._buf, self._view = buf, memoryview(buf)
            self._start, self._end = 0, have
        sock = self._sock
        while self._end - self._start < size:
            if sock is None or not self._readable.wait(deadline):
                raise TimeoutError("no reply before the deadline")
            try:
                n = sock.recv_into(self._view[self._end :])
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise ConnectionError(f"receive failed: {exc}") from exc
            if not n:
                raise ConnectionError("the server closed the connection")
            self._end += n


class _Poller:
    """Waits for one socket to be readable (or writable) until a deadline."""

    def __init__(self, sock: socket.socket, *, write: bool) -> None:
        self.sock, self.write = sock, write
        if _POLL:
            self.poll = select.poll()
            self.poll.register(sock, select.POLLOUT if write else select.POLLIN)

    def wait(self, deadline: float) -> bool:
        """True once ready; False when ``deadline`` (``time.monotonic()``) passes first."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if _POLL:
            return bool(self.poll.poll(left * 1e3))
        want = ([], [self.sock]) if self.write else ([self.sock], [])
        return any(select.select(*want, [], left)[:2])

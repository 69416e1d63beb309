"""PolicyClient: ask a policy server for action chunks. Imports numpy and msgpack, never torch.

One blocking TCP connection, opened on first use and reopened after a failure. Every request
gets a fresh id and a deadline (``timeout_s``, sent as ``timeout_ms``); a reply is taken only
when its id is the request's, so a late reply to a request that timed out is read and dropped,
never taken for the next one. Frames are reassembled in a buffer kept across calls, so a
timeout in the middle of a frame never desynchronises the stream. Not thread-safe: use one
client per thread.

    with PolicyClient("127.0.0.1", 8765) as client:
        actions, info = client.infer({"state": state}, timeout_s=0.1)   # (B, Tp, Da)

:class:`PolicyDriver` drives a served policy tick by tick from a script: this tick's
observation in, the action due now out.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import select
import socket
import time
from typing import Any

import numpy as np

from robopolicy.serve.chunks import Chunk, Plan, PlanConfig
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


@dataclasses.dataclass(frozen=True)
class DriverConfig:
    """How :class:`PolicyDriver` turns a served policy's chunks into one action per tick."""

    plan: PlanConfig = dataclasses.field(default_factory=lambda: PlanConfig(tolerance=0.5))
    """How chunks join the plan (``blend``: latest, or ACT's ensemble) and how far from its
    tick an action is still taken (``tolerance``, 0.5: the nearest tick)."""
    execute: int | None = None
    """Actions of each chunk executed before the next is asked for; None: the policy's Ta.
    ACT's temporal ensembling asks every tick: 1, with ``plan.blend="ensemble"``."""
    inpaint: bool = False
    """Real-time chunking: each request carries the plan's actions for the new chunk's ticks
    (``prefix``), which the new chunk continues; the server must inpaint (``serve --backend``)."""
    delay_steps: int = 0
    """With ``inpaint``: how many actions past the history are committed (``frozen``): those
    due before a reply can arrive."""
    timeout_s: float = 10.0
    """Deadline of one request (the metadata's too)."""

    def __post_init__(self) -> None:
        if self.execute is not None and self.execute < 1:
            raise ValueError(f"execute must be >= 1, got {self.execute}")
        if self.delay_steps < 0 or not self.timeout_s > 0:
            raise ValueError("delay_steps must be >= 0 and timeout_s > 0")


class PolicyDriver:
    """A served policy, tick by tick: this tick's observation in, the action due now out.

    For a script stepping an environment at the policy's rate on the environment's own clock
    (the observation's ``"timestamp"``). Each :meth:`step` keeps the last To observations (the
    first one repeated at an episode's start, as in training), asks the server for a chunk when
    the plan wants one (the request blocks: the environment waits) and takes the action due
    now from the plan (:mod:`robopolicy.serve.chunks`), holding the last one when none is due.
    A real arm wants ``robopolicy control``, which asks ahead of time in a thread.

        with PolicyClient(port=8765) as client:
            driver = PolicyDriver(client)
            obs, _ = env.reset(seed=0)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(driver.step(obs))
                done = terminated or truncated
            driver.reset()  # before the next episode
    """

    def __init__(self, client: PolicyClient, config: DriverConfig | None = None) -> None:
        self.client, self.config = client, config or DriverConfig()
        meta = client.metadata(timeout_s=self.config.timeout_s)
        if self.config.inpaint and not meta.get("inpaint"):
            raise ValueError("this server cannot hold a prefix (serve --backend inpaints)")
        self.keys = tuple(meta["obs"])
        """The observation keys the policy reads (the others are not sent)."""
        self.n_obs_steps = int(meta["n_obs_steps"])
        self.execute = self.config.execute or int(meta.get("n_action_steps") or 1)
        self.plan = Plan(self.config.plan)
        self.requests = 0
        """Chunks asked for."""
        self._frames: collections.deque[tuple[float, dict[str, np.ndarray]]] = collections.deque(
            maxlen=self.n_obs_steps
        )
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the observations, the plan and the last action (a new episode)."""
        self._frames.clear()
        self.plan.clear()
        self._last = None

    def step(self, obs: dict[str, Any]) -> np.ndarray:
        """The action (Da,) due at ``obs["timestamp"]``, for this tick's observation (one
        frame per key, ``"timestamp"`` its time in seconds)."""
        now = float(obs["timestamp"])
        frame = {key: np.asarray(obs[key]) for key in self.keys}
        if not self._frames:
            self._frames.extend([(now, frame)] * (self.n_obs_steps - 1))
        self._frames.append((now, frame))
        if self.plan.wants(now):
            self._request(now)
        due = self.plan.next(now)
        if due is not None:
            self._last = due.action
        if self._last is None:
            raise RuntimeError(f"no action is due at {now} s: is the timestamp the obs clock?")
        return self._last.copy()

    def _request(self, now: float) -> None:
        """Ask for the chunk of the observations kept, due ``now``, and add it to the plan."""
        window = {key: np.stack([f[key] for _, f in self._frames])[None] for key in self.keys}
        window["timestamp"] = np.array([[t for t, _ in self._frames]], dtype=np.float64)
        fields: dict[str, Any] = {}
        if self.config.inpaint:
            fields = self.plan.prefix_fields(now, self.n_obs_steps - 1, self.config.delay_steps)
        actions, info = self.client.infer(window, timeout_s=self.config.timeout_s, **fields)
        self.requests += 1
        chunk = Chunk.from_reply(actions, info, seq=self.requests, execute=self.execute)
        self.plan.add(chunk, now)


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

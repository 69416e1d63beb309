"""Hostile clients for a policy server on loopback, to check R19 (RELIABILITY.md) by breaking
it on purpose; ``tests/serve/test_fuzz.py`` and ``scripts/bench_serve.py --hostile`` use them.

Each attack is bounded in connections, bytes and seconds, closes every socket it opened and
returns what it saw. :class:`ValidClient` asks for actions in a thread throughout an attack and
records how long each answer took: the server must keep serving it. Linux only (RSS is read
from ``/proc``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from robopolicy.serve.client import PolicyClient
from robopolicy.serve.wire import MAGIC, encode, frame

HEALTH = frame(encode({"type": "health", "id": 1, "timeout_ms": 1000.0}))
"""A valid ``health`` request frame."""


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def connect(host: str, port: int, source: str | None = None, timeout: float = 5.0) -> socket.socket:
    """A TCP connection, from ``source`` (another loopback address, e.g. ``127.0.0.2``)."""
    address = None if source is None else (source, 0)
    return socket.create_connection((host, port), timeout=timeout, source_address=address)


def closed_by_peer(sock: socket.socket, wait: float = 0.0) -> bool:
    """Whether the server has closed ``sock`` (EOF or reset), reading within ``wait`` s."""
    sock.settimeout(wait)
    try:
        while True:
            if not sock.recv(1 << 16):
                return True
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


class ValidClient:
    """A well-behaved client asking for actions every ``interval`` s in a thread."""

    def __init__(
        self,
        host: str,
        port: int,
        obs: dict[str, np.ndarray],
        *,
        interval: float = 0.02,
        timeout: float = 1.0,
    ) -> None:
        self.client = PolicyClient(host, port, connect_timeout_s=timeout)
        self.obs, self.interval, self.timeout = obs, interval, timeout
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="valid-client", daemon=True)

    def __enter__(self) -> ValidClient:
        self.client.infer(self.obs, timeout_s=5.0)  # connected and warm
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            start = time.monotonic()
            try:
                self.client.infer(self.obs, timeout_s=self.timeout)
            except Exception as exc:  # every failure is a finding
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.monotonic() - start)

    def summary(self) -> dict[str, Any]:
        """Requests, failures, p50 and max latency (ms)."""
        times = self.latencies or [float("nan")]
        return {
            "requests": len(self.latencies),
            "failures": len(self.failures),
            "p50_ms": 1e3 * float(np.median(times)),
            "max_ms": 1e3 * float(np.max(times)),
        }


def slow_loris(
    host: str, port: int, *, sockets: int = 80, seconds: float = 3.0, earned: bool = False
) -> dict[str, Any]:
    """``sockets`` connections that each send part of a frame header, then a byte now and
    then (``earned``: after a valid ``health`` request, so they hold earned slots). Returns how
    many the server closed within ``seconds``."""
    conns: list[socket.socket] = []
    try:
        for _ in range(sockets):
            sock = connect(host, port)
            if earned:
                sock.sendall(HEALTH)
                sock.settimeout(5.0)
                sock.recv(1 << 16)
            with contextlib.suppress(OSError):
                sock.sendall(MAGIC[:2])
            conns.append(sock)
        until, sent = time.monotonic() + seconds, 2
        while time.monotonic() < until:
            time.sleep(min(0.5, max(0.0, until - time.monotonic())))
            for sock in conns:  # one more byte of the header, never all of it
                with contextlib.suppress(OSError):
                    sock.send(MAGIC[sent : sent + 1] if sent < 4 else b"\0")
            sent = min(sent + 1, 7)
        closed = sum(closed_by_peer(sock) for sock in conns)
    finally:
        for sock in conns:
            sock.close()
    return {"attack": "slow-loris", "connections": sockets, "closed_by_server": closed}


def partial_bodies(
    host: str,
    port: int,
    *,
    frames: int = 12,
    size: int = 64 << 20,
    fraction: float = 0.8,
    parallel: int = 1,
) -> dict[str, Any]:
    """``frames`` frames announcing ``size`` bytes, of which ``fraction`` is sent before the
    client hangs up, ``parallel`` connections at a time. Returns the replies seen (a frame past
    the server's receiving budget gets ``overloaded``)."""
    chunk, sent_total, refused = b"\0" * (1 << 20), 0, 0
    for start in range(0, frames, parallel):
        conns = [connect(host, port) for _ in range(min(parallel, frames - start))]
        try:
            for sock in conns:
                sock.sendall(MAGIC + size.to_bytes(4, "big"))
            for _ in range(int(size * fraction) >> 20):
                for sock in conns:
                    try:
                        sock.sendall(chunk)
                        sent_total += len(chunk)
                    except OSError:
                        pass  # refused: the server closed it
            refused += sum(closed_by_peer(sock) for sock in conns)
        finally:
            for sock in conns:
                sock.close()
    return {"attack": "partial-body", "frames": frames, "mib_sent": sent_total >> 20,
            "closed_by_server": refused}  # fmt: skip


def object_bomb(nbytes: int = 4_200_000) -> bytes:
    """A frame of about ``nbytes`` whose body is mostly empty maps: one value per byte."""
    inner = 1024
    outer = nbytes // (inner + 3)
    lists = (b"\xdc" + inner.to_bytes(2, "big") + b"\x80" * inner) * outer
    head = msgpack.packb({"type": "health", "id": 1, "timeout_ms": 1000.0})
    body = bytes([head[0] + 1]) + head[1:] + msgpack.packb("x")
    body += b"\xdd" + outer.to_bytes(4, "big") + lists
    return frame(body)


def object_bombs(host: str, port: int, *, frames: int = 5, nbytes: int = 4_200_000) -> dict:
    """``frames`` object-count bombs; returns how many got a reply before the close."""
    data, answered = object_bomb(nbytes), 0
    for _ in range(frames):
        with connect(host, port, timeout=10.0) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(data)
            with contextlib.suppress(OSError):
                answered += bool(sock.recv(1 << 16))
    return {"attack": "object-count bomb", "frames": frames, "mb_each": len(data) / 1e6,
            "answered": answered}  # fmt: skip


def unread_replies(
    host: str, port: int, *, connections: int = 4, seconds: float = 3.0, rcvbuf: int = 0
) -> dict[str, Any]:
    """``connections`` clients sending ``health`` requests as fast as they can and never
    reading a reply (``rcvbuf``: their receive buffers, when not the system's; smaller fills
    sooner). Returns the bytes they got out before the server stopped reading."""
    conns = []
    for _ in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(5.0)
        sock.connect((host, port))
        conns.append(sock)
    sent = [0] * connections
    burst = HEALTH * 64
    try:
        until = time.monotonic() + seconds
        for sock in conns:
            sock.settimeout(0.05)
        while time.monotonic() < until:
            for i, sock in enumerate(conns):
                try:
                    sent[i] += sock.send(burst)
                except (TimeoutError, BlockingIOError):
                    pass  # the server has stopped reading us
                except OSError:
                    pass  # cut off
    finally:
        for sock in conns:
            sock.close()
    return {"attack": "unread replies", "connections": connections,
            "mib_sent": round(sum(sent) / (1 << 20), 1)}  # fmt: skip


def measure(
    host: str,
    port: int,
    pid: int,
    attack: Callable[[], dict[str, Any]],
    obs: dict[str, np.ndarray],
    *,
    min_seconds: float = 1.0,
) -> dict[str, Any]:
    """Run ``attack`` against the server (process ``pid``) with a :class:`ValidClient` timed
    throughout (for ``min_seconds`` at least); once the attack's connections are gone, return
    what the attack saw, the valid client's summary (``failures``, ``max_ms``, ...) and the
    server's RSS before and after (``rss_before``, ``rss_after``, bytes)."""
    with PolicyClient(host, port) as probe:
        probe.health(timeout_s=5.0)
        before = rss_bytes(pid)
        with ValidClient(host, port, obs) as valid:
            start = time.monotonic()
            result = attack()
            time.sleep(max(0.0, start + min_seconds - time.monotonic()))
        until = time.monotonic() + 10
        while probe.health(timeout_s=5.0)["connections"] > 1 and time.monotonic() < until:
            time.sleep(0.05)  # closed on the server's side too
        after = rss_bytes(pid)
    summary = {**valid.summary(), "failure_examples": valid.failures[:3]}
    return {**result, "valid": summary, "rss_before": before, "rss_after": after}

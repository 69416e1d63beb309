"""A fault proxy on 127.0.0.1 between a policy client and its server (RELIABILITY.md).

The proxy forwards whole frames of the serving protocol (``RPW1`` header + body), so it can
break the link in ways a real network or a broken middlebox does, on command:

- ``delay(s)``: every frame waits ``s`` seconds before it is forwarded;
- ``drop(True)``: frames in both directions are swallowed (requests or replies lost);
- ``cut(outage)``: every connection is closed at once, and new ones are refused for ``outage``;
- ``flip(n)``: one random bit is flipped in the body of each of the next ``n`` replies;
- ``poison(n, kind)``: the ``actions`` of the next ``n`` infer replies are rewritten to NaN
  (``"nan"``) or moved far outside any joint range (``"far"``), re-encoded validly, so the
  client's own checks are what stands between them and the arm.

``upstream`` can be changed while running (a restarted server on a new port). Counters of what
was injected are in ``counts``; ``events`` keeps ``(time.monotonic(), kind, field)`` of each
reply flipped or poisoned, taken just before it is forwarded (so a test can tell which outcome
was that reply's), where ``field`` is the reply's top-level field the damage landed in
(``"undecodable"`` when the frame no longer decodes). One thread accepts; each connection has a
pump thread per direction. Seeded, so the flipped bits are the same run to run.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import threading
import time

import numpy as np

from robopolicy.serve.wire import HEADER, MAGIC, WireError, decode, encode, frame


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` with injectable faults."""

    def __init__(self, upstream: tuple[str, int], *, seed: int = 0) -> None:
        self.upstream = upstream
        self.counts: collections.Counter[str] = collections.Counter()
        self.events: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=10_000)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._delay = 0.0
        self._drop = False
        self._flip = 0
        self._poison = (0, "nan")
        self._refuse_until = 0.0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.1)
        self._listener = listener
        self.address = listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()
        return self.address

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._listener is not None:
            self._listener.close()
        self._close_all()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults -------------------------------------------------------------------------------

    def delay(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def drop(self, on: bool) -> None:
        self._drop = on

    def cut(self, outage: float = 0.0) -> None:
        self._refuse_until = time.monotonic() + outage
        self.counts["cuts"] += 1
        self._close_all()

    def flip(self, frames: int) -> None:
        with self._lock:
            self._flip += frames

    def poison(self, frames: int, kind: str = "nan") -> None:
        if kind not in ("nan", "far"):
            raise ValueError(f"kind must be 'nan' or 'far', got {kind!r}")
        with self._lock:
            self._poison = (self._poison[0] + frames, kind)

    # -- plumbing -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()  # type: ignore[union-attr]
            except (TimeoutError, OSError):
                continue
            if time.monotonic() < self._refuse_until:
                self.counts["refused"] += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=1.0)
            except OSError:
                self.counts["upstream_refused"] += 1
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, server))
            self.counts["connections"] += 1
            for src, dst, replies in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump,
                    args=(src, dst, replies),
                    name="fault-proxy-pump",
                    daemon=True,
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        buf = bytearray()
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                buf += data
                while len(buf) >= HEADER.size:
                    magic, length = HEADER.unpack_from(buf)
                    if magic != MAGIC:  # not our protocol: pass the bytes on untouched
                        dst.sendall(bytes(buf))
                        buf.clear()
                        break
                    if len(buf) < HEADER.size + length:
                        break
                    body = bytes(buf[HEADER.size : HEADER.size + length])
                    del buf[: HEADER.size + length]
                    out = self._fault(body, replies)
                    if out is not None:
                        dst.sendall(out)
        except OSError:
            pass
        finally:
            self._close_pair(src, dst)

    def _fault(self, body: bytes, reply: bool) -> bytes | None:
        """The frame to forward for ``body`` (None: swallowed)."""
        if self._delay > 0:
            self.counts["delayed"] += 1
            time.sleep(self._delay)
        if self._drop:
            self.counts["dropped"] += 1
            return None
        if reply:
            with self._lock:
                flip, (poison, kind) = self._flip, self._poison
                if flip:
                    self._flip -= 1
                elif poison:
                    poisoned = self._poisoned(body, kind)
                    if poisoned is not None:
                        self._poison = (poison - 1, kind)
                        self.counts[f"poisoned_{kind}"] += 1
                        self.events.append((time.monotonic(), f"poisoned_{kind}", "actions"))
                        return frame(poisoned)
            if flip:
                bit = self._rng.randrange(8 * len(body))
                flipped = bytearray(body)
                flipped[bit // 8] ^= 1 << (bit % 8)
                self.counts["flipped"] += 1
                self.events.append((time.monotonic(), "flipped", _damaged_field(body, flipped)))
                return frame(bytes(flipped))
        return frame(body)

    @staticmethod
    def _poisoned(body: bytes, kind: str) -> bytes | None:
        try:
            message = decode(body)
        except WireError:
            return None
        if not isinstance(message, dict) or message.get("type") != "infer":
            return None
        actions = np.array(message["actions"], dtype=np.float32)
        if kind == "nan":
            actions[:, actions.shape[1] // 2, 0] = np.nan
        else:
            actions += 50.0
        message["actions"] = actions
        return encode(message)

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        for sock in (a, b):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            self._pairs = [p for p in self._pairs if p[0] is not a and p[1] is not a]

    def _close_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _damaged_field(original: bytes, damaged: bytes | bytearray) -> str:
    """The top-level field of a reply in which ``damaged`` differs from ``original``."""
    try:
        before, after = decode(original), decode(bytes(damaged))
    except WireError:
        return "undecodable"
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return "undecodable"
    for key, value in before.items():
        other = after.get(key)
        if isinstance(value, np.ndarray):
            same = isinstance(other, np.ndarray) and np.array_equal(value, other, equal_nan=True)
        else:
            same = key in after and other == value
        if not same:
            return str(key)
    return "nothing"

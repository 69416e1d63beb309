"""PolicyServer: a policy behind a TCP port, safe against slow, hostile and broken clients.

Threads: the inference thread (:class:`~robopolicy.serve.worker.InferenceWorker`) owns the
engine and, while it has nothing to infer, also runs the network loop
(:mod:`robopolicy.serve.reactor`): accepting, reading frames, checking requests, answering
``health`` and ``metadata``, and running an ``infer`` request at once and writing its reply,
all on one thread, with no hand-off. Once a forward pass has run for 5 ms (looking every 50
ms) the standby thread (the one that called :meth:`PolicyServer.run`) takes the loop over until
the pass ends, so a slow forward pass delays neither other connections nor the health check
(R10), and the engine is never entered twice at once (one thread matches a CPU policy or one
GPU). One loop rather
than a thread per client: connections cost no threads and hostile clients cannot exhaust them.
Each connection is a :class:`~robopolicy.serve.connection.Connection`, which bounds every wait
and buffer (its docstring); this module admits connections, handles frames and closes
connections whose deadline passed.

No client holds a slot, memory or the loop's time that it has not earned (RELIABILITY R19):

- slots: ``max_connections``, at most ``max_connections_per_peer`` from one address. When they
  are full, a new connection evicts the oldest one that has not yet *earned* its slot (sent a
  request with a good envelope and token); if every slot is earned it gets one of
  ``health_slots`` reserve slots, where only ``health`` and ``metadata`` are answered;
- before decoding: a body is scanned (bounded by ``WireLimits.max_objects``) and, with a token,
  authenticated before anything in it is decoded; a frame that fails before its connection
  has earned its slot, or without the token, gets its error reply and the connection is closed;
- a frame with bad magic closes the connection; one over the size cap gets ``too_large``, then
  the connection is closed gracefully (the reply is not lost to a reset).

A connection may have several requests in flight (a client that timed out sends its next
request at once); replies carry the request id and may come out of order. ``protocol.md`` is
the whole protocol.
"""

from __future__ import annotations

import collections
import functools
import hmac
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from robopolicy.serve import messages as m
from robopolicy.serve.config import ServerConfig
from robopolicy.serve.connection import Connection
from robopolicy.serve.reactor import Lead, Reactor
from robopolicy.serve.wire import WireError, decode, encode, frame, scan
from robopolicy.serve.worker import InferenceWorker, Job

if TYPE_CHECKING:
    from robopolicy.inference.serving import Engine

log = logging.getLogger(__name__)

SWEEP_S = 0.05
"""How often connections are checked against their deadlines."""
ACCEPT_BATCH = 64
"""Most connections accepted per wake-up of the loop."""
BACKLOG = 128
PROBE_TYPES = ("health", "metadata")
"""What a reserve slot answers."""


class PolicyServer:
    """Serves ``engine`` on ``config.host:config.port``; see the module docstring."""

    def __init__(
        self, engine: Engine | Callable[[], Engine], config: ServerConfig | None = None
    ) -> None:
        """``engine``, or a callable that builds it on the inference thread (what ``robopolicy
        serve`` passes: torch work belongs on the thread that will run it, see
        :mod:`robopolicy.serve.worker`)."""
        self.config = config or ServerConfig()
        self.address: tuple[str, int] | None = None
        self._stats: dict[str, int] = {}  # written by the thread leading the loop only
        self._worker_stats: dict[str, int] = {}  # by the inference thread only
        self._worker = InferenceWorker(engine, self.config, self._post, self._count_worker)
        self.engine = self._worker.engine
        self.meta = {
            "protocol": m.PROTOCOL_VERSION,
            **self.engine.metadata(),
            "inpaint": self.engine.inpaint,
        }
        self._meta_reply = {"type": "metadata", **self.meta}
        self._token = None if self.config.token is None else self.config.token.encode()
        self._conns: dict[Connection, None] = {}  # in admission order: oldest first
        self._receiving = 0
        self.reactor = Reactor()
        self._lead = Lead(self.reactor)
        self._next_sweep = 0.0
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._closing = False

    # ------------------------------------------------------------------ running

    def run(self, on_ready: Callable[[str, int], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM (from the main thread); ``on_ready(host, port)``."""
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, lambda *_: self._lead.stop()) for sig in signals}
        try:
            self._serve(on_ready)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def start(self, timeout: float = 30.0) -> tuple[str, int]:
        """Serve from a background thread; return the bound address once listening."""
        ready, failure = threading.Event(), []

        def serve() -> None:
            try:
                self._serve(lambda host, port: ready.set())
            except BaseException as exc:
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=serve, name="robopolicy-serve-standby")
        self._thread.start()
        ready.wait(timeout)
        if failure or self.address is None:
            raise RuntimeError(f"the policy server did not start: {failure[:1]}")
        return self.address

    def stop(self, timeout: float = 30.0) -> None:
        """Stop a server started with :meth:`start` and wait for its threads."""
        self._lead.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def counts(self) -> dict[str, int]:
        """Counters: requests, served, expired, error_<code>, closed_<why>, evicted, ..."""
        merged = collections.Counter(dict(self._stats))  # dict(): one step under the GIL
        merged.update(dict(self._worker_stats))
        return dict(merged)

    def count(self, key: str, n: int = 1) -> None:
        """Count an event (the leading thread; inference counts apart, so no lock)."""
        self._stats[key] = self._stats.get(key, 0) + n

    def _count_worker(self, key: str, n: int = 1) -> None:
        self._worker_stats[key] = self._worker_stats.get(key, 0) + n

    def on_loop_thread(self) -> bool:
        """Whether this thread leads the network loop now."""
        return self.reactor.on_leader()

    def _serve(self, on_ready: Callable[[str, int], None] | None) -> None:
        """Listen; the inference thread leads the loop; this thread stands by (module
        docstring of :mod:`robopolicy.serve.reactor`), then cleans up alone."""
        try:
            listener = _listen(self.config.host, self.config.port)
        except OSError:
            self._worker.close()
            self.reactor.close()
            raise
        self.address = tuple(listener.getsockname()[:2])
        self.reactor.add_reader(listener.fileno(), functools.partial(self._accept, listener))
        running = self._worker.serve(self._lead_loop)
        log.info("serving %s on %s:%d", self.meta.get("name") or "policy", *self.address)
        try:
            if on_ready is not None:
                on_ready(*self.address)
            while self._lead.wait_to_lead():
                while not self._lead.should_give_back():
                    self._turn()
        finally:
            log.info("shutting down")
            self._closing = True
            self._lead.stop()
            dropped = self._worker.close(running=running)
            self.reactor.leader = threading.get_ident()  # alone from here
            self.reactor.remove_reader(listener.fileno())
            listener.close()
            for job in dropped:
                error = m.error_reply(job.id, m.SHUTTING_DOWN, "server stopping")
                job.conn.send_reply(frame(encode(error)))
            self._close_all()
            self.reactor.close()

    def _lead_loop(self) -> None:
        """The inference thread: lead the loop; hand it over while inference runs."""
        self.reactor.leader = threading.get_ident()
        lead, worker = self._lead, self._worker
        try:
            while not lead.stopping:
                self._turn(0.0 if worker.has_jobs() else None)
                if worker.has_jobs():
                    lead.hand_over()
                    try:
                        worker.run_pending()
                    finally:
                        lead.take_back()
        except BaseException:  # a bug: stop the server rather than leave it deaf
            log.exception("the server loop failed; stopping")
            lead.stop()
            raise

    def _turn(self, timeout: float | None = None) -> None:
        """One turn of the loop: events (waiting at most until the next sweep), then the sweep
        when due: connections whose deadline passed are closed."""
        now = time.monotonic()
        if timeout is None:
            timeout = max(0.0, self._next_sweep - now)
        self.reactor.run_once(timeout)
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_S
        for conn in list(self._conns):
            deadline, why = conn.deadline()
            if deadline <= now:
                if why != "linger":
                    self.count(f"closed_{why}")
                conn.abort()

    def _close_all(self) -> None:
        for conn in list(self._conns):
            conn.close()  # once its replies are sent
        until = time.monotonic() + 2.0
        while self._conns and time.monotonic() < until:
            self.reactor.run_once(0.01)
        for conn in list(self._conns):  # replies nobody reads
            conn.abort()

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, ...: the next call retries
                log.warning("accept failed: %s", exc)
                self.count("accept_failed")
                return
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, str(address[0]))
            if self.admit(conn):
                conn.start()

    # ------------------------------------------------------------------ slots

    def admit(self, conn: Connection) -> bool:
        """Give ``conn`` a slot: evict an unearned connection if need be, else a reserve slot
        (health and metadata only). False (and the socket closed) when stopping."""
        if self._closing:
            self.count("refused_connections")
            conn.sock.close()
            return False
        cfg = self.config
        regular = [c for c in self._conns if not c.probe]
        mine = [c for c in regular if c.peer == conn.peer]
        if len(mine) >= cfg.max_connections_per_peer or len(regular) >= cfg.max_connections:
            pool = mine if len(mine) >= cfg.max_connections_per_peer else regular
            victim = next((c for c in pool if not c.earned and not c.inflight), None)
            if victim is not None:
                self.count("evicted_unearned")
                self._conns.pop(victim, None)
                victim.abort()
            else:
                probes = [c for c in self._conns if c.probe]
                if len(probes) >= cfg.health_slots:
                    self.count("evicted_probe")
                    self._conns.pop(probes[0], None)
                    probes[0].abort()
                conn.probe = True
                self.count("reserve_slots")
        self._conns[conn] = None
        return True

    def release(self, conn: Connection) -> None:
        self._conns.pop(conn, None)

    def reserve_receiving(self, nbytes: int) -> bool:
        """Count ``nbytes`` of body being received (negative: done); False when over budget."""
        if nbytes > 0 and self._receiving + nbytes > self.config.max_receiving_bytes:
            return False
        self._receiving += nbytes
        return True

    # ------------------------------------------------------------------ frames (event loop)

    def refuse_frame(self, conn: Connection, exc: WireError) -> None:
        """A header with bad magic (close at once) or over the size cap (``too_large``)."""
        if exc.code == m.TOO_LARGE:
            conn.close_after(frame(encode(m.error_reply(None, m.TOO_LARGE, exc.message))))
        else:
            conn.abort()

    def refuse_busy(self, conn: Connection) -> None:
        text = "the server is receiving too many large frames; retry"
        conn.close_after(frame(encode(m.error_reply(None, m.OVERLOADED, text))))

    def on_frame(self, conn: Connection, body: memoryview) -> None:
        """Handle one complete frame's body (a view, valid during this call only)."""
        self.count("requests")
        received = time.monotonic()
        trusted = self._token is None
        request_id = None
        limits = self.config.limits
        try:
            try:
                if trusted and len(body) <= limits.max_objects:  # bounded by its size
                    message = decode(body, limits)
                else:  # bounded scan, token checked, then decode
                    scanned = scan(body, limits)
                    request_id = scanned.id if m.valid_id(scanned.id) else None
                    if not trusted:
                        if not hmac.compare_digest(scanned.token or b"", self._token or b""):
                            text = "missing or wrong token"
                            raise m.RequestError(m.UNAUTHORIZED, text, request_id)
                        trusted = True
                    message = decode(body, limits, scanned=True)
            except WireError as exc:
                raise m.RequestError(m.MALFORMED, exc.message, request_id) from None
            env = m.parse_envelope(message, self.config.max_timeout_ms)
            if conn.probe:
                if env.type not in PROBE_TYPES:
                    text = "every connection slot is taken; only health and metadata answered"
                    raise m.RequestError(m.OVERLOADED, text, env.id)
            else:
                conn.earned = True
            if env.type == "health":
                self._reply(conn, self._health(env.id))
            elif env.type == "metadata":
                self._reply(conn, {**self._meta_reply, "id": env.id})
            else:
                limit = self.config.max_request_batch
                data = m.parse_infer(message, self.meta, max_batch=limit, request_id=env.id)
                if not conn.begin_request():
                    raise m.RequestError(m.OVERLOADED, "too many requests in flight", env.id)
                deadline = received + env.timeout_ms / 1e3
                try:
                    self._worker.submit(Job(conn, env.id, data, received, deadline))
                except m.RequestError:
                    conn.end_request()
                    raise
        except m.RequestError as exc:
            self.count(f"error_{exc.code}")
            reply = frame(encode(m.error_reply(exc.request_id, exc.code, exc.message)))
            if not trusted or not conn.earned or conn.probe:
                conn.close_after(reply)  # it has not earned the slot: reply, then close
            else:
                conn.send(reply)
            return
        if conn.probe:
            conn.close_after()

    def _health(self, request_id: int) -> dict[str, Any]:
        return {
            "type": "health",
            "id": request_id,
            "status": "stopping" if self._closing else "ok",
            "uptime_s": time.monotonic() - self._started,
            "queued": self._worker.queued(),
            "connections": len(self._conns),
            "stats": self.counts(),
        }

    def _reply(self, conn: Connection, reply: dict[str, Any]) -> None:
        conn.send(frame(encode(reply, self.config.limits)))

    # ------------------------------------------------------------------ from the inference thread

    def _post(self, job: Job, reply: dict[str, Any]) -> None:
        """Encode a reply in the inference thread and send it on the job's connection."""
        try:
            data = frame(encode(reply, self.config.limits))
        except WireError as exc:
            error = m.error_reply(job.id, m.INTERNAL, f"reply not sendable ({exc.code})")
            data = frame(encode(error))
        job.conn.send_reply(data)


def _listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket on ``host:port`` (the first address it resolves to)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    listener = socket.create_server((host, port), family=family, backlog=BACKLOG)
    listener.setblocking(False)
    return listener

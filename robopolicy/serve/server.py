"""PolicyServer: a policy behind a TCP port, safe against slow, hostile and broken clients.

Threads: one asyncio event loop does all the network work (accepting, reading frames, checking
requests, answering ``health`` and ``metadata`` at once, writing replies); one inference thread
(:class:`~robopolicy.serve.worker.InferenceWorker`) owns the engine. The loop never waits on
inference, so a slow forward pass delays neither other connections nor the health check, and
the engine is never entered twice at once (one thread matches a CPU policy or one GPU). asyncio
rather than a thread per client: connections cost no threads, per-frame timeouts are cheap,
and hostile clients cannot exhaust threads.

A connection may have several requests in flight (a client that timed out sends its next
request at once); replies carry the request id and may come out of order. Framing garbage or
an oversized frame closes the connection; a bad message inside a good frame gets an error
reply and the connection stays open; a wrong token gets ``unauthorized`` and the connection is
closed. ``protocol.md`` is the whole protocol.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from robopolicy.serve import messages as m
from robopolicy.serve.config import ServerConfig
from robopolicy.serve.wire import HEADER, WireError, body_length, decode, encode, frame
from robopolicy.serve.worker import InferenceWorker, Job

if TYPE_CHECKING:  # the engine module imports torch; the server itself does not
    from robopolicy.serve.engine import Engine

log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    inflight: int = 0


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
        self._stats = collections.Counter[str]()
        self._stats_lock = threading.Lock()
        self._worker = InferenceWorker(engine, self.config, self._post, self._count)
        self.engine = self._worker.engine
        self.meta = self.engine.metadata()
        self._conns: set[_Connection] = set()
        self._handlers: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._closing = False

    # ------------------------------------------------------------------ running

    def run(self, on_ready: Callable[[str, int], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM (from the main thread); ``on_ready(host, port)``."""
        asyncio.run(self._main(on_ready, signals=True))

    def start(self, timeout: float = 30.0) -> tuple[str, int]:
        """Serve from a background thread; return the bound address once listening."""
        ready, failure = threading.Event(), []

        def serve() -> None:
            try:
                asyncio.run(self._main(lambda host, port: ready.set(), signals=False))
            except BaseException as exc:
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=serve, name="robopolicy-serve-loop")
        self._thread.start()
        ready.wait(timeout)
        if failure or self.address is None:
            raise RuntimeError(f"the policy server did not start: {failure[:1]}")
        return self.address

    def stop(self, timeout: float = 30.0) -> None:
        """Stop a server started with :meth:`start` and wait for its threads."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def counts(self) -> dict[str, int]:
        """Counters: requests, served, expired, error_<code>, closed_bad_frame, ..."""
        with self._stats_lock:
            return dict(self._stats)

    async def _main(self, on_ready: Callable[[str, int], None] | None, signals: bool) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stop.set)
        server = await asyncio.start_server(self._serve, self.config.host, self.config.port)
        self.address = tuple(server.sockets[0].getsockname()[:2])
        self._worker.start()
        log.info("serving %s on %s:%d", self.meta.get("name") or "policy", *self.address)
        if on_ready is not None:
            on_ready(*self.address)
        await self._stop.wait()
        log.info("shutting down")
        self._closing = True
        server.close()
        for job in await asyncio.to_thread(self._worker.close):
            self._reply(job.conn, m.error_reply(job.id, m.SHUTTING_DOWN, "server stopping"))
        await asyncio.sleep(0)  # deliver the replies the worker posted while stopping
        for conn in list(self._conns):
            conn.writer.close()
        if self._handlers:  # each sees its connection close and returns
            await asyncio.wait(self._handlers, timeout=5.0)
        await server.wait_closed()

    # ------------------------------------------------------------------ network (event loop)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= self.config.max_connections or self._closing:
            self._count("refused_connections")
            writer.close()
            return
        conn = _Connection(writer)
        self._conns.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while not writer.is_closing():
                header = await reader.readexactly(HEADER.size)
                try:
                    length = body_length(header, self.config.limits)
                except WireError as exc:  # garbage or an oversized frame: close the connection
                    self._count("closed_bad_frame")
                    if exc.code == m.TOO_LARGE:
                        self._reply(conn, m.error_reply(None, m.TOO_LARGE, exc.message))
                    break
                timeout = self.config.frame_timeout_s
                body = await asyncio.wait_for(reader.readexactly(length), timeout)
                self._on_message(conn, body)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:  # the loop is closing: end quietly
            pass
        except Exception:  # a bug must cost one connection, never the server
            log.exception("connection handler failed")
            self._count("closed_internal")
        finally:
            self._conns.discard(conn)
            self._handlers.discard(task)  # type: ignore[arg-type]
            writer.close()

    def _on_message(self, conn: _Connection, body: bytes) -> None:
        self._count("requests")
        received = time.monotonic()
        try:
            try:
                message = decode(body, self.config.limits)
            except WireError as exc:
                raise m.RequestError(m.MALFORMED, exc.message) from None
            env = m.parse_envelope(message, self.config.max_timeout_ms)
            token = self.config.token
            if token is not None and not hmac.compare_digest(
                (env.token or "").encode(), token.encode()
            ):
                raise m.RequestError(m.UNAUTHORIZED, "missing or wrong token", env.id)
            if env.type == "health":
                self._reply(conn, self._health(env.id))
            elif env.type == "metadata":
                self._reply(conn, {"type": "metadata", "id": env.id, **self.meta})
            else:
                limit = self.config.max_request_batch
                data = m.parse_infer(message, self.meta, max_batch=limit, request_id=env.id)
                if conn.inflight >= self.config.max_inflight:
                    raise m.RequestError(m.OVERLOADED, "too many requests in flight", env.id)
                deadline = received + env.timeout_ms / 1e3
                self._worker.submit(Job(conn, env.id, data, received, deadline))
                conn.inflight += 1
        except m.RequestError as exc:
            self._count(f"error_{exc.code}")
            self._reply(conn, m.error_reply(exc.request_id, exc.code, exc.message))
            if exc.code == m.UNAUTHORIZED:
                conn.writer.close()

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

    def _reply(self, conn: _Connection, reply: dict[str, Any] | bytes) -> None:
        """Write one reply frame (loop thread only); a connection that stops reading is cut."""
        if conn.writer.is_closing():
            return
        conn.writer.write(reply if isinstance(reply, bytes) else frame(encode(reply)))
        if conn.writer.transport.get_write_buffer_size() > self.config.max_write_buffer:
            self._count("closed_slow_reader")
            conn.writer.close()

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[key] += n

    # ------------------------------------------------------------------ from the inference thread

    def _post(self, job: Job, reply: dict[str, Any]) -> None:
        """Encode a reply in the inference thread and hand it to the loop."""
        try:
            data = frame(encode(reply, self.config.limits))
        except WireError as exc:
            error = m.error_reply(job.id, m.INTERNAL, f"reply not sendable ({exc.code})")
            data = frame(encode(error))
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._deliver, job.conn, data)
        except RuntimeError:  # the loop is gone (stopped while a forward pass overran)
            log.warning("reply to request %d dropped: server stopped", job.id)

    def _deliver(self, conn: _Connection, data: bytes) -> None:
        conn.inflight -= 1
        self._reply(conn, data)

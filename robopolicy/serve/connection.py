"""One client connection of the policy server: frames in, replies out, every wait bounded.

The event loop reads the non-blocking socket straight into a 64 KiB scratch buffer (no
allocation per read); a frame whose body does not fit there is read into an anonymous memory
map of exactly the announced size, whose pages are committed only as bytes arrive and go back
to the OS the moment the frame is done or abandoned (a client that announces 64 MiB, sends most
of it and hangs up leaves nothing behind). Replies are sent by whichever thread has them — the
loop (health, errors) or the inference thread (actions) — under a per-connection lock, straight
to the socket; only bytes the kernel does not take wait, for the loop to send when the socket
is writable, so a reply never waits for another thread to wake up.

What a connection may hold, and for how long (``ServerConfig`` names the times), as
:meth:`Connection.deadline` computes it for the server's sweep:

- between frames: ``idle_timeout_s`` once it has *earned* its slot (a request with a good
  envelope and token), ``hello_timeout_s`` before that;
- a started frame: its 8-byte header within ``header_timeout_s`` of the first byte, its body
  within ``frame_timeout_s`` of the header; bodies larger than the scratch count against the
  server's ``max_receiving_bytes`` while they arrive;
- replies it does not read: once ``write_buffer_high`` bytes wait, its requests are no longer
  read (TCP backpressure reaches the client) and after ``reply_timeout_s`` it is cut;
- a reply before closing (``too_large``, ``unauthorized``, ...): the server half-closes and
  reads and drops what the client still sends for :data:`LINGER_S`, so the reply is not lost to
  a reset while the client is still writing.
"""

from __future__ import annotations

import collections
import logging
import math
import mmap
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from robopolicy.serve.wire import HEADER, WireError, body_length

if TYPE_CHECKING:
    from robopolicy.serve.server import PolicyServer

log = logging.getLogger(__name__)

SCRATCH = 64 << 10
"""Bytes of each connection's read buffer; larger frames get a memory map of their own."""
FRAMES_PER_TURN = 16
"""Most frames of one connection handled before other connections' events (a client that
pipelines thousands of requests must not hold the loop for all of them)."""
_ABORT, _WRITE, _PAUSE = 1, 2, 4  # what a send leaves to do once the lock is released
LINGER_S = 1.0
"""After a reply that closes the connection: how long the client's remaining bytes are read
and dropped before the connection is closed."""


class Connection:
    """A client connection (module docstring). Reading and closing on the loop thread only;
    :meth:`send` and :meth:`send_reply` from any thread."""

    def __init__(self, server: PolicyServer, sock: socket.socket, peer: str) -> None:
        self.server, self.config, self.sock, self.peer = server, server.config, sock, peer
        """``peer``: the client's address, the unit of ``max_connections_per_peer``."""
        self.loop = server.reactor
        self.opened = time.monotonic()
        self.earned = False
        """Whether a request with a good envelope (and token) came on it; until then a newer
        connection may evict it when slots are full."""
        self.probe = False
        """Admitted to a health-only reserve slot (every regular slot was earned)."""
        self.inflight = 0
        """``infer`` requests handed to the inference thread and not answered yet (locked)."""
        self.closed = False
        self._lock = threading.Lock()
        self._out: collections.deque[memoryview] = collections.deque()  # unsent reply bytes
        self._unsent = 0
        self._buf = bytearray(SCRATCH)
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # unprocessed bytes are _buf[_start:_end]
        self._big: mmap.mmap | None = None  # the body being read when it exceeds the scratch
        self._big_view: memoryview | None = None
        self._got = 0
        self._frame_at: float | None = None  # when the current frame's first byte was seen
        self._header_at: float | None = None  # when its header was complete
        self._last = self.opened  # when the last frame ended (or the connection began)
        self._paused_at: float | None = None  # requests not read (replies unread) since
        self._linger_until: float | None = None
        self._shut_when_sent = False
        self._close_when_sent = False
        self._eof = False

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._readable)

    # ------------------------------------------------------------------ reading (loop)

    def _readable(self) -> None:
        if self.closed:  # an event from before it closed, in the same turn of the loop
            return
        if self._big_view is not None:
            buffer = self._big_view[self._got :]
        else:
            if self._start == self._end:
                self._start = self._end = 0
            elif self._end == SCRATCH:  # a partial frame at the end: move it to the front
                if not self._start:
                    return  # full of frames still to handle (call_soon'd): read later
                size = self._end - self._start
                self._buf[:size] = self._buf[self._start : self._end]
                self._start, self._end = 0, size
            buffer = self._view[self._end :]
        try:
            n = self.sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the client
            self.abort()
            return
        finally:
            buffer.release()
        if not n:
            self._on_eof()
            return
        if self._linger_until is not None:  # closing: drop what still comes
            self._start = self._end = 0
        elif self._big_view is not None:
            self._got += n
            if self._got == len(self._big_view):
                self._guarded(self._finish_big)
        else:
            self._end += n
            self._guarded(self._frames)

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # a bug must cost one connection, never the server
            log.exception("connection handler failed")
            self.server.count("closed_internal")
            self.abort()

    def _frames(self) -> None:
        """Handle every complete frame in the scratch buffer; start a big body if one begins."""
        limits, handled = self.config.limits, 0
        while self._paused_at is None and self._linger_until is None and not self.closed:
            start = self._start
            if self._end - start < HEADER.size:
                break
            if handled == FRAMES_PER_TURN:  # let other connections' events go first
                self.loop.call_soon(self._more_frames)
                break
            handled += 1
            try:
                length = body_length(self._buf[start : start + HEADER.size], limits)
            except WireError as exc:  # not our framing, or over the cap
                self.server.count("closed_bad_frame")
                self.server.refuse_frame(self, exc)
                return
            end = start + HEADER.size + length
            if end <= self._end:  # the whole frame is here
                self._start, self._frame_at, self._header_at = end, None, None
                self._last = time.monotonic()
                self.server.on_frame(self, self._view[start + HEADER.size : end])
                continue
            if HEADER.size + length > SCRATCH:  # too big for the scratch: a map of its own
                self._start_big(length, start + HEADER.size)
            elif self._header_at is None:
                self._header_at = time.monotonic()
            break
        if self._start != self._end and self._frame_at is None:
            self._frame_at = time.monotonic()

    def _more_frames(self) -> None:
        if not self.closed:
            self._guarded(self._frames)

    def _start_big(self, length: int, head: int) -> None:
        if not self.server.reserve_receiving(length):
            self.server.count("closed_receiving_budget")
            self.server.refuse_busy(self)
            return
        self._big = mmap.mmap(-1, length)
        self._big_view = memoryview(self._big)
        self._got = self._end - head
        self._big_view[: self._got] = self._view[head : self._end]
        self._start = self._end = 0
        self._header_at = time.monotonic()

    def _finish_big(self) -> None:
        self._frame_at = self._header_at = None
        self._last = time.monotonic()
        try:
            if self._big_view is not None:
                self.server.on_frame(self, self._big_view)
        finally:
            self._drop_big()

    def _drop_big(self) -> None:
        if self._big is None or self._big_view is None:
            return
        self.server.reserve_receiving(-len(self._big_view))
        try:
            self._big_view.release()
            self._big.close()  # the pages go back to the OS now
        except BufferError:  # still exported somewhere: freed when the last view goes
            log.warning("a frame buffer outlived its frame")
        self._big = self._big_view = None

    def _on_eof(self) -> None:
        self._eof = True
        self.loop.remove_reader(self.sock.fileno())
        with self._lock:
            waiting = self.inflight and self._linger_until is None
        if not waiting:  # else a half-closed client still gets the replies it waits for
            self.close()

    # ------------------------------------------------------------------ writing (any thread)

    def send(self, data: bytes) -> None:
        """Send ``data`` now, or queue what the kernel does not take."""
        with self._lock:
            then = self._send_locked(data)
        self._after_send(then)

    def begin_request(self) -> bool:
        """Count an ``infer`` request handed to the inference thread; False at the limit."""
        with self._lock:
            if self.inflight >= self.config.max_inflight:
                return False
            self.inflight += 1
            return True

    def end_request(self) -> None:
        with self._lock:
            self.inflight -= 1

    def send_reply(self, data: bytes) -> None:
        """Send an inference reply (inference thread) and count the request answered."""
        with self._lock:
            self.inflight -= 1
            then = self._send_locked(data)
            done = self._eof and not self.inflight
        self._after_send(then)
        if done:
            self._on_loop(self.close)

    def _send_locked(self, data: bytes) -> int:
        """Send or queue (the lock held); what to do once it is released (:data:`_ABORT`,
        :data:`_WRITE`, :data:`_PAUSE`: they take the lock themselves)."""
        if self.closed or self._linger_until is not None:
            return 0
        view = memoryview(data)
        if not self._out:
            try:
                n = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:  # reset by the client
                return _ABORT
            if n == len(view):
                return 0
            view = view[n:]
        self._out.append(view)
        self._unsent += len(view)
        then = _WRITE if len(self._out) == 1 else 0
        if self._unsent > self.config.write_buffer_high and self._paused_at is None:
            self._paused_at = time.monotonic()
            then |= _PAUSE
        return then

    def _after_send(self, then: int) -> None:
        if then & _ABORT:
            self._on_loop(self.abort)
            return
        if then & _WRITE:
            self._on_loop(self._start_writing)
        if then & _PAUSE:
            self._on_loop(self._pause)

    def _on_loop(self, fn: Callable[[], None]) -> None:
        if self.server.on_loop_thread():
            fn()
            return
        self.loop.call_soon_threadsafe(fn)

    def _start_writing(self) -> None:
        if not self.closed and self._out:
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _pause(self) -> None:
        """The client leaves replies unread: stop reading its requests."""
        if not self.closed and self._paused_at is not None:
            self.server.count("paused_unread_replies")
            self.loop.remove_reader(self.sock.fileno())

    def _writable(self) -> None:
        if self.closed:
            return
        with self._lock:
            while self._out:
                try:
                    n = self.sock.send(self._out[0])
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    break
                self._unsent -= n
                if n < len(self._out[0]):
                    self._out[0] = self._out[0][n:]
                    return
                self._out.popleft()
            failed = bool(self._out)
            low = self.config.write_buffer_high // 4  # resume well below the pause
            resume = self._paused_at is not None and self._unsent <= low
            if resume:
                self._paused_at = None
        if failed:
            self.abort()
            return
        self.loop.remove_writer(self.sock.fileno())
        if self._shut_when_sent:
            self._shutdown_write()
        elif self._close_when_sent:
            self.abort()
        elif resume and not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._readable)
            self._guarded(self._frames)  # frames that came before the pause

    # ------------------------------------------------------------------ deadlines and closing

    def deadline(self) -> tuple[float, str]:
        """When the server closes it, and why."""
        cfg = self.config
        if self._linger_until is not None:
            return self._linger_until, "linger"
        if self._paused_at is not None:
            return self._paused_at + cfg.reply_timeout_s, "unread_replies"
        if self._header_at is not None:
            return self._header_at + cfg.frame_timeout_s, "body_timeout"
        if self._frame_at is not None:
            return self._frame_at + cfg.header_timeout_s, "header_timeout"
        if self.inflight or self._eof:
            return math.inf, "waiting"
        if self.earned:
            return self._last + cfg.idle_timeout_s, "idle"
        return self._last + cfg.hello_timeout_s, "hello_timeout"

    def close_after(self, data: bytes | None = None) -> None:
        """Send ``data`` (a reply), half-close, and drop what still comes for ``LINGER_S``."""
        if self.closed or self._linger_until is not None:
            return
        if data is not None:
            self.send(data)
        with self._lock:
            self._linger_until = time.monotonic() + LINGER_S
            flushed = not self._out
            self._shut_when_sent = not flushed
        self._drop_big()
        self._start = self._end = 0
        if self._paused_at is not None:  # it reads nothing: no point lingering
            self.abort()
        elif flushed:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.abort()

    def close(self) -> None:
        """Close once the queued replies are sent (loop thread)."""
        with self._lock:
            pending = bool(self._out) and not self.closed
            self._close_when_sent = pending
        if not pending:
            self.abort()

    def abort(self) -> None:
        """Close now, dropping unsent replies (loop thread)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._out.clear()
        fd = self.sock.fileno()
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)
        self.sock.close()
        self._drop_big()
        self.server.release(self)

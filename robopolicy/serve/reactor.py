"""The server's event loop, shared by two threads, one at a time: whoever holds the *lead*.

Why not asyncio: its loop is bound to one thread, so the inference thread would have to be
woken for every request (a thread hand-off: ~25-30 us on a busy 2-core machine, the largest
single cost of a round trip). Here the inference thread leads while it is idle, so a request
is read, checked, run and answered on one thread; only while it runs inference does a standby
thread take the lead and answer ``health``, other clients and timeouts — R10 — until the
inference thread takes it back (:class:`Lead`).

:class:`Reactor` is the loop: a selector with reader/writer callbacks per file descriptor and a
wake-up socket. Only the leader calls :meth:`Reactor.run_once`, registers or unregisters; other
threads use :meth:`Reactor.call_soon_threadsafe`. :class:`Lead` passes the lead between the
inference thread and the standby thread.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable

Callback = Callable[[], None]
EVENT_READ, EVENT_WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
HANDOVER_S = 0.005
"""How long inference runs before the standby thread takes the lead."""
LOOK_S = 0.05
"""How often the standby thread looks whether inference is running: rarely, since each look
needs the GIL and can delay the inference thread's next request (each look at 5 ms put the
round trip's p99 at ~1.5 ms). A slow forward pass delays ``health`` and other clients by
``LOOK_S + HANDOVER_S`` at most."""


class Reactor:
    """Selector, callbacks, wake-up; see the module docstring."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.leader = 0
        """``threading.get_ident()`` of the thread that may run the loop now."""
        self._calls: collections.deque[Callback] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self.selector.register(self._wake_r, EVENT_READ, [self._drain, None])

    def on_leader(self) -> bool:
        return threading.get_ident() == self.leader

    def call_soon_threadsafe(self, fn: Callback) -> None:
        """Run ``fn`` on the leading thread, soon."""
        self._calls.append(fn)
        self.wake()

    def call_soon(self, fn: Callback) -> None:
        """Run ``fn`` in the next turn of the loop (leading thread only), after the events
        that are ready then."""
        self._calls.append(fn)

    def wake(self) -> None:
        """Return the leader from its wait."""
        with contextlib.suppress(OSError):  # full of unread wake-ups already, or closing
            self._wake_w.send(b"\0")

    def _drain(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._set(fd, 0, callback)

    def remove_reader(self, fd: int) -> None:
        self._set(fd, 0, None)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._set(fd, 1, callback)

    def remove_writer(self, fd: int) -> None:
        self._set(fd, 1, None)

    def _set(self, fd: int, slot: int, callback: Callback | None) -> None:
        try:
            data = list(self.selector.get_key(fd).data)
        except (KeyError, ValueError):
            data = [None, None]
        registered = data != [None, None]
        data[slot] = callback
        events = (EVENT_READ if data[0] else 0) | (EVENT_WRITE if data[1] else 0)
        if events and registered:
            self.selector.modify(fd, events, data)
        elif events:
            self.selector.register(fd, events, data)
        elif registered:
            self.selector.unregister(fd)

    def run_once(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for events and run their callbacks, then the calls
        other threads asked for."""
        for key, mask in self.selector.select(0.0 if self._calls else timeout):
            reader, writer = key.data
            if mask & EVENT_READ and reader is not None:
                reader()
            if mask & EVENT_WRITE and writer is not None:
                if reader is not None and key.fd not in self.selector.get_map():
                    continue  # the reader closed it
                writer()
        for _ in range(len(self._calls)):  # not those they add: others' events come first
            self._calls.popleft()()

    def close(self) -> None:
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()


class Lead:
    """Who runs the reactor. ``"inference"``: the inference thread, idle. ``"busy"``: it runs
    inference and nobody leads yet. ``"standby"``: inference has run longer than
    :data:`HANDOVER_S` and the standby thread leads. ``"reclaim"``: inference is done and the
    standby is asked to give the lead back. The standby looks every :data:`LOOK_S` rather than
    being woken, so a short inference involves it not at all (waking it, and taking the lead
    back, cost more than the whole round trip). Every change goes through one condition."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.state = "inference"
        self.stopping = False
        self._busy_since = 0.0
        self._lock = threading.RLock()  # reentrant: stop() runs in signal handlers
        self._cond = threading.Condition(self._lock)

    def hand_over(self) -> None:
        """The inference thread is about to run inference: the standby may lead meanwhile."""
        with self._lock:
            self.state, self._busy_since = "busy", time.monotonic()
            self.reactor.leader = 0

    def take_back(self) -> None:
        """The inference thread is done: lead again, once the standby (if it took over) has
        stopped."""
        with self._lock:
            if self.state == "standby":
                self.state = "reclaim"
                self.reactor.wake()
                while self.state == "reclaim" and not self.stopping:
                    self._cond.wait()
            self.state = "inference"
            self.reactor.leader = threading.get_ident()

    def wait_to_lead(self) -> bool:
        """Standby: block until inference has run for :data:`HANDOVER_S`; False when
        stopping."""
        with self._cond:
            while not self.stopping:
                wait = LOOK_S
                if self.state == "busy":
                    wait = self._busy_since + HANDOVER_S - time.monotonic()
                    if wait <= 0:
                        self.state = "standby"
                        self.reactor.leader = threading.get_ident()
                        return True
                self._cond.wait(wait)
            return False

    def should_give_back(self) -> bool:
        """Standby, between reactor turns: give the lead back if asked (then True)."""
        with self._cond:
            if self.state == "reclaim" or self.stopping:
                self.reactor.leader = 0
                self.state = "busy" if self.stopping else "inference"
                self._cond.notify_all()
                return True
            return False

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()
        self.reactor.wake()

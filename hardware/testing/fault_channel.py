"""The test-only fault channel into a running ``robopolicy control`` process.

A fault campaign runs the daemon as a user does (``python -m robopolicy control ...``) in its
own process, so driver faults — a stale or NaN sensor, a driver exception, an e-stop mid-motion
— must be switched inside that process. With ``ROBOPOLICY_TESTING_FAULT_CHANNEL=1`` in its
environment (and only then: nothing here is imported otherwise), ``robopolicy control`` wraps
its simulated arm in a :class:`~hardware.testing.fault_switch.FaultSwitch` and serves this
channel on 127.0.0.1 (port 0: a free one), announced by one stderr line
``{"event": "fault_channel", "port": ..., "pid": ...}`` before the ``running`` line. It refuses
any driver but the simulated arm (``--robot sim`` or a ``--dry-run``): a fault channel never
reaches motors.

One JSON object a line each way; one request, one reply:

- ``{"op": "switch", "fault": "stale" | "nan_state" | "write_error" | "estop" | null}`` →
  ``{"active": ..., "at": t}``, ``t`` the time it took effect;
- ``{"op": "status", "since": t}`` → ``{"mode", "ticks", "chunks_accepted",
  "sensor_hold_ticks", "write_errors", "outcomes"}``: the loop's mode and counters, and the
  requester's ``[time, outcome]`` pairs after ``t`` (``"chunk"``, ``"rejected"``,
  ``"timeouts"``, ... — :meth:`~hardware.daemon.requester.Requester.request_once`).

Times are ``time.monotonic()`` seconds: the daemon's clock (the simulated arm's), which is the
machine's ``CLOCK_MONOTONIC``, so they compare with the director's own. What the daemon wrote is
not asked here: the campaign reads it from the tick log.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any

from hardware.daemon.mirror import MirroredSim
from hardware.driver import Driver
from hardware.sim_arm import SimArm
from hardware.testing.fault_switch import FaultSwitch
from robopolicy.errors import RobopolicyError

if TYPE_CHECKING:
    from hardware.daemon.daemon import Daemon


class FaultChannel:
    """The daemon's end: a :class:`FaultSwitch` around ``driver`` and a loopback server."""

    def __init__(self, driver: Driver) -> None:
        if not isinstance(driver, SimArm | MirroredSim):
            raise RobopolicyError(
                "the testing fault channel drives a simulated arm only (--robot sim or --dry-run)"
            )
        self.switch = FaultSwitch(driver)
        """The driver to give the daemon."""
        self.daemon: Daemon | None = None
        self._listener: socket.socket | None = None

    def serve(self, daemon: Daemon) -> int:
        """Serve ``daemon``'s channel from a background thread; announce and return the port."""
        self.daemon = daemon
        self._listener = listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        threading.Thread(
            target=self._accept, args=(listener,), name="fault-channel", daemon=True
        ).start()
        event = {"event": "fault_channel", "port": port, "pid": os.getpid()}
        print(json.dumps(event), file=sys.stderr, flush=True)
        return port

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the run is over
                return
            with conn, conn.makefile("rwb") as stream, contextlib.suppress(OSError):
                for line in stream:  # one client at a time: the director
                    try:
                        reply = self.handle(json.loads(line))
                    except (ValueError, KeyError, TypeError) as exc:
                        reply = {"error": str(exc)}
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request (module docstring)."""
        if request["op"] == "switch":
            at = self.switch.switch(request["fault"])
            active = self.switch.active
            return {"active": None if active is None else str(active), "at": at}
        if request["op"] == "status":
            since = request.get("since")
            return self.status(float("-inf") if since is None else float(since))
        raise ValueError(f"unknown op {request['op']!r}")

    def status(self, since: float) -> dict[str, Any]:
        daemon = self.daemon
        loop = None if daemon is None else daemon.loop
        requester = None if daemon is None else daemon.requester
        counters = ("ticks", "chunks_accepted", "sensor_hold_ticks", "write_errors")
        if loop is None or requester is None:  # not running yet
            return {"mode": None, **dict.fromkeys(counters, 0), "outcomes": []}
        return {
            "mode": int(loop.mode),
            **{name: getattr(loop.stats, name) for name in counters},
            "outcomes": [[t, o] for t, o in list(requester.outcomes) if t > since],
        }


class ChannelClient:
    """The director's end of the channel to the daemon at ``127.0.0.1:port``."""

    def __init__(self, port: int, *, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._stream = self._sock.makefile("rwb")

    def call(self, **request: Any) -> dict[str, Any]:
        """One request and its reply; :class:`ConnectionError` once the daemon has gone."""
        try:
            self._stream.write(json.dumps(request).encode() + b"\n")
            self._stream.flush()
            line = self._stream.readline()
        except OSError as exc:
            raise ConnectionError(f"fault channel: {exc}") from exc
        if not line:
            raise ConnectionError("fault channel closed: the daemon has ended")
        reply = json.loads(line)
        if "error" in reply:
            raise ValueError(f"fault channel refused {request}: {reply['error']}")
        return reply

    def switch(self, fault: str | None) -> float:
        """Switch the daemon's driver fault; the daemon-clock time it took effect."""
        return float(self.call(op="switch", fault=fault)["at"])

    def status(self, since: float | None = None) -> dict[str, Any]:
        """The daemon's mode and counters, and its request outcomes after ``since``."""
        return self.call(op="status", since=since)

    def close(self) -> None:
        self._stream.close()
        self._sock.close()

"""The e-stop latch (R5): a file that survives restarts and clears only on an operator's word.

An e-stop — the arm reporting one, a write refused with :class:`~hardware.driver.EStopError`,
or an operator's ``robopolicy control --estop`` — writes the latch file atomically (temporary
file, fsync, ``os.replace``: :mod:`robopolicy.atomic`). While the file exists, the daemon
refuses to start moving and a running loop stops at its next poll. Nothing clears it but
``robopolicy control --clear-estop`` (:meth:`EStopLatch.clear`): not a restart of the policy
server, not a restart of the daemon, not the arm's own e-stop being released — the libfranka
model, where a reflex stays latched until an explicit recovery call.

An unreadable or corrupt latch file counts as set: failing safe beats trusting a broken file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from robopolicy.atomic import atomic_write_json
from robopolicy.errors import RobopolicyError

log = logging.getLogger(__name__)


class EStopLatched(RobopolicyError):
    """The e-stop latch is set: the daemon will not move the arm until it is cleared."""


class EStopLatch:
    """The latch file at ``path`` (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def is_set(self) -> bool:
        """Whether the latch exists (an unreadable path counts as set)."""
        try:
            return self.path.exists()
        except OSError:
            return True

    def read(self) -> dict[str, Any] | None:
        """What set the latch (reason, source, time, pid, host), or None when it is clear."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            return {"reason": f"latch file unreadable ({exc})"}
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            return {"reason": "latch file corrupt (treated as set)"}
        return record if isinstance(record, dict) else {"reason": "latch file malformed"}

    def set(self, reason: str, *, source: str = "daemon") -> None:
        """Latch the e-stop; a latch already set keeps its first reason."""
        if self.is_set():
            return
        record = {
            "reason": reason,
            "source": source,
            "time": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        atomic_write_json(self.path, record)
        log.error(
            "E-STOP latched (%s): %s; clear with `robopolicy control --clear-estop`", source, reason
        )

    def clear(self) -> dict[str, Any] | None:
        """Clear the latch (the operator's explicit command); returns what had set it."""
        record = self.read()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return None
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning("e-stop latch cleared (was: %s)", (record or {}).get("reason"))
        return record

    def require_clear(self) -> None:
        """Raise :class:`EStopLatched` (naming the reason and the way out) while set."""
        if self.is_set():
            record = self.read() or {}
            raise EStopLatched(
                f"e-stop latched ({record.get('reason', 'unknown reason')}; latch {self.path}): "
                "check the arm, then run `robopolicy control --clear-estop`"
            )

    def __repr__(self) -> str:
        return f"EStopLatch({str(self.path)!r}, set={self.is_set()})"


class EStopWatch:
    """What a control loop checks every tick: the arm reporting an e-stop (which latches it),
    and, every ``poll_s`` seconds, a latch set from outside (``robopolicy control --estop``)."""

    def __init__(self, latch: EStopLatch, poll_s: float) -> None:
        self.latch, self.poll_s = latch, poll_s
        self._next_poll = float("-inf")

    def check(self, arm_estopped: bool, now: float) -> str | None:
        """Why the loop must e-stop now (the latch is then set), or None."""
        if arm_estopped:
            self.latch.set("the arm reports an emergency stop")
            return "the arm reports an emergency stop"
        if now >= self._next_poll:
            self._next_poll = now + self.poll_s
            if self.latch.is_set():
                return "e-stop latch set from outside"
        return None

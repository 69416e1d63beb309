"""What the control loop reports: its mode, the per-tick flags and the run's counters."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import numpy as np

LATENESS_WINDOW = 1 << 17
"""Tick latenesses kept for the jitter figures (the latest ones: 22 min at 100 Hz)."""


class Mode(enum.IntEnum):
    RUN = 0
    HOLD = 1
    STOPPED = 2
    ESTOP = 3


class Flag(enum.IntFlag):
    """Why a tick did what it did (the tick log's ``flags``)."""

    HOLD_COMMAND = 1 << 0  # the plan ran out more than T1 ago
    HOLD_SENSOR = 1 << 1  # reading missing, non-finite or too old
    NO_PLAN = 1 << 2  # no planned target now (ran out, not yet T1)
    CLIPPED = 1 << 3  # the safety filter changed the target
    WRITE_ERROR = 1 << 4
    READ_ERROR = 1 << 5
    CHUNK_ACCEPTED = 1 << 6
    CHUNK_REJECTED = 1 << 7
    DROPPED = 1 << 8  # overdue actions dropped
    OVERRUN = 1 << 9  # the tick ended after the next one was due
    NOT_WRITTEN = 1 << 10  # nothing known to hold: nothing written
    ESTOP = 1 << 11
    STOP = 1 << 12
    STARTUP = 1 << 13  # waiting for the first chunk


class Window:
    """The latest ``size`` values of a series, in a buffer allocated once (a soak run's memory
    stays flat from the first tick, where a growing deque would look like a leak for minutes)."""

    def __init__(self, size: int = LATENESS_WINDOW) -> None:
        self._values = np.zeros(size)
        self._count = 0

    def append(self, value: float) -> None:
        self._values[self._count % len(self._values)] = value
        self._count += 1

    def values(self) -> np.ndarray:
        """The values kept (oldest first once the buffer has wrapped; a copy)."""
        size = len(self._values)
        if self._count <= size:
            return self._values[: self._count].copy()
        return np.roll(self._values, -(self._count % size))


@dataclasses.dataclass
class LoopStats:
    """Counters of one run (the scorecard's and the benchmark's figures)."""

    ticks: int = 0
    """Ticks run."""
    overruns: int = 0
    """Ticks that ended after the next tick was due (the loop overran its period)."""
    missed_ticks: int = 0
    """Ticks skipped because the loop was a whole period or more behind."""
    chunks_accepted: int = 0
    """Chunks that became the plan."""
    chunks_rejected: int = 0
    """Chunks whose first action still to come was out of reach (the bridge check)."""
    chunks_discarded: int = 0
    """Chunks that arrived while the sensor was bad (a fresh one is asked for)."""
    late_chunks: int = 0
    """Chunks with every action overdue on arrival."""
    dropped_actions: int = 0
    """Overdue actions dropped when their chunk arrived (R3), late chunks' included."""
    command_hold_ticks: int = 0
    """Ticks held because the plan had run out for longer than T1 (R2)."""
    sensor_hold_ticks: int = 0
    """Ticks held because the reading was missing, non-finite or too old (R4)."""
    clipped_ticks: int = 0
    """Ticks whose target the safety filter changed."""
    write_errors: int = 0
    """Writes the driver failed (other than an e-stop)."""
    read_errors: int = 0
    """Reads the driver failed."""
    not_written: int = 0
    """Ticks that wrote nothing: no safe target was known."""
    lateness: Window = dataclasses.field(default_factory=Window, repr=False)
    """How late each of the latest ticks started (s)."""

    def jitter(self) -> dict[str, float]:
        """p50, p99 and max tick lateness (s) over the latest ticks."""
        x = self.lateness.values()
        if not x.size:
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
        return {
            "p50": float(np.percentile(x, 50)),
            "p99": float(np.percentile(x, 99)),
            "max": float(x.max()),
        }

    def to_dict(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "lateness"
        }
        return {**out, "jitter_s": self.jitter()}

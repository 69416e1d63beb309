"""Every tick of the control loop, recorded to an episode store for replay and plots.

One row per tick (and per step of the exit behaviour), in the store's ``data/<key>`` arrays:

=============  ========  =====================================================================
``time``       (,) f8    when the tick was due (daemon clock, s)
``lateness``   (,) f8    how late it started (s): the jitter
``work``       (,) f8    how long its read-filter-write-log took (s)
``sensed_at``  (,) f8    when the reading was sensed (NaN: no reading)
``measured``   (Da,) f8  joint positions and gripper read (NaN where unknown)
``velocity``   (n,) f8   joint velocities read (NaN when the driver reports none)
``commanded``  (Da,) f8  the plan's target before the safety filter (the hold target when holding)
``safe``       (Da,) f8  the safety filter's output
``sent``       (Da,) f8  what the driver reports it wrote (NaN: nothing written)
``write_time`` (,) f8    clock time just before the write
``mode``       (,) i1    0 run, 1 hold, 2 stopped, 3 e-stop, 4 exit behaviour
``flags``      (,) i4    :class:`~hardware.daemon.loop.Flag` bits (hold reasons, clips, errors)
``dropped``    (,) i2    overdue actions dropped on this tick
``chunk``      (,) i4    sequence number of the chunk executed (-1: none)
``valid``      (,) i4    bit ``i`` set when float column ``i`` of :data:`FLOAT_COLUMNS` is known
=============  ========  =====================================================================

The episode store holds finite numbers only, so an unknown value (no reading, nothing sent, a
NaN reading) is stored as 0 with its ``valid`` bit clear; :func:`read_ticks` gives it back as NaN.

Ticks are committed as one episode per ``segment`` rows (``log_segment_s`` of control), by a
writer thread, so the loop never waits on the disk and a crash loses at most the segment in
flight (the store's commit rule). A write failure (a full disk) drops that segment, counts it
in ``errors`` and never stops the loop. ``close`` flushes the last partial segment and writes a
run summary into the store's attributes.

A log is an ordinary episode store: ``robopolicy data info LOG`` summarises it, ``robopolicy data
view LOG --episode K`` plots segment ``K`` column by column (unknown values as 0), and
``robopolicy control --replay LOG`` replays it in simulation (:mod:`hardware.daemon.replay`).
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from robopolicy.data.store import EpisodeStore

log = logging.getLogger(__name__)
FLOAT_COLUMNS = (
    "time",
    "lateness",
    "work",
    "sensed_at",
    "measured",
    "velocity",
    "commanded",
    "safe",
    "sent",
    "write_time",
)
"""The float columns, in the order of their ``valid`` bits."""


def _encode(frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NaN-free frames for the store, with the ``valid`` bits."""
    valid = np.zeros(len(frames["time"]), dtype="<i4")
    out = dict(frames)
    for bit, key in enumerate(FLOAT_COLUMNS):
        value = frames[key]
        finite = np.isfinite(value).reshape(len(value), -1).all(axis=1)
        valid |= finite.astype("<i4") << bit
        out[key] = np.where(np.isfinite(value), value, 0.0)
    out["valid"] = valid
    return out


class TickLog:
    """Buffers tick rows and commits them in segments (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        rate_hz: float,
        action_names: tuple[str, ...],
        joint_names: tuple[str, ...],
        segment: int,
        attrs: dict[str, Any] | None = None,
        max_pending: int = 8,
    ) -> None:
        self.store = EpisodeStore.create(
            path, fps=rate_hz, attrs={"kind": "control_ticks", **(attrs or {})}
        )
        for key in ("measured", "commanded", "safe", "sent"):
            self.store.set_feature(
                key, names=list(action_names), units="rad; gripper 0 open .. 1 closed"
            )
        self.store.set_feature("velocity", names=list(joint_names), units="rad/s")
        da, n = len(action_names), len(joint_names)
        self.segment = max(1, int(segment))
        self._shapes: dict[str, tuple[tuple[int, ...], str]] = {
            "time": ((), "<f8"),
            "lateness": ((), "<f8"),
            "work": ((), "<f8"),
            "sensed_at": ((), "<f8"),
            "measured": ((da,), "<f8"),
            "velocity": ((n,), "<f8"),
            "commanded": ((da,), "<f8"),
            "safe": ((da,), "<f8"),
            "sent": ((da,), "<f8"),
            "write_time": ((), "<f8"),
            "mode": ((), "|i1"),
            "flags": ((), "<i4"),
            "dropped": ((), "<i2"),
            "chunk": ((), "<i4"),
        }
        self._block = self._new_block()
        self._row = 0
        self.rows = 0
        """Rows recorded so far."""
        self.committed = 0
        """Rows committed to the store."""
        self.errors = 0
        """Segments lost to write failures or a full queue."""
        self._queue: queue.Queue[dict[str, np.ndarray] | None] = queue.Queue(max_pending)
        self._writer = threading.Thread(target=self._write_loop, name="daemon-ticklog", daemon=True)
        self._writer.start()
        self._closed = False

    def _new_block(self) -> dict[str, np.ndarray]:
        block = {}
        for key, (shape, dtype) in self._shapes.items():
            fill = -1 if key == "chunk" else (0 if dtype[1] == "i" else np.nan)
            block[key] = np.full((self.segment, *shape), fill, dtype=dtype)
        return block

    def record(self, **row: Any) -> None:
        """Add one tick; keys are the columns above (missing ones stay NaN / 0 / -1)."""
        if self._closed:
            return
        block, i = self._block, self._row
        for key, value in row.items():
            if value is not None:
                block[key][i] = value
        self._row += 1
        self.rows += 1
        if self._row == self.segment:
            self._submit()

    def _submit(self) -> None:
        if not self._row:
            return
        frames = {k: v[: self._row] for k, v in self._block.items()}
        try:
            self._queue.put_nowait(frames)
        except queue.Full:
            self.errors += 1
            log.error("tick log: writer behind, %d ticks dropped", self._row)
        self._block, self._row = self._new_block(), 0

    def _write_loop(self) -> None:
        while (frames := self._queue.get()) is not None:
            try:
                self.store.append_episode(_encode(frames))
                self.committed += len(frames["time"])
            except Exception:
                self.errors += 1
                log.exception("tick log: a segment could not be written")

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Commit what is buffered, stop the writer and store ``summary`` (JSON values)."""
        if self._closed:
            return
        self._submit()
        self._closed = True
        self._queue.put(None)
        self._writer.join()
        if summary is not None:
            try:
                self.store.set_attrs(summary=summary)
            except Exception:
                log.exception("tick log: the run summary could not be written")


def read_ticks(path: str | Path) -> dict[str, np.ndarray]:
    """Every committed tick of a log (all segments concatenated), column -> array, with NaN
    where a value was unknown."""
    store = EpisodeStore.open(path)
    ticks = store.frames(0, store.n_frames)
    valid = ticks.pop("valid")
    for bit, key in enumerate(FLOAT_COLUMNS):
        missing = (valid >> bit) & 1 == 0
        ticks[key] = ticks[key].astype(np.float64)
        ticks[key][missing] = np.nan
    return ticks

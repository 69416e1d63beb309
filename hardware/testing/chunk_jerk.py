"""Chunk-boundary jerk of a daemon run: how much the commanded velocity changes where one chunk
hands over to the next, against the level inside chunks (the real-time chunking test and
``scripts/bench_rtc.py``).

From a tick log's columns (:func:`hardware.daemon.log.read_ticks`): the commanded velocity of
tick i is ``v_i = (c_i - c_{i-1}) / (t_i - t_{i-1})`` (c the plan's target, before the safety
filter; t when it was taken, for which the log's ``write_time`` stands in: a tick's scheduled
``time`` would count the loop's jitter as motion) and its change
``dv_i = max_joint |v_i - v_{i-1}|`` (rad/s from one tick to the next).
A **boundary** spans the ticks from one where a chunk was accepted (the log's ``chunk`` changes)
to ``window`` policy periods after it: without real-time chunking the new chunk takes over at
once and its first action is at most a period away; with it the old chunk runs until the new
one's first free action, due within a period of the acceptance plus the delay estimate's
margin. The first acceptance (from standing still) is left out of both. Every other tick of
the run is **within** a chunk, where the velocity changes only at the knots of the policy's
own actions.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ChunkJerk:
    """Changes of commanded velocity (rad/s per tick) at chunk boundaries and within chunks."""

    boundaries: int
    """Boundaries measured (acceptances after the first)."""
    boundary_max: float
    """The largest change at any boundary."""
    boundary_median: float
    """The median over boundaries of each one's largest change."""
    within_max: float
    """The largest change within chunks."""
    within_p99: float
    """Its 99th percentile."""


def chunk_jerk(
    time: np.ndarray,
    commanded: np.ndarray,
    chunk: np.ndarray,
    period: float,
    *,
    running: np.ndarray | None = None,
    window: float = 2.0,
) -> ChunkJerk:
    """The jerk report (module docstring) of ticks that took the targets ``commanded``
    (N, Da) at ``time`` (N,) while executing ``chunk`` (N,) sequence numbers, for a policy of
    ``period`` seconds; ``running`` (N,) leaves out the other ticks (holds, exit behaviour)
    and their neighbours; ``window`` is in policy periods."""
    time, commanded = np.asarray(time, float), np.asarray(commanded, float)
    chunk = np.asarray(chunk)
    ok = np.isfinite(commanded).all(axis=1) & np.isfinite(time)
    if running is not None:
        ok &= np.asarray(running, bool)
    velocity = np.diff(commanded, axis=0) / np.diff(time)[:, None]  # v[i - 1] is tick i's
    change = np.full(len(time), np.nan)
    change[2:] = np.abs(np.diff(velocity, axis=0)).max(axis=1)
    valid = ok.copy()
    valid[1:] &= ok[:-1]
    valid[2:] &= ok[:-2]
    valid[:2] = False
    accepted = np.flatnonzero((np.diff(chunk) != 0) & (chunk[1:] >= 0)) + 1
    boundary = np.zeros(len(time), bool)
    peaks = []
    for n, i in enumerate(accepted):
        span = (time >= time[i]) & (time <= time[i] + window * period) & valid
        boundary |= span
        if n and span.any():
            peaks.append(float(change[span].max()))
    within = valid & ~boundary
    inside = change[within] if within.any() else np.zeros(1)
    return ChunkJerk(
        len(peaks),
        max(peaks, default=0.0),
        float(np.median(peaks)) if peaks else 0.0,
        float(inside.max()),
        float(np.percentile(inside, 99)),
    )

"""Replay a daemon's tick log in simulation (R17): same initial state, same commands at the
same times, and the simulated arm must pass through the recorded states.

The log holds, per tick, when the reading was sensed and what it said, and when each command
was written and what was written. :func:`replay` starts a :class:`~hardware.sim_arm.SimArm` on a
:class:`~hardware.clock.VirtualClock` at the first recorded reading (positions, velocities and
gripper), then walks the ticks in order: it moves the clock to each write time and writes the
recorded command, and to each sensing time and compares the simulated reading with the
recorded one. The physics steps happen at the same clock times as in the recorded run, so a
log recorded on ``SimArm`` reproduces to numerical noise; a log from a real arm measures how
well the simulation models it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hardware.clock import VirtualClock
from hardware.daemon.log import read_ticks
from hardware.sim_arm import SimArm


@dataclasses.dataclass(frozen=True)
class ReplayReport:
    """How far the replayed joint positions were from the recorded ones (rad)."""

    compared: int
    """Readings compared."""
    max_error: float
    rms_error: float
    per_joint_max: tuple[float, ...]


def replay(path: str | Path) -> ReplayReport:
    """Replay the tick log at ``path`` on a fresh simulated arm (module docstring)."""
    return replay_ticks(read_ticks(path), where=str(path))


def replay_ticks(ticks: Mapping[str, np.ndarray], *, where: str = "ticks") -> ReplayReport:
    """Replay tick columns — ``sensed_at``, ``measured``, ``velocity``, ``sent`` and
    ``write_time``, NaN where unknown — on a fresh simulated arm; ``where`` names them in
    errors."""
    sensed, measured = ticks["sensed_at"], ticks["measured"]
    readable = np.flatnonzero(np.isfinite(sensed) & np.isfinite(measured).all(axis=1))
    if not len(readable):
        raise ValueError(f"{where}: no readings to start from")
    first = int(readable[0])
    clock = VirtualClock(float(sensed[first]))
    start = measured[first]
    sim = SimArm(clock=clock, initial=start[:6], gripper=float(start[6]))
    sim.connect()
    velocity = ticks["velocity"][first]
    if np.isfinite(velocity).all():  # the recorded motion at the first reading
        sim.data.qvel[sim.arm.dof_index] = velocity
    errors = []
    for i in range(first, len(sensed)):
        if i > first and np.isfinite(sensed[i]) and np.isfinite(measured[i]).all():
            clock.advance(float(sensed[i]) - clock.monotonic())
            state = sim.read_state()
            errors.append(state.positions - measured[i, :6])
        sent, when = ticks["sent"][i], ticks["write_time"][i]
        if np.isfinite(sent).all() and np.isfinite(when):
            clock.advance(float(when) - clock.monotonic())
            sim.send_action(sent)
    sim.disconnect()
    e = np.abs(np.array(errors)) if errors else np.zeros((1, 6))
    return ReplayReport(
        compared=len(errors),
        max_error=float(e.max()),
        rms_error=float(np.sqrt((e**2).mean())),
        per_joint_max=tuple(float(x) for x in e.max(axis=0)),
    )

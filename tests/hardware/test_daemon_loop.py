"""The control loop on virtual time: watchdog (R2), overdue actions (R3), sensor age (R4).

Every run here is deterministic: the loop, the simulated arm and the fault plan share one
``VirtualClock``, so each tick happens at an exact time and each assertion names it.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from hardware.daemon.status import Flag, Mode
from hardware.faults import Fault, FaultKind, FaultPlan
from tests.hardware.daemon_helpers import PERIOD, chunk_at, make_rig

DT = 0.01  # 100 Hz


def fresh_chunks(center: np.ndarray):
    """``on_want``: a chunk whose first action is due now, as a prompt server would send."""
    seq = itertools.count(1)
    return lambda now: chunk_at(now, center, seq=next(seq))


def has(flags: np.ndarray, flag: Flag) -> np.ndarray:
    return (flags.astype(int) & int(flag)) != 0


def test_stale_command_stream_holds_then_latches_a_safe_stop(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, command_timeout_s=0.1, stop_timeout_s=0.5)
    rig.source.at(0.0, chunk_at(0.0, rig.center, n=5))  # actions due 0.0 .. 0.4, then silence
    assert rig.loop.run(duration=5.0) == "command_timeout"
    t, flags, mode = rig.column("time"), rig.column("flags"), rig.column("mode")
    sent = rig.vectors("sent")
    running = t <= 0.4 + 1e-9
    assert (mode[running] == Mode.RUN).all() and not has(flags[running], Flag.NO_PLAN).any()
    waiting = (t > 0.4 + 1e-9) & (t <= 0.5 + 1e-9)  # ran out, not yet T1: no hold flag
    assert has(flags[waiting], Flag.NO_PLAN).all()
    assert not has(flags[waiting], Flag.HOLD_COMMAND).any()
    held = t > 0.5 + 1e-9
    assert has(flags[held], Flag.HOLD_COMMAND).all() and (mode[held][:-1] == Mode.HOLD).all()
    assert np.ptp(sent[t > 0.4 + 1e-9][:-1], axis=0).max() < 1e-12  # the hold is a hold
    assert t[-1] == pytest.approx(0.4 + 0.5 + DT, abs=DT + 1e-9)  # T2 after running out
    assert mode[-1] == Mode.STOPPED and has(flags[-1:], Flag.STOP).all()
    assert rig.loop.stats.command_hold_ticks == held.sum() and rig.monitor.unsafe == 0


def test_no_first_chunk_holds_in_place_then_stops(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, first_chunk_timeout_s=0.3)
    start = rig.sim.read_state().as_action()
    assert rig.loop.run(duration=2.0) == "no_first_chunk"
    flags = rig.column("flags")
    assert has(flags[:-1], Flag.STARTUP).all()
    assert np.allclose(rig.vectors("sent")[:-1], start)
    assert rig.rows[-1]["time"] == pytest.approx(0.3 + DT, abs=DT + 1e-9)
    assert rig.source.wants > 0  # it kept asking


def test_overdue_actions_are_dropped_and_counted_never_executed(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, interpolation="hold")
    rig.source.at(0.0, chunk_at(0.0, rig.center, n=8))
    late = chunk_at(0.25, rig.center, n=8, seq=2)  # due 0.25 .. 0.95, arrives at 0.5
    marked = late.actions.copy()
    marked[:3, 0] += 0.2  # the three overdue actions carry a mark: it must never be sent
    late = dataclasses.replace(late, actions=marked)
    rig.source.at(0.5, late)
    rig.source.at(1.0, chunk_at(0.1, rig.center, n=5, seq=3))  # all overdue: a late chunk
    rig.loop.run(duration=1.2)
    stats = rig.loop.stats
    t, flags = rig.column("time"), rig.column("flags")
    arrival = np.flatnonzero(np.isclose(t, 0.5))[0]
    assert rig.rows[arrival]["dropped"] == 3 and has(flags[arrival : arrival + 1], Flag.DROPPED)
    commanded = rig.vectors("commanded")
    for action in marked[:3]:
        assert not np.isclose(commanded, action).all(axis=1).any()
    assert stats.late_chunks == 1 and stats.dropped_actions == 3 + 5
    assert rig.column("chunk")[-1] == 2  # the late chunk did not displace the plan
    for j in range(3, 8):  # each live action is executed from its due time on
        due = 0.25 + PERIOD * j
        if due < 1.2:
            row = np.flatnonzero(np.isclose(t, round(due, 2)))[0]
            assert np.allclose(commanded[row], marked[j])
    assert rig.monitor.unsafe == 0


def test_an_overrunning_tick_is_counted_and_missed_ticks_are_skipped(tmp_path: Path) -> None:
    plan = FaultPlan((Fault(0.3, FaultKind.LATENCY, 0.05, magnitude=0.02),))
    rig = make_rig(tmp_path, plan=plan, sensor_max_age_s=0.05)
    rig.loop.source.on_want = fresh_chunks(rig.center)
    rig.loop.run(duration=1.0)
    stats, lateness = rig.loop.stats, rig.column("lateness")
    assert stats.overruns >= 1 and stats.missed_ticks >= 1
    assert lateness.max() < 2 * DT + 0.04 + 1e-9  # never bunched: no tick starts later than one
    assert (np.diff(rig.column("time")) > DT / 2).all()  # stall plus its own period
    assert has(rig.column("flags"), Flag.OVERRUN).sum() == stats.overruns


def test_a_sensor_older_than_its_max_age_means_hold_then_resume(tmp_path: Path) -> None:
    plan = FaultPlan((Fault(0.5, FaultKind.STALE, 0.3), Fault(1.2, FaultKind.NAN_STATE, 0.1)))
    rig = make_rig(tmp_path, plan=plan, sensor_max_age_s=0.05, stop_timeout_s=1.0)
    rig.loop.source.on_want = fresh_chunks(rig.center)
    assert rig.loop.run(duration=2.0) == "duration"
    t, flags, mode = rig.column("time"), rig.column("flags"), rig.column("mode")
    sensor = has(flags, Flag.HOLD_SENSOR)
    stale = (t > 0.54 + 1e-9) & (t < 0.8 - 1e-9)  # frozen at 0.49 s: over 50 ms old from 0.55
    nan = (t >= 1.2 - 1e-9) & (t < 1.3 - 1e-9)
    assert sensor[stale].all() and sensor[nan].all() and sensor.sum() == stale.sum() + nan.sum()
    assert (mode[sensor] == Mode.HOLD).all()
    sent = rig.vectors("sent")
    for window in (stale, nan):
        assert np.ptp(sent[window], axis=0).max() < 1e-12  # nothing moves while blind
        after = np.flatnonzero(t > t[window][-1] + 1e-9)[:20]
        assert has(flags[after], Flag.CHUNK_ACCEPTED).any()  # a fresh chunk resumes
        assert (mode[after[-5:]] == Mode.RUN).all()
    assert rig.monitor.unsafe == 0


def test_a_sensor_silent_for_longer_than_t2_is_a_latched_stop(tmp_path: Path) -> None:
    plan = FaultPlan((Fault(0.3, FaultKind.STALE, 5.0),))
    rig = make_rig(tmp_path, plan=plan, sensor_max_age_s=0.05, stop_timeout_s=0.5)
    rig.loop.source.on_want = fresh_chunks(rig.center)
    assert rig.loop.run(duration=3.0) == "sensor_timeout"
    assert rig.rows[-1]["time"] == pytest.approx(0.35 + 0.5 + DT, abs=2 * DT)
    assert rig.loop.mode is Mode.STOPPED


def test_write_failures_hold_the_reference_and_latch_after_t2(tmp_path: Path) -> None:
    plan = FaultPlan(
        (Fault(0.3, FaultKind.WRITE_ERROR, 0.1), Fault(1.0, FaultKind.WRITE_ERROR, 5.0))
    )
    rig = make_rig(tmp_path, plan=plan, stop_timeout_s=0.5)
    rig.loop.source.on_want = fresh_chunks(rig.center)
    assert rig.loop.run(duration=3.0) == "driver_error"
    t, flags = rig.column("time"), rig.column("flags")
    errors = has(flags, Flag.WRITE_ERROR)
    assert errors[(t >= 0.3 - 1e-9) & (t < 0.4 - 1e-9)].all()
    assert not errors[(t > 0.45) & (t < 1.0 - 1e-9)].any()  # recovered in between
    assert t[-1] == pytest.approx(1.0 + 0.5 + DT, abs=2 * DT)
    sent = [row["sent"] for row in rig.rows if "sent" in row]  # successful writes only
    steps = np.abs(np.diff(sent, axis=0))[:, :6]
    assert steps.max() <= 0.05 + 1e-9  # a failed write never doubles the next step
    assert rig.monitor.unsafe == 0


def test_same_plan_same_run(tmp_path: Path) -> None:
    plan = FaultPlan.random(5, horizon=1.5, kinds=("stale", "nan_state", "write_error"), per_kind=2)
    runs = []
    for i in range(2):
        rig = make_rig(tmp_path / str(i), plan=plan)
        rig.loop.source.on_want = fresh_chunks(rig.center)
        rig.loop.run(duration=2.0)
        runs.append(
            (rig.column("flags"), np.array([r.get("sent", np.full(7, np.nan)) for r in rig.rows]))
        )
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1], equal_nan=True)
